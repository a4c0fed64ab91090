"""Eager reference of the plastic linear read-out (SPEC.md section 3)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_plastic_linear_args


def plastic_linear(
    x: Tensor, w: Tensor, alpha: Tensor, hebb: Tensor, *, backend: str | None = None
) -> Tensor:
    """Eager oracle of :func:`hebbkern.plastic_linear`: ``z = x (w + alpha * hebb)``, with the
    per-sample matrix built explicitly as the papers' code does (``backend`` is ignored)."""
    x, w, alpha, hebb = check_plastic_linear_args(x, w, alpha, hebb)
    if hebb.dim() == 2:
        return x @ (w + alpha * hebb)
    return torch.bmm(x.unsqueeze(1), w + alpha * hebb).squeeze(1)
