"""Layers that learn their weights by a local Hebbian rule (SPEC.md section 4): ``HebbianConv2d``
and ``HebbianLinear``, with the options of the Hebbian-CNN paper (Miconi 2021).

A forward returns the layer's output (the drive ``u = conv2d(x, w)`` or ``x w^T``, or its denser
"triangle" ``relu(u - mean over channels of u)``) and remembers its input and plastic output
``y`` (k-winners-take-all of ``u - thresholds`` across channels, optionally binarised). Then

* ``hebbian_step(lr)`` applies the rule: ``w += lr * hebbian_update(w, x, y, rule)``, followed by
  ``post_step()``: the pruning mask, unit-norm filters and the homeostatic thresholds;
* or, to use any torch optimiser: ``hebbian_backward()`` adds ``-dw`` to ``weight.grad``, then
  ``optimizer.step()`` and ``post_step()``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_hebbian_rule, check_positive_ints, conv_out_size, pair
from ..ops.hebbian import hebbian_update
from ._checks import check_factory_dtype, check_input


def _check_options(k, binarize, homeostasis, normalize, triangle, prune, n_out) -> None:
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_out:
            raise ValueError(
                f"k must be None or an int in [1, {n_out}] (output channels), got {k!r}"
            )
    if not isinstance(homeostasis, (int, float)) or isinstance(homeostasis, bool):
        raise TypeError(f"homeostasis must be a float, got {type(homeostasis).__name__}")
    if homeostasis < 0 or not math.isfinite(homeostasis):
        raise ValueError(f"homeostasis must be a finite rate >= 0, got {homeostasis}")
    if homeostasis > 0 and k is None:
        raise ValueError("homeostasis pushes firing rates toward k / out_channels: it needs k")
    if not isinstance(prune, (int, float)) or isinstance(prune, bool) or not 0 <= prune < 1:
        raise ValueError(f"prune must be a fraction in [0, 1), got {prune!r}")
    for name, v in (("binarize", binarize), ("normalize", normalize), ("triangle", triangle)):
        if not isinstance(v, bool):
            raise TypeError(f"{name} must be a bool, got {type(v).__name__}")


class _HebbianLayer(nn.Module):
    """What the linear and conv2d layers share: plastic output, options, and the step."""

    weight: Tensor
    thresholds: Tensor
    mask: Tensor | None

    def _init_common(self, rule, k, binarize, homeostasis, normalize, triangle, prune, n_out, fk):
        self.rule = check_hebbian_rule(rule)
        _check_options(k, binarize, homeostasis, normalize, triangle, prune, n_out)
        self.k, self.binarize, self.homeostasis = k, binarize, float(homeostasis)
        self.normalize, self.triangle, self.prune = normalize, triangle, float(prune)
        self.register_buffer("thresholds", torch.zeros(n_out, **fk))
        self.register_buffer("mask", torch.ones_like(self.weight) if prune > 0 else None)
        self._last: tuple[Tensor, Tensor] | None = None

    def reset_parameters(self) -> None:
        """Kaiming-uniform weights as torch.nn's layers; a fresh pruning mask (that drops the
        fraction ``prune`` of the connections); unit-norm filters; zero thresholds."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        with torch.no_grad():
            if self.mask is not None:
                self.mask.copy_(torch.rand_like(self.weight) >= self.prune)
            self.thresholds.zero_()
            self._constrain()
        self._last = None

    def effective_weight(self) -> Tensor:
        return self.weight if self.mask is None else self.weight * self.mask

    def plastic_output(self, u: Tensor) -> Tensor:
        """``y`` of the rule: k-WTA across channels of ``u - thresholds`` (winners keep their value,
        or 1 when binarised); without ``k``, ``u - thresholds`` itself."""
        v = u - self.thresholds.reshape((1, -1) + (1,) * (u.dim() - 2))
        if self.k is None:
            return v
        winners = v.topk(self.k, dim=1).indices
        src = torch.ones_like(v) if self.binarize else v
        return torch.zeros_like(v).scatter_(1, winners, src.gather(1, winners))

    def _output(self, x: Tensor, u: Tensor) -> Tensor:
        if self.training:
            self._last = (x.detach(), self.plastic_output(u.detach()))
        if self.triangle:
            return F.relu(u - u.mean(dim=1, keepdim=True))
        return u

    def last_activity(self) -> tuple[Tensor, Tensor]:
        """``(x, y)`` of the last forward in training mode: input and plastic output."""
        if self._last is None:
            raise RuntimeError(
                "no activity recorded: run a forward pass in training mode (module.train()) first"
            )
        return self._last

    def hebbian_update(self, *, backend: str | None = None) -> Tensor:
        """``dw`` of the rule from the last forward (masked connections get no update)."""
        x, y = self.last_activity()
        with torch.no_grad():
            dw = hebbian_update(
                self.effective_weight(), x, y, rule=self.rule, backend=backend, **self._conv_args()
            )
        return dw if self.mask is None else dw * self.mask

    def hebbian_step(self, lr: float, *, backend: str | None = None) -> None:
        """``w += lr * dw`` from the last forward, then :meth:`post_step`."""
        dw = self.hebbian_update(backend=backend)
        with torch.no_grad():
            self.weight.add_(dw, alpha=lr)
        self.post_step()

    def hebbian_backward(self, *, backend: str | None = None) -> None:
        """Adds ``-dw`` to ``weight.grad`` (like ``hebbian_loss(...).backward()``, without keeping
        a graph), so that a torch optimiser's ``step()`` applies the rule. Call
        :meth:`post_step` after the optimiser's step."""
        dw = self.hebbian_update(backend=backend)
        if self.weight.grad is None:
            self.weight.grad = -dw
        else:
            self.weight.grad.sub_(dw)

    def post_step(self) -> None:
        """After a weight change: re-apply the mask, renormalise each filter to unit norm, and
        move each channel's threshold toward the firing rate ``k / out_channels``:
        ``thresholds += homeostasis * (rate - k / N)`` with ``rate`` the fraction of (sample,
        position) pairs where the channel won in the last forward."""
        with torch.no_grad():
            self._constrain()
            if self.homeostasis > 0 and self._last is not None:
                y = self._last[1]
                dims = [0] + list(range(2, y.dim()))
                rate = (y != 0).to(self.thresholds.dtype).mean(dims)
                self.thresholds.add_(
                    rate - self.k / self.thresholds.numel(), alpha=self.homeostasis
                )

    def _constrain(self) -> None:
        if self.mask is not None:
            self.weight.mul_(self.mask)
        if self.normalize:
            norms = self.weight.flatten(1).norm(dim=1).clamp_min(1e-12)
            self.weight.div_(norms.reshape((-1,) + (1,) * (self.weight.dim() - 1)))

    def _conv_args(self) -> dict:
        return {}

    def _options_repr(self) -> str:
        s = f"rule={self.rule!r}, k={self.k}"
        if self.k is not None:
            s += f", binarize={self.binarize}, homeostasis={self.homeostasis}"
        s += f", normalize={self.normalize}, triangle={self.triangle}"
        if self.prune > 0:
            s += f", prune={self.prune}"
        return s


class HebbianConv2d(_HebbianLayer):
    r"""A conv2d layer (no bias) learning its filters by a Hebbian rule.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups: as
            :class:`torch.nn.Conv2d` (``padding`` as ints).
        rule: ``"hebb"``, ``"instar"`` or ``"oja"`` (docs/SPEC.md section 4).
        k: hard k-winners-take-all across channels at each position for the plastic output
            (``None``: no competition, ``y = u - thresholds``).
        binarize: winners' plastic output is 1 (else their value).
        homeostasis: rate of the per-channel thresholds toward the firing rate ``k / out_channels``
            (the paper uses 3.0; 0 disables).
        normalize: each filter is rescaled to unit norm after each step.
        triangle: the forward returns ``relu(u - mean over channels of u)`` (denser, passed on to
            the next layer) instead of the drive ``u``.
        prune: fraction of connections removed by a fixed random mask (the paper: 0.99 in layers
            2 and 3).

    Shape: input ``[B, C_in, H, W]`` or ``[C_in, H, W]``; output ``[B, C_out, H_out, W_out]`` or
    ``[C_out, H_out, W_out]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        *,
        rule: str = "oja",
        k: int | None = 1,
        binarize: bool = True,
        homeostasis: float = 3.0,
        normalize: bool = True,
        triangle: bool = True,
        prune: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_factory_dtype(dtype)
        fk = {"device": device, "dtype": dtype}
        check_positive_ints(in_channels=in_channels, out_channels=out_channels, groups=groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible "
                f"by groups ({groups})"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair("kernel_size", kernel_size, 1)
        self.stride = pair("stride", stride, 1)
        self.padding = pair("padding", padding, 0)
        self.dilation = pair("dilation", dilation, 1)
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size, **fk)
        )
        self._init_common(rule, k, binarize, homeostasis, normalize, triangle, prune,
                          out_channels, fk)  # fmt: skip
        self.reset_parameters()

    def _conv_args(self) -> dict:
        return dict(
            stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups
        )

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        kh, kw = self.kernel_size
        return (
            conv_out_size(height, kh, self.stride[0], self.padding[0], self.dilation[0]),
            conv_out_size(width, kw, self.stride[1], self.padding[1], self.dilation[1]),
        )

    def forward(self, x: Tensor) -> Tensor:
        check_input("input", x, self.weight)
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise ValueError(
                f"input must have shape [B, {self.in_channels}, H, W] or [{self.in_channels}, H, W]"
                f", got {list(x.shape)}"
            )
        unbatched = x.dim() == 3
        xb = x.unsqueeze(0) if unbatched else x
        u = F.conv2d(xb, self.effective_weight(), None, **self._conv_args())
        out = self._output(xb, u)
        return out.squeeze(0) if unbatched else out

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ", " + self._options_repr()


class HebbianLinear(_HebbianLayer):
    r"""A linear layer (no bias) learning its weight ``[out_features, in_features]`` by a Hebbian
    rule. Options as :class:`HebbianConv2d`, with the features as channels.

    Shape: input ``[B, in_features]`` or ``[in_features]``; output likewise with
    ``out_features``.
    """

    # HebbianConv2d's options written out (as torch.nn does): the signature help() shows.
    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        rule: str = "oja",
        k: int | None = 1,
        binarize: bool = True,
        homeostasis: float = 3.0,
        normalize: bool = True,
        triangle: bool = False,
        prune: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_factory_dtype(dtype)
        fk = {"device": device, "dtype": dtype}
        check_positive_ints(in_features=in_features, out_features=out_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **fk))
        self._init_common(rule, k, binarize, homeostasis, normalize, triangle, prune,
                          out_features, fk)  # fmt: skip
        self.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        check_input("input", x, self.weight)
        if x.dim() not in (1, 2) or x.shape[-1] != self.in_features:
            raise ValueError(
                f"input must have shape [B, {self.in_features}] or [{self.in_features}], "
                f"got {list(x.shape)}"
            )
        unbatched = x.dim() == 1
        xb = x.unsqueeze(0) if unbatched else x
        u = F.linear(xb, self.effective_weight())
        out = self._output(xb, u)
        return out.squeeze(0) if unbatched else out

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            + self._options_repr()
        )
