"""Eager reference of ``trace_update``: one Hebbian trace update for custom layers."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_trace_update_args
from ._signature import op_keywords


def trace_update(trace: Tensor, pre: Tensor, post: Tensor, **options) -> Tensor:
    """Eager oracle of :func:`hebbkern.trace_update`: the op's arguments and defaults (``options``
    are checked against the op's signature; ``backend`` is ignored).

    Per sample, with ``e = eta[b, j]`` and ``P[b, i, j] = pre[b, i] * post[b, j]``, the increment
    ``d[b]`` of each rule is written out; a shared trace takes the sum over the batch.
    """
    o = op_keywords("trace_update", options, ignore=("backend",))
    a = check_trace_update_args(trace, pre, post, **o)
    rule = o["rule"]
    B, K = post.shape
    e = a.eta.reshape(-1, 1) if a.eta.dim() == 1 else a.eta
    e = e.expand(B, K).unsqueeze(1)  # [B, 1, K]
    x, y = pre.unsqueeze(2), post.unsqueeze(1)  # [B, M, 1], [B, 1, K]
    P = x * y
    if trace.dim() == 3:
        if rule == "hebb":
            return (1 - e) * trace + e * P
        if rule == "oja":
            return trace + e * y * (x - y * trace)
        if rule == "add":
            return trace + e * P
        return torch.clamp(trace + e * P, -a.clip, a.clip)
    if rule == "hebb":  # eta is a scalar here: the decay applies once
        return (1 - a.eta) * trace + a.eta * P.sum(0)
    if rule == "oja":
        return trace + (e * y * (x - y * trace)).sum(0)
    if rule == "add":
        return trace + (e * P).sum(0)
    return torch.clamp(trace + (e * P).sum(0), -a.clip, a.clip)
