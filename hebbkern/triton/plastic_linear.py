"""Triton kernels of the plastic read-out ``z = x (w + alpha * H)`` (SPEC.md section 3).

Triton for the reasons given in plastic_step.py (shared helpers, interpreter-tested on the CPU,
``triton_op`` for ``torch.compile``). The matrix ``w + alpha * H`` is never written to memory: each
program builds its tiles in registers.

Forward, one launch. Shared trace ``H [M, K]`` (DHP Softmax): programs own ``[BLOCK_B, BLOCK_K]``
tiles of z, a GEMM over M with ``tl.dot`` (IEEE float32, no TF32, so that float32 matches the
reference). Per-sample trace ``H [B, M, K]``: one program per (sample, column block), a mat-vec.

Backward, one launch: program p owns rows ``p * BLOCK_M ...`` of every ``[M, ...]`` gradient
(dx's columns, dw, d alpha per connection, d hebb) and walks all columns and samples in a fixed
order, so every sum is deterministic without atomics. d alpha per output ``[K]`` or scalar sums
over the rows of all programs: each program writes its row block's partial ``[K]`` and the caller
sums the ``cdiv(M, BLOCK_M)`` partials (a small reduction, in a fixed order).

Alpha kinds: 0 scalar, 1 per output ``[K]``, 2 per connection ``[M, K]``.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .plastic_rnn import _load_alpha


@triton.jit
def _wa_tile(w_ptr, a_ptr, rows, cols, cmask, M, K, ALPHA_KIND: tl.constexpr):
    """The tile (rows, cols) of an [M, K] matrix: the row mask, tile mask and offsets, and w and
    alpha there."""
    rmask = rows < M
    m2 = rmask[:, None] & cmask[None, :]
    off = rows[:, None] * K + cols[None, :]
    W = tl.load(w_ptr + off, mask=m2, other=0.0)
    A = _load_alpha(a_ptr, rows, cols, m2, cmask, K, ALPHA_KIND)
    return rows, rmask, m2, off, W, A


@triton.jit
def plastic_linear_fwd_kernel(
    x_ptr, w_ptr, a_ptr, H_ptr, z_ptr, B, M, K,
    ALPHA_KIND: tl.constexpr, PER_SAMPLE: tl.constexpr, BLOCK_B: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """Shared trace: program (p, q) computes z[p-th block of samples, q-th block of columns].
    Per-sample trace: program (b, q) computes z[b, q-th block of columns]."""
    pb = tl.program_id(0).to(tl.int64)
    pq = tl.program_id(1)
    cols = pq * BLOCK_K + tl.arange(0, BLOCK_K)
    cmask = cols < K
    mbase = tl.arange(0, BLOCK_M)
    if PER_SAMPLE:
        acc = tl.zeros([BLOCK_K], dtype=z_ptr.dtype.element_ty)
        for m0 in range(0, M, BLOCK_M):
            rows, rmask, m2, off, W, A = _wa_tile(w_ptr, a_ptr, m0 + mbase, cols, cmask, M, K,
                                                  ALPHA_KIND)  # fmt: skip
            H = tl.load(H_ptr + pb * M * K + off, mask=m2, other=0.0)
            x = tl.load(x_ptr + pb * M + rows, mask=rmask, other=0.0)
            acc += tl.sum(x[:, None] * (W + A * H), axis=0)
        tl.store(z_ptr + pb * K + cols, acc, mask=cmask)
    else:
        bs = pb * BLOCK_B + tl.arange(0, BLOCK_B)
        bmask = bs < B
        acc = tl.zeros([BLOCK_B, BLOCK_K], dtype=z_ptr.dtype.element_ty)
        for m0 in range(0, M, BLOCK_M):
            rows, rmask, m2, off, W, A = _wa_tile(w_ptr, a_ptr, m0 + mbase, cols, cmask, M, K,
                                                  ALPHA_KIND)  # fmt: skip
            H = tl.load(H_ptr + off, mask=m2, other=0.0)
            xt = tl.load(x_ptr + bs[:, None] * M + rows[None, :],
                         mask=bmask[:, None] & rmask[None, :], other=0.0)  # fmt: skip
            acc += tl.dot(xt, W + A * H, input_precision="ieee")
        tl.store(z_ptr + bs[:, None] * K + cols[None, :], acc, mask=bmask[:, None] & cmask[None, :])


@triton.jit
def plastic_linear_bwd_kernel(
    gz_ptr, x_ptr, w_ptr, a_ptr, H_ptr,
    dx_ptr, dw_ptr, dA_ptr, dH_ptr, B, M, K,
    ALPHA_KIND: tl.constexpr, PER_SAMPLE: tl.constexpr, BLOCK_B: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """Program p owns rows I of the [M, K] gradients and columns I of dx. With G = x^T gz:
    dw = G, dH = alpha * G (shared) or alpha * x_b^T gz_b (per sample), d alpha = G * H (shared) or
    sum_b x_b^T gz_b * H_b; dx = gz (w + alpha * H)^T. dA is [M, K] (per connection) or the
    program's partial [K] at row p of a [P, K] tensor (per output and scalar)."""
    p = tl.program_id(0).to(tl.int64)
    rows = p * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < M
    kbase = tl.arange(0, BLOCK_K)
    dt = dw_ptr.dtype.element_ty
    MK = M * K + tl.full([], 0, tl.int64)  # 64-bit sample offsets (b is a 32-bit loop index)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + kbase
        cmask = cols < K
        _, _, m2, off, W, A = _wa_tile(w_ptr, a_ptr, rows, cols, cmask, M, K, ALPHA_KIND)
        G = tl.zeros([BLOCK_M, BLOCK_K], dtype=dt)
        if PER_SAMPLE:
            GH = G
            for b in range(0, B):
                x = tl.load(x_ptr + b * M + rows, mask=rmask, other=0.0)
                gz = tl.load(gz_ptr + b * K + cols, mask=cmask, other=0.0)
                H = tl.load(H_ptr + b * MK + off, mask=m2, other=0.0)
                P = x[:, None] * gz[None, :]
                G += P
                GH += P * H
                tl.store(dH_ptr + b * MK + off, A * P, mask=m2)
                part = tl.sum((W + A * H) * gz[None, :], axis=1)
                if k0 > 0:
                    part += tl.load(dx_ptr + b * M + rows, mask=rmask, other=0.0)
                tl.store(dx_ptr + b * M + rows, part, mask=rmask)
        else:
            H = tl.load(H_ptr + off, mask=m2, other=0.0)
            WT = W + A * H
            for b0 in range(0, B, BLOCK_B):
                bs = b0 + tl.arange(0, BLOCK_B)
                bmask = bs < B
                xt = tl.load(x_ptr + bs[:, None] * M + rows[None, :],
                             mask=bmask[:, None] & rmask[None, :], other=0.0)  # fmt: skip
                gz = tl.load(gz_ptr + bs[:, None] * K + cols[None, :],
                             mask=bmask[:, None] & cmask[None, :], other=0.0)  # fmt: skip
                G += tl.dot(tl.trans(xt), gz, input_precision="ieee")
                part = tl.dot(gz, tl.trans(WT), input_precision="ieee")  # [BLOCK_B, BLOCK_M]
                xoff = bs[:, None] * M + rows[None, :]
                xm = bmask[:, None] & rmask[None, :]
                if k0 > 0:
                    part += tl.load(dx_ptr + xoff, mask=xm, other=0.0)
                tl.store(dx_ptr + xoff, part, mask=xm)
            tl.store(dH_ptr + off, A * G, mask=m2)
            GH = G * H
        tl.store(dw_ptr + off, G, mask=m2)
        if ALPHA_KIND == 2:
            tl.store(dA_ptr + off, GH, mask=m2)
        else:
            tl.store(dA_ptr + p * K + cols, tl.sum(GH, axis=0), mask=cmask)
        tl.debug_barrier()  # this block's dx, re-read by other threads for the next columns
