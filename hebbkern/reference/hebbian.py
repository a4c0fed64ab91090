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

from .._validation import check_hebbian_args
from ._signature import op_keywords


def _shrink(w: Tensor, y: Tensor, rule: str) -> Tensor:
    """The instar / Oja correction ``w[n] * sum y[..., n, ...]`` or ``w[n] * sum y^2``: the sum
    runs over the batch and (for a convolution) the output positions, every dim but 1."""
    dims = [0] + list(range(2, y.dim()))
    s = (y if rule == "instar" else y * y).sum(dims)
    return w * s.reshape((-1,) + (1,) * (w.dim() - 1))


def hebbian_update(w: Tensor, x: Tensor, y: Tensor, **options) -> Tensor:
    """Same arguments (``options`` checked against the op's signature, ``backend`` aside) and
    result as :func:`hebbkern.hebbian_update`, through ``unfold``.

    ``dw[n] = sum_b y[b, n] * (x[b] - shrink)`` with ``shrink`` 0 (hebb), ``w[n]`` (instar) or
    ``y[b, n] * w[n]`` (oja), i.e. the plain term ``sum_b y[b, n] x[b]`` minus ``w[n]`` times
    ``sum_b y[b, n]`` or ``sum_b y[b, n]^2``. For a convolution, ``b`` runs over (sample, output
    position) pairs and ``x[b]`` is the patch under that position.
    """
    o = op_keywords("hebbian_update", options, drop=("backend",))
    a = check_hebbian_args(w, x, y, **o)
    rule = o["rule"]
    if w.dim() == 2:
        plain = torch.einsum("bn,bd->nd", y, x)
    else:
        B = x.shape[0]
        C_out, C_in_g, kh, kw = w.shape
        G = a.groups
        # [B, C_in * kh * kw, L] (L output positions), channel-major, so group g's patches are
        # one contiguous block of rows.
        patches = F.unfold(x, (kh, kw), dilation=a.dilation, padding=a.padding, stride=a.stride)
        patches = patches.reshape(B, G, C_in_g * kh * kw, -1)
        outs = y.reshape(B, G, C_out // G, -1)
        plain = torch.einsum("bgnl,bgdl->gnd", outs, patches).reshape(w.shape)
    if rule == "hebb":
        return plain
    return plain - _shrink(w, y, rule)
