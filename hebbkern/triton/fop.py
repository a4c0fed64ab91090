"""Triton kernels of the fused multi-tensor FOP step (SPEC.md section 5; oracle:
:mod:`hebbkern.reference.fop`, whose order of operations they follow).

One launch covers every tensor of a shape class. A tensor table ``meta`` (int64, ``NF`` fields per
tensor: addresses and sizes, built by :mod:`hebbkern.triton.fop_ops`) says where each tensor lives;
a program table ``progs`` (int32 pairs: tensor index, first row or element) says which rows each
program handles. Addresses are cast to typed pointers inside the kernels, so one compiled kernel
serves any set of tensors of the class.

Classes (by the preconditioned length d, padded to ``DPAD`` lanes):

- matrix classes (d <= 16: DPAD = 16; d <= 64: DPAD = 64): a tensor is viewed as rows of d
  elements; a tile is ``TILE_ROWS`` rows by DPAD lanes (lanes past d masked).
  ``pass1_matrix_kernel`` reads G (and W with weight decay) and the kept direction D_{t-1}, updates
  the base optimiser's state, writes D_t in place of D_{t-1}, and stores the program's partial
  ``S = D_{t-1}^T G`` in its own slot of ``partial`` (no atomics: summed in program order next, so
  results are deterministic). ``precond_kernel`` (one program per tensor) sums the partials,
  ``M += c (S + S^T) M`` (from step 2 on) and ``P = M M^T`` (rank-one updates in registers).
  ``pass2_matrix_kernel`` writes ``W -= lr D_t P``.
- the flat class (no preconditioner, and d > 64 whose products are cuBLAS GEMMs outside):
  ``pass1_flat_kernel`` is elementwise; it writes ``W -= lr D`` (no preconditioner) or only D_t
  into the direction buffer (``STORE``, d > 64).

State and arithmetic are float32 (``W_DT`` is the parameters' and gradients' dtype: float32,
bfloat16 or float16). Products use ``tl.dot`` with IEEE float32 (no TF32). The step counters are
read from device memory (already incremented), so nothing here needs the host to know the step:
the step is capturable in a CUDA graph.

Bases: 0 plain SGD, 1 SGD with momentum, 2 Adam.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

BASE_IDS = {"sgd": 0, "momentum": 1, "adam": 2}

# Fields of the tensor table, per tensor (int64).
F_W, F_G, F_B1, F_B2, F_DIR, F_M, F_STEP, F_ROWS, F_D, F_P0, F_P1, F_SLOT = range(12)
NF = 12


def interpreting() -> bool:
    """True under ``TRITON_INTERPRET=1`` (kernels run on CPU tensors through numpy)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@triton.jit
def _ptr(meta, i, field: tl.constexpr, DT: tl.constexpr):
    return tl.load(meta + i * 12 + field).to(tl.pointer_type(DT))


@triton.jit
def _field(meta, i, field: tl.constexpr):
    return tl.load(meta + i * 12 + field)


@triton.jit
def _pass1_program(meta, progs, W_DT: tl.constexpr):
    """A pass-1 program (``pid``) and its work item: its tensor ``i`` and first row / element (the
    program table holds the pairs), the tensor's W, G, moments and direction buffer, step count."""
    pid = tl.program_id(0)
    i = tl.load(progs + 2 * pid)
    start = tl.load(progs + 2 * pid + 1).to(tl.int64)
    w_ptr = _ptr(meta, i, 0, W_DT)
    g_ptr = _ptr(meta, i, 1, W_DT)
    m_ptr = _ptr(meta, i, 2, tl.float32)
    v_ptr = _ptr(meta, i, 3, tl.float32)
    d_ptr = _ptr(meta, i, 4, tl.float32)
    t = tl.load(_ptr(meta, i, 6, tl.float32))
    return pid, i, start, w_ptr, g_ptr, m_ptr, v_ptr, d_ptr, t


@triton.jit
def _neg_expm1(x):
    """``1 - exp(x)`` for x <= 0, accurate for small |x| (Kahan: the rounding of exp cancels in
    the ratio); 1 for x = -inf (beta = 0)."""
    u = tl.exp(x)
    um1 = u - 1.0
    regular = (um1 != 0.0) & (u > 0.0)
    r = tl.where(regular, um1 * x / tl.log(tl.where(regular, u, 0.5)), x)
    return tl.where(u > 0.0, -r, 1.0)


@triton.jit
def _bias_corrections(t, lnb1, lnb2):
    """``1 - beta1^t`` and ``sqrt(1 - beta2^t)`` from ``ln(beta)``, relative error ~1e-7."""
    bc1 = _neg_expm1(t * lnb1)
    bc2 = _neg_expm1(t * lnb2)
    return bc1, tl.sqrt_rn(bc2)


@triton.jit
def _direction(g, old, m_ptr, v_ptr, off, mask, first, momentum, beta1, omb1, beta2, omb2, eps,
               bc1, bc2s, BASE: tl.constexpr):  # fmt: skip
    """The base optimiser at the elements ``off``: updates Adam's moments, returns D_t."""
    if BASE == 2:
        m = tl.load(m_ptr + off, mask=mask, other=0.0) * beta1 + omb1 * g
        v = tl.load(v_ptr + off, mask=mask, other=0.0) * beta2 + omb2 * g * g
        tl.store(m_ptr + off, m, mask=mask)
        tl.store(v_ptr + off, v, mask=mask)
        d = tl.div_rn(tl.div_rn(m, bc1), tl.div_rn(tl.sqrt_rn(v), bc2s) + eps)
    elif BASE == 1:
        d = tl.where(first, g, old * momentum + g)
    else:
        d = g
    return d


@triton.jit
def pass1_matrix_kernel(
    meta, progs, partial, momentum, beta1, omb1, beta2, omb2, lnb1, lnb2, eps, wd,
    BASE: tl.constexpr, HAS_WD: tl.constexpr, W_DT: tl.constexpr, DPAD: tl.constexpr,
    TILE_ROWS: tl.constexpr, TILES: tl.constexpr,
):  # fmt: skip
    pid, i, r0, w_ptr, g_ptr, m_ptr, v_ptr, d_ptr, t = _pass1_program(meta, progs, W_DT)
    rows = _field(meta, i, 7)
    d = _field(meta, i, 8)
    first = t <= 1.0
    bc1 = 1.0
    bc2s = 1.0
    if BASE == 2:
        bc1, bc2s = _bias_corrections(t, lnb1, lnb2)
    rr = tl.arange(0, TILE_ROWS)
    cols = tl.arange(0, DPAD)
    acc = tl.zeros((DPAD, DPAD), dtype=tl.float32)
    for k in range(TILES):
        r = r0 + k * TILE_ROWS + rr
        mask = (r < rows)[:, None] & (cols < d)[None, :]
        off = r[:, None] * d + cols[None, :]
        g = tl.load(g_ptr + off, mask=mask, other=0.0).to(tl.float32)
        if HAS_WD:
            g = g + wd * tl.load(w_ptr + off, mask=mask, other=0.0).to(tl.float32)
        old = tl.load(d_ptr + off, mask=mask, other=0.0)
        new = _direction(g, old, m_ptr, v_ptr, off, mask, first, momentum, beta1, omb1, beta2,
                         omb2, eps, bc1, bc2s, BASE)  # fmt: skip
        tl.store(d_ptr + off, new, mask=mask)
        acc += tl.dot(tl.trans(old), g, input_precision="ieee")
    e = tl.arange(0, DPAD)
    tl.store(partial + pid.to(tl.int64) * DPAD * DPAD + e[:, None] * DPAD + e[None, :], acc)


@triton.jit
def precond_kernel(meta, tensors, partial, pbuf, c, DPAD: tl.constexpr):
    """One program per tensor of a matrix class: S from the partials in program order, the
    preconditioner's update (from step 2 on) and ``P = M M^T`` into ``pbuf[slot]``.

    The [d, d] products are sums of d rank-one updates whose vectors are read back from memory
    (``S + S^T`` parked in the program's ``pbuf`` slot, M in place): a ``tl.dot`` of two register
    tiles of 64 x 64 spilled (ptxas gave it 32 registers and a 2.7 KB stack frame). This program
    runs once per tensor per step; the barriers order its own stores and loads."""
    i = tl.load(tensors + tl.program_id(0))
    M_ptr = _ptr(meta, i, 5, tl.float32)
    t = tl.load(_ptr(meta, i, 6, tl.float32))
    d = _field(meta, i, 8)
    p0 = _field(meta, i, 9)
    p1 = _field(meta, i, 10)
    slot = _field(meta, i, 11)
    e = tl.arange(0, DPAD)
    valid = e < d
    mask = valid[:, None] & valid[None, :]
    moff = e[:, None] * d + e[None, :]
    scratch = pbuf + slot * DPAD * DPAD
    if t > 1.0:
        S = tl.zeros((DPAD, DPAD), dtype=tl.float32)
        for p in range(p0, p1):
            S += tl.load(partial + p * DPAD * DPAD + e[:, None] * DPAD + e[None, :])
        tl.store(scratch + e[:, None] * DPAD + e[None, :], S)
        tl.debug_barrier()
        # upd[j, k] = sum_l (S[j, l] + S[l, j]) M[l, k]
        upd = tl.zeros((DPAD, DPAD), dtype=tl.float32)
        for l in range(d):
            sym_col = tl.load(scratch + e * DPAD + l) + tl.load(scratch + l * DPAD + e)
            m_row = tl.load(M_ptr + l * d + e, mask=valid, other=0.0)
            upd += sym_col[:, None] * m_row[None, :]
        M = tl.load(M_ptr + moff, mask=mask, other=0.0)
        tl.debug_barrier()
        tl.store(M_ptr + moff, M + c * upd, mask=mask)
        tl.debug_barrier()
    # P[j, k] = sum_l M[j, l] M[k, l]
    P = tl.zeros((DPAD, DPAD), dtype=tl.float32)
    for l in range(d):
        m_col = tl.load(M_ptr + e * d + l, mask=valid, other=0.0)
        P += m_col[:, None] * m_col[None, :]
    tl.debug_barrier()
    tl.store(scratch + e[:, None] * DPAD + e[None, :], P)


@triton.jit
def pass2_matrix_kernel(
    meta, progs, pbuf, lr, W_DT: tl.constexpr, DPAD: tl.constexpr, TILE_ROWS: tl.constexpr,
    TILES: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    i = tl.load(progs + 2 * pid)
    r0 = tl.load(progs + 2 * pid + 1).to(tl.int64)
    w_ptr = _ptr(meta, i, 0, W_DT)
    d_ptr = _ptr(meta, i, 4, tl.float32)
    rows = _field(meta, i, 7)
    d = _field(meta, i, 8)
    slot = _field(meta, i, 11)
    e = tl.arange(0, DPAD)
    P = tl.load(pbuf + slot * DPAD * DPAD + e[:, None] * DPAD + e[None, :])
    rr = tl.arange(0, TILE_ROWS)
    for k in range(TILES):
        r = r0 + k * TILE_ROWS + rr
        mask = (r < rows)[:, None] & (e < d)[None, :]
        off = r[:, None] * d + e[None, :]
        D = tl.load(d_ptr + off, mask=mask, other=0.0)
        upd = tl.dot(D, P, input_precision="ieee")
        w = tl.load(w_ptr + off, mask=mask, other=0.0).to(tl.float32)
        tl.store(w_ptr + off, (w - lr * upd).to(W_DT), mask=mask)


@triton.jit
def pass1_flat_kernel(
    meta, progs, lr, momentum, beta1, omb1, beta2, omb2, lnb1, lnb2, eps, wd,
    BASE: tl.constexpr, HAS_WD: tl.constexpr, W_DT: tl.constexpr, BLOCK: tl.constexpr,
    TILES: tl.constexpr,
):  # fmt: skip
    """Elementwise: ``W -= lr D`` (no preconditioner) or D_t into the direction buffer (d > 64:
    the GEMMs outside apply P)."""
    _, i, e0, w_ptr, g_ptr, m_ptr, v_ptr, d_ptr, t = _pass1_program(meta, progs, W_DT)
    n = _field(meta, i, 7)
    store = _field(meta, i, 8) > 0
    first = t <= 1.0
    bc1 = 1.0
    bc2s = 1.0
    if BASE == 2:
        bc1, bc2s = _bias_corrections(t, lnb1, lnb2)
    need_w = HAS_WD | (store == 0)
    keep_d = (BASE == 1) | store
    ee = tl.arange(0, BLOCK)
    for k in range(TILES):
        off = e0 + k * BLOCK + ee
        mask = off < n
        g = tl.load(g_ptr + off, mask=mask, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + off, mask=mask & need_w, other=0.0).to(tl.float32)
        if HAS_WD:
            g = g + wd * w
        old = 0.0
        if BASE == 1:
            old = tl.load(d_ptr + off, mask=mask, other=0.0)
        new = _direction(g, old, m_ptr, v_ptr, off, mask, first, momentum, beta1, omb1, beta2,
                         omb2, eps, bc1, bc2s, BASE)  # fmt: skip
        tl.store(d_ptr + off, new, mask=mask & keep_d)
        tl.store(w_ptr + off, (w - lr * new).to(W_DT), mask=mask & (store == 0))
