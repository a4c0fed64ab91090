"""Eager reference of the DHP Softmax layer (SPEC.md section 3), in the loop form of the paper."""

from __future__ import annotations

import torch
from torch import Tensor


def dhp_trace_update(hebb: Tensor, h: Tensor, target: Tensor, eta: Tensor | float) -> Tensor:
    """The class-mean Hebbian update of a shared trace ``hebb`` ``[M, K]``, one class at a time::

        for every class k present in target:
            hbar_k     = mean of h[b] over the samples with target[b] = k
            hebb[:, k] = (1 - eta) * hebb[:, k] + eta * hbar_k

    Columns of absent classes are left unchanged (no decay). Differentiable in ``h`` and ``eta``;
    returns a new tensor.
    """
    cols = list(hebb.unbind(1))
    for k in sorted(set(target.tolist())):
        hbar = h[target == k].mean(0)
        cols[k] = (1 - eta) * cols[k] + eta * hbar
    return torch.stack(cols, 1)


def dhp_softmax_logits(h: Tensor, theta: Tensor, alpha: Tensor, hebb: Tensor) -> Tensor:
    """``z = h (theta + alpha * hebb)``: the logits of the DHP Softmax layer."""
    return h @ (theta + alpha * hebb)
