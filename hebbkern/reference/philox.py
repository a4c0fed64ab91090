"""Philox4x32-10 in torch integer arithmetic, the twin of csrc/include/hebbkern/philox.h.

Counter-based (Salmon et al., SC 2011; Random123's constants): the output words are a pure function
of the counter and the key, so this and the C++/CUDA kernels draw the same bits. Words are held in
int64 tensors (values in [0, 2^32)); the 32 x 32 -> 64 bit products are split into 16-bit halves
so that no intermediate leaves int64's range.
"""

from __future__ import annotations

import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF
_MUL0, _MUL1 = 0xD2511F53, 0xCD9E8D57
_WEYL0, _WEYL1 = 0x9E3779B9, 0xBB67AE85


def _mulhilo(m: int, x: Tensor) -> tuple[Tensor, Tensor]:
    """High and low 32-bit words of ``m * x`` for a 32-bit constant m and 32-bit words x."""
    x_hi, x_lo = x >> 16, x & 0xFFFF
    p_lo = x_lo * m  # < 2^48
    p_hi = x_hi * m  # < 2^48; the product is p_hi * 2^16 + p_lo
    mid = p_hi + (p_lo >> 16)  # < 2^49
    hi = mid >> 16
    lo = ((mid & 0xFFFF) << 16) | (p_lo & 0xFFFF)
    return hi & _MASK32, lo


def philox4x32_10(
    c0: Tensor, c1: Tensor, c2: Tensor, c3: Tensor, k0: int, k1: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Ten Philox rounds on counters (broadcastable int64 tensors of 32-bit words), key (k0, k1)."""
    c0, c1, c2, c3 = (torch.as_tensor(c, dtype=torch.int64) for c in (c0, c1, c2, c3))
    c0, c1, c2, c3 = torch.broadcast_tensors(c0, c1, c2, c3)
    k0, k1 = k0 & _MASK32, k1 & _MASK32
    for round_ in range(10):
        if round_ > 0:
            k0 = (k0 + _WEYL0) & _MASK32
            k1 = (k1 + _WEYL1) & _MASK32
        hi0, lo0 = _mulhilo(_MUL0, c0)
        hi1, lo1 = _mulhilo(_MUL1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def to_unit(w: Tensor) -> Tensor:
    """Words to uniforms in [0, 1) on a 2^-24 grid (float64; exact in float32 too)."""
    return (w >> 8).to(torch.float64) * (1.0 / 16777216.0)


def perturbation_uniforms(seed: int, keys: Tensor, step: int, n: int) -> tuple[Tensor, Tensor]:
    """The two uniforms ``(u0, u1)`` ``[B, n]`` of each neuron at global step ``step``.

    Layout of SPEC.md section 10: key ``(seed mod 2^32, seed >> 32)``, counter
    ``(j >> 1, step, keys[b], 0)``; neuron j takes words ``2 (j & 1)`` and ``2 (j & 1) + 1``.
    """
    j = torch.arange(n, dtype=torch.int64, device=keys.device)
    c0 = (j >> 1)[None, :]
    c2 = keys.to(torch.int64)[:, None] & _MASK32
    w0, w1, w2, w3 = philox4x32_10(
        c0, torch.tensor(step & _MASK32), c2, torch.tensor(0), seed, seed >> 32
    )
    odd = (j & 1).bool()[None, :]
    u0 = to_unit(torch.where(odd, w2, w0))
    u1 = to_unit(torch.where(odd, w3, w1))
    return u0, u1
