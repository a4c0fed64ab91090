"""``PlasticRNN``: a plastic recurrent layer shaped like ``torch.nn.RNN``."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._validation import ETA_RULES, MODULATED_RULES, RULES, check_clip
from ..ops.plastic_rnn import plastic_rnn
from ..types import PlasticState
from ._checks import check_factory_dtype, check_input, check_state_tuple

ALPHA_KINDS = ("per_connection", "per_neuron", "scalar")


class PlasticRNN(nn.Module):
    r"""Plastic recurrent layer (differentiable plasticity, Backpropamine).

    ``u_t = x_t W_ih^T + b_ih``, then the recurrence of :func:`hebbkern.plastic_rnn` with learned
    ``w``, ``alpha``, ``eta`` and (for the modulated rules) the neuromodulator ``mod_w``, ``mod_b``
    and optional fan-out ``fanout_w``, ``fanout_b``.

    Initialisation follows the papers: differentiable plasticity (rules ``hebb``, ``oja``,
    ``clip``) draws ``w`` and ``alpha`` from ``0.01 * N(0, 1)``; Backpropamine (``neuromod``,
    ``retro``) draws them from ``0.001 * U[0, 1)`` and initialises the modulator and its fan-out
    like ``nn.Linear(hidden_size, 1)`` and ``nn.Linear(1, hidden_size)``. ``eta`` starts at 0.01.

    Args:
        input_size: features of the input ``x``.
        hidden_size: number of plastic neurons ``N``.
        rule: trace rule, one of ``hebb``, ``oja``, ``clip``, ``neuromod``, ``retro``.
        alpha: ``"per_connection"`` ``[N, N]``, ``"per_neuron"`` ``[N]`` or ``"scalar"``.
        fanout: per-neuron fan-out of the neuromodulator (modulated rules only).
        clip: bound of the clipped rules.
        batch_first: input and output are ``[B, T, *]`` instead of ``[T, B, *]``.
        bias: whether the input projection has a bias.

    Shapes: ``forward(x, state=None, clamp_mask=None) -> (output, state)`` with ``x`` ``[T, B,
    input_size]`` (or ``[B, T, input_size]`` with ``batch_first``, or unbatched ``[T,
    input_size]``), ``output`` ``[T, B, N]`` and ``state`` a :class:`~hebbkern.PlasticState`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        rule: str = "hebb",
        alpha: str = "per_connection",
        fanout: bool = False,
        clip: float = 1.0,
        batch_first: bool = False,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        for name, val in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(map(repr, RULES))}, got {rule!r}")
        if alpha not in ALPHA_KINDS:
            raise ValueError(
                f"alpha must be one of {', '.join(map(repr, ALPHA_KINDS))}, got {alpha!r}"
            )
        if fanout and rule not in MODULATED_RULES:
            raise ValueError(
                f"fanout only applies to the modulated rules (neuromod, retro), not {rule!r}"
            )
        check_factory_dtype(dtype)
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size = input_size, hidden_size
        self.rule, self.alpha_kind, self.fanout = rule, alpha, bool(fanout)
        self.clip, self.batch_first = check_clip(clip), batch_first
        N = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(N, input_size, **factory))
        self.bias_ih = nn.Parameter(torch.empty(N, **factory)) if bias else None
        self.w = nn.Parameter(torch.empty(N, N, **factory))
        alpha_shape = {"per_connection": (N, N), "per_neuron": (N,), "scalar": ()}[alpha]
        self.alpha = nn.Parameter(torch.empty(alpha_shape, **factory))
        self.eta = nn.Parameter(torch.empty((), **factory)) if rule in ETA_RULES else None
        modulated = rule in MODULATED_RULES
        self.mod_w = nn.Parameter(torch.empty(N, **factory)) if modulated else None
        self.mod_b = nn.Parameter(torch.empty((), **factory)) if modulated else None
        self.fanout_w = nn.Parameter(torch.empty(N, **factory)) if self.fanout else None
        self.fanout_b = nn.Parameter(torch.empty(N, **factory)) if self.fanout else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        N = self.hidden_size
        # Input projection as nn.Linear does it.
        bound = 1.0 / math.sqrt(self.input_size)
        nn.init.uniform_(self.weight_ih, -bound, bound)
        if self.bias_ih is not None:
            nn.init.uniform_(self.bias_ih, -bound, bound)
        with torch.no_grad():
            if self.rule in MODULATED_RULES:  # Backpropamine
                self.w.uniform_(0, 0.001)
                self.alpha.uniform_(0, 0.001)
            else:  # differentiable plasticity
                self.w.normal_(0, 0.01)
                self.alpha.normal_(0, 0.01)
            if self.eta is not None:
                self.eta.fill_(0.01)
            if self.mod_w is not None:  # as nn.Linear(N, 1)
                b = 1.0 / math.sqrt(N)
                self.mod_w.uniform_(-b, b)
                self.mod_b.uniform_(-b, b)
            if self.fanout_w is not None:  # as nn.Linear(1, N): fan-in 1
                self.fanout_w.uniform_(-1.0, 1.0)
                self.fanout_b.uniform_(-1.0, 1.0)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, rule={self.rule!r}, alpha={self.alpha_kind!r}"
        if self.fanout:
            s += ", fanout=True"
        if self.rule in ("clip", "neuromod", "retro"):
            s += f", clip={self.clip}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.bias_ih is None:
            s += ", bias=False"
        return s

    def forward(
        self,
        x: Tensor,
        state: PlasticState | tuple | None = None,
        clamp_mask: Tensor | None = None,
    ) -> tuple[Tensor, PlasticState]:
        check_input("x", x, self.weight_ih)
        if clamp_mask is not None and not isinstance(clamp_mask, Tensor):
            raise TypeError(f"clamp_mask must be a torch.Tensor, got {type(clamp_mask).__name__}")
        if x.dim() not in (2, 3) or x.shape[-1] != self.input_size:
            raise ValueError(
                f"x must have shape [T, B, {self.input_size}] (or [B, T, {self.input_size}] with "
                f"batch_first, or unbatched [T, {self.input_size}]), got {list(x.shape)}"
            )
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1)
            clamp_mask = None if clamp_mask is None else clamp_mask.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
            clamp_mask = None if clamp_mask is None else clamp_mask.transpose(0, 1)
        u = nn.functional.linear(x, self.weight_ih, self.bias_ih)
        h0 = hebb0 = elig0 = None
        if state is not None:
            h0, hebb0, elig0 = check_state_tuple(state, ("h", "hebb", "elig"), optional=1)
            if unbatched:
                h0, hebb0 = h0.unsqueeze(0), hebb0.unsqueeze(0)
                elig0 = None if elig0 is None else elig0.unsqueeze(0)
        out, new = plastic_rnn(
            u, self.w, self.alpha, rule=self.rule, eta=self.eta, mod_w=self.mod_w,
            mod_b=self.mod_b, fanout_w=self.fanout_w, fanout_b=self.fanout_b, clip=self.clip,
            h0=h0, hebb0=hebb0, elig0=elig0, clamp_mask=clamp_mask,
        )  # fmt: skip
        if unbatched:
            out = out.squeeze(1)
            new = PlasticState(*(None if s is None else s.squeeze(0) for s in new))
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, new
