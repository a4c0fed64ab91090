"""Eager reference of the Hebbian weight updates of shared weights (SPEC.md section 4).

Written the way the papers' code writes them: a convolution becomes a linear layer over the
``unfold``-ed patch matrix ``[B, C_in * kh * kw, L]`` (L output positions), and the rule's table is
applied to it literally. Clear, and the oracle of the fused op, but the patch matrix is
``kh * kw`` times larger than the input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation_hebbian import check_hebbian_args


def hebbian_rule(w: Tensor, x: Tensor, y: Tensor, rule: str) -> Tensor:
    """The rule's table for a linear layer: ``w`` ``[N, D]``, ``x`` ``[B, D]``, ``y`` ``[B, N]``.

    ``dw[n] = sum_b y[b, n] * x[b]``                      (hebb)
    ``dw[n] = sum_b y[b, n] * (x[b] - w[n])``             (instar)
    ``dw[n] = sum_b y[b, n] * (x[b] - y[b, n] * w[n])``   (oja)
    """
    plain = torch.einsum("bn,bd->nd", y, x)
    if rule == "hebb":
        return plain
    if rule == "instar":
        return plain - torch.einsum("bn,nd->nd", y, w)
    return plain - torch.einsum("bn,bn,nd->nd", y, y, w)


def hebbian_update(
    w: Tensor,
    x: Tensor,
    y: Tensor,
    *,
    rule: str = "oja",
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> Tensor:
    """Same signature and result as :func:`hebbkern.hebbian_update`, through ``unfold``."""
    a = check_hebbian_args(
        w, x, y, rule=rule, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    if w.dim() == 2:
        return hebbian_rule(w, x, y, rule)

    B = x.shape[0]
    C_out, C_in_g, kh, kw = w.shape
    G = a.groups
    # [B, C_in * kh * kw, L], channel-major, so group g's patches are one contiguous block.
    patches = F.unfold(
        x, (kh, kw), dilation=a.dilation, padding=a.padding, stride=a.stride
    ).reshape(B, G, C_in_g * kh * kw, -1)
    outs = y.reshape(B, G, C_out // G, -1)
    per_group = []
    for g in range(G):
        # Every (sample, position) pair is one row of a linear layer's batch.
        xg = patches[:, g].transpose(1, 2).reshape(-1, C_in_g * kh * kw)
        yg = outs[:, g].transpose(1, 2).reshape(-1, C_out // G)
        wg = w[g * (C_out // G) : (g + 1) * (C_out // G)].reshape(C_out // G, -1)
        per_group.append(hebbian_rule(wg, xg, yg, rule))
    return torch.cat(per_group).reshape(w.shape)
