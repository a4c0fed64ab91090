"""``DHPSoftmax``: the output layer of Differentiable Hebbian Consolidation (SPEC.md section 3)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


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
        for name, val in (("in_features", in_features), ("num_classes", num_classes)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
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
        onehot = nn.functional.one_hot(target, self.num_classes).to(h.dtype)  # [B, K]
        counts = onehot.sum(0)
        mean = (h.t() @ onehot) / counts.clamp(min=1)  # [M, K]: class means of the batch
        moved = (1 - self.eta) * self.hebb + self.eta * mean
        return torch.where(counts > 0, moved, self.hebb)

    def forward(self, h: Tensor, target: Tensor | None = None) -> Tensor:
        if not isinstance(h, Tensor):
            raise TypeError(f"h must be a torch.Tensor, got {type(h).__name__}")
        if h.dim() != 2 or h.shape[1] != self.in_features:
            raise ValueError(f"h must have shape [B, {self.in_features}], got {list(h.shape)}")
        if h.dtype != self.theta.dtype:
            raise TypeError(f"h must have dtype {self.theta.dtype}, got {h.dtype}")
        hebb = self.hebb
        if target is not None and self.training:
            if not isinstance(target, Tensor) or target.dtype != torch.int64:
                raise TypeError("target must be an int64 tensor of class indices")
            if tuple(target.shape) != (h.shape[0],):
                raise ValueError(
                    f"target must have shape [{h.shape[0]}] (one class per sample), "
                    f"got {list(target.shape)}"
                )
            if target.numel() and (target.min() < 0 or target.max() >= self.num_classes):
                raise ValueError(f"target must hold class indices in [0, {self.num_classes})")
            hebb = self.updated_trace(h, target)
            # A new tensor, not an in-place copy: autograd saved the old trace for this batch.
            self.hebb = hebb.detach()
        return h @ (self.theta + self.alpha * hebb)
