"""``DHPSoftmax``: the output layer of Differentiable Hebbian Consolidation (SPEC.md section 3)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._validation import check_positive_ints
from ..ops.plastic_linear import plastic_linear
from ._checks import check_factory_dtype, check_input


class DHPSoftmax(nn.Module):
    r"""Softmax read-out with a Hebbian trace shared by the batch (Differentiable Hebbian
    Plasticity, Thangarasa et al.).

    When training with a ``target``, BEFORE the logits of the batch, every class ``k`` present in
    the batch moves its column of the trace ``hebb`` ``[M, K]`` toward the mean feature of its
    samples (columns of absent classes do not decay)::

        hebb[:, k] = (1 - eta) * hebb[:, k] + eta * mean(h[b] for target[b] = k)
        z = h (theta + alpha * hebb)

    The gradient flows into ``eta`` and ``h`` through the update of this batch; the updated trace
    is then stored detached, so the graph never grows across batches. In evaluation mode (or
    without a target) the trace is read, not changed. The trace is never reset between tasks
    unless :meth:`reset_trace` is called. Combine with :mod:`hebbkern.consolidation` on
    ``theta`` (the slow weights) only.

    Args:
        in_features: ``M``, the feature width.
        num_classes: ``K``.
        eta_init: initial value of the learned trace rate ``eta``.

    Parameters: ``theta`` ``[M, K]`` (as ``nn.Linear(M, K)``'s weight, transposed), ``alpha``
    ``[M, K]`` (``U[0, 0.01)``), ``eta`` (0-dim). Buffer: ``hebb`` ``[M, K]`` (zeros).

    Shapes: ``forward(h, target=None) -> z``, ``h`` ``[B, M]``, ``target`` ``[B]`` int64 class
    indices, ``z`` ``[B, K]``.
    """

    def __init__(
        self, in_features: int, num_classes: int, eta_init: float = 0.001, device=None, dtype=None
    ) -> None:
        super().__init__()
        check_positive_ints(in_features=in_features, num_classes=num_classes)
        check_factory_dtype(dtype)
        factory = {"device": device, "dtype": dtype}
        self.in_features, self.num_classes, self.eta_init = in_features, num_classes, eta_init
        self.theta = nn.Parameter(torch.empty(in_features, num_classes, **factory))
        self.alpha = nn.Parameter(torch.empty(in_features, num_classes, **factory))
        self.eta = nn.Parameter(torch.empty((), **factory))
        self.register_buffer("hebb", torch.zeros(in_features, num_classes, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            self.theta.uniform_(-bound, bound)
            self.alpha.uniform_(0.0, 0.01)
            self.eta.fill_(self.eta_init)
        self.reset_trace()

    def reset_trace(self) -> None:
        """Zero the Hebbian trace."""
        with torch.no_grad():
            self.hebb.zero_()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}"

    def updated_trace(self, h: Tensor, target: Tensor) -> Tensor:
        """The trace after the class-mean update of the batch ``(h, target)`` (not stored)."""
        # Per-class sums by index_add, not h^T one_hot(target): a product with the one-hot zeros
        # would spread a NaN (0 * NaN) of one sample into every class of the batch, where the
        # loop form (hebbkern.reference.dhp_trace_update) keeps it in its own class. index_add
        # also needs no data-dependent shape (one_hot reads target.max()), so it compiles and
        # runs on meta tensors.
        K = self.num_classes
        counts = h.new_zeros(K).index_add(0, target, h.new_ones(target.shape))
        sums = h.new_zeros(K, h.shape[1]).index_add(0, target, h)  # [K, M]
        mean = (sums / counts.clamp(min=1).unsqueeze(1)).t()  # [M, K]: class means of the batch
        moved = (1 - self.eta) * self.hebb + self.eta * mean
        return torch.where(counts > 0, moved, self.hebb)

    def _check_classes(self, target: Tensor) -> None:
        """Every target a class index in [0, num_classes): index_add would raise an IndexError
        (or, compiled, read out of bounds) otherwise."""
        msg = f"target must hold class indices in [0, {self.num_classes})"
        if target.device.type == "meta" or target.numel() == 0:
            return  # no values to check
        ok = ((target >= 0) & (target < self.num_classes)).all()
        if torch.compiler.is_compiling():
            # A data-dependent Python branch would break the graph; the assert stays in it.
            torch._assert_async(ok, msg)
        elif not ok:
            raise ValueError(msg)

    def forward(self, h: Tensor, target: Tensor | None = None) -> Tensor:
        check_input("h", h, self.theta)
        if h.dim() != 2 or h.shape[1] != self.in_features:
            raise ValueError(f"h must have shape [B, {self.in_features}], got {list(h.shape)}")
        hebb = self.hebb
        if target is not None and self.training:
            if not isinstance(target, Tensor) or target.dtype != torch.int64:
                got = target.dtype if isinstance(target, Tensor) else type(target).__name__
                raise TypeError(f"target must be an int64 tensor of class indices, got {got}")
            if target.device != h.device:
                raise ValueError(
                    f"target must be on {h.device} (the device of h), got {target.device}"
                )
            if tuple(target.shape) != (h.shape[0],):
                raise ValueError(
                    f"target must have shape [{h.shape[0]}] (one class per sample), "
                    f"got {list(target.shape)}"
                )
            self._check_classes(target)
            hebb = self.updated_trace(h, target)
            # A new tensor, not an in-place copy: autograd saved the old trace for this batch.
            self.hebb = hebb.detach()
        if h.device.type == "cuda":
            # One fused read-out kernel (Triton) instead of three launches; on the CPU the GEMM
            # on the built matrix stays (the measured path of benchmarks/plastic_lstm.py).
            return plastic_linear(h, self.theta, self.alpha, hebb)
        return h @ (self.theta + self.alpha * hebb)
