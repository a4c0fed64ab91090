"""Triton kernels of one step of the plastic recurrent layer (``plastic_step``, SPEC.md section 1).

Why Triton and not CUDA C++ on the Block interface: the step is a per-sample mat-vec and one trace
update, the same tiles as ``plastic_rnn``'s Triton kernels, whose helpers (the rules and their
adjoints, alpha loads, the neuromodulator) are reused here as they are; the Triton interpreter runs
these kernels on CPU tensors, so every rule and option is checked here without a GPU; and
``torch.library.triton_op`` gives the fake kernel and keeps the kernels inside a
``torch.compile(fullgraph=True)`` graph. The cost Triton adds is the CPU side of a launch (its
Python launcher, some microseconds more than a C++ op's), paid per step by an agent that calls the
op once per environment step. That loop is meant to be captured: the ops make no host sync and
read no tensor value on the host (eta, mod_b are tensors; rule, alpha kind and the flags are
constexprs; clip a float fixed at capture), so the whole step, forward and backward, replays from a
CUDA graph (``torch.cuda.graph`` or ``torch.compile(mode="reduce-overhead")``), where no launcher
runs. benchmarks/plastic_step.py measures the eager and the graphed loop.

Launches per step: the forward is ONE kernel, one program per sample (the new activity needs the
whole ``[N, N]`` trace of its sample; the trace update needs the whole new activity, so the
program keeps the sample). The backward is one per-sample kernel, plus, when the batch shares
parameters (``w``/``alpha`` ``[N, N]``, eta, mod_w, ...), one kernel that sums their gradients over
the samples in a fixed order. That sum needs every sample's adjoint, a dependency across the whole
grid: inside one launch it would take atomics (not deterministic) or a grid-wide barrier (a
deadlock once B exceeds the programs resident at once), so it is a second launch, and the results
are deterministic: no atomics anywhere.

Alpha kinds: 0 scalar, 1 per post-synaptic neuron ``[N]``, 2 per connection ``[N, N]``, 3 per
sample ``[B, N, N]``. Rules as in plastic_rnn.py.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .plastic_rnn import _load_alpha, _modulation, _rule_bwd, _rule_fwd, _tanh

# plastic_rnn's helpers carry the variants of docs/SPEC.md section 1.1 (SOFT; n_mod and eta of the
# unmodulated neurons). These kernels compute section 1 only: SOFT and UNMOD False (every neuron
# modulated); the op raises NotImplementedError for a variant before any launch.


@triton.jit
def _tiles(b, i0, rbase, cols, cmask, N, W_PER_SAMPLE: tl.constexpr, ALPHA_KIND: tl.constexpr):
    """Row block ``i0`` of sample ``b``: rows, their mask, the tile mask, the tile's offsets inside
    one ``[N, N]`` matrix, and the offsets of ``w`` and ``alpha`` (per sample or shared)."""
    rows = i0 + rbase
    rmask = rows < N
    m2 = rmask[:, None] & cmask[None, :]
    off = rows[:, None] * N + cols[None, :]
    woff = b * N * N if W_PER_SAMPLE else 0
    aoff = b * N * N if ALPHA_KIND == 3 else 0
    return rows, rmask, m2, off, woff, aoff


@triton.jit
def _alpha_tile(a_ptr, aoff, rows, cols, m2, cmask, N, ALPHA_KIND: tl.constexpr):
    if ALPHA_KIND == 3:
        A = tl.load(a_ptr + aoff + rows[:, None] * N + cols[None, :], mask=m2, other=0.0)
    else:
        A = _load_alpha(a_ptr, rows, cols, m2, cmask, N, ALPHA_KIND)
    return A


@triton.jit
def plastic_step_fwd_kernel(
    u_ptr, h_ptr, hebb_ptr, elig_ptr, w_ptr, a_ptr, clamp_ptr, eta_ptr, modw_ptr, modb_ptr,
    fw_ptr, fb_ptr,
    hn_ptr, hebbn_ptr, eligv_ptr, mod_ptr,
    N, clip,
    RULE: tl.constexpr, ALPHA_KIND: tl.constexpr, W_PER_SAMPLE: tl.constexpr,
    HAS_CLAMP: tl.constexpr, HAS_FANOUT: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_I: tl.constexpr,
):  # fmt: skip
    """One program per sample b: ``h_new = tanh(u + h (w + alpha * H))`` (clamped neurons take
    u), the neuromodulator, then the trace (and eligibility) update into new tensors."""
    ELIG: tl.constexpr = RULE == 4
    MOD: tl.constexpr = RULE >= 3
    b = tl.program_id(0).to(tl.int64)
    NN = N * N
    cols = tl.arange(0, BLOCK_N)
    cmask = cols < N
    rbase = tl.arange(0, BLOCK_I)
    eta = 0.0
    if RULE != 3:
        eta = tl.load(eta_ptr)

    u = tl.load(u_ptr + b * N + cols, mask=cmask, other=0.0)
    acc = u
    for i0 in range(0, N, BLOCK_I):
        rows, rmask, m2, off, woff, aoff = _tiles(b, i0, rbase, cols, cmask, N, W_PER_SAMPLE,
                                                  ALPHA_KIND)  # fmt: skip
        H = tl.load(hebb_ptr + b * NN + off, mask=m2, other=0.0)
        x = tl.load(h_ptr + b * N + rows, mask=rmask, other=0.0)
        w = tl.load(w_ptr + woff + off, mask=m2, other=0.0)
        A = _alpha_tile(a_ptr, aoff, rows, cols, m2, cmask, N, ALPHA_KIND)
        acc += tl.sum(x[:, None] * (w + A * H), axis=0)
    hn = _tanh(acc)
    if HAS_CLAMP:
        c = tl.load(clamp_ptr + b * N + cols, mask=cmask, other=0)
        hn = tl.where(c != 0, u, hn)
    hn = tl.where(cmask, hn, 0.0)
    tl.store(hn_ptr + b * N + cols, hn, mask=cmask)
    M = hn * 0.0
    if MOD:
        mw = tl.load(modw_ptr + cols, mask=cmask, other=0.0)
        s = _tanh(tl.sum(hn * mw, axis=0) + tl.load(modb_ptr))
        tl.store(mod_ptr + b, s)
        M = _modulation(s, fw_ptr, fb_ptr, cols, cmask, HAS_FANOUT, N, 0.0, False)

    for i0 in range(0, N, BLOCK_I):
        rows, rmask, m2, off, woff, aoff = _tiles(b, i0, rbase, cols, cmask, N, W_PER_SAMPLE,
                                                  ALPHA_KIND)  # fmt: skip
        H = tl.load(hebb_ptr + b * NN + off, mask=m2, other=0.0)
        E = H
        if ELIG:
            E = tl.load(elig_ptr + b * NN + off, mask=m2, other=0.0)
        pre = tl.load(h_ptr + b * N + rows, mask=rmask, other=0.0)
        H, E = _rule_fwd(H, E, pre[:, None], hn[None, :], M[None, :], eta, clip, RULE, False)
        tl.store(hebbn_ptr + b * NN + off, H, mask=m2)
        if ELIG:
            tl.store(eligv_ptr + b * NN + off, E, mask=m2)


@triton.jit
def plastic_step_bwd_kernel(
    gh_ptr, gH_ptr, gE_ptr, h_ptr, hebb_ptr, elig_ptr, w_ptr, a_ptr, hn_ptr, mod_ptr, clamp_ptr,
    eta_ptr, modw_ptr, fw_ptr, fb_ptr,
    du_ptr, dh_ptr, dH_ptr, dE_ptr, da_ptr, dw_ptr, dA_ptr, dAv_ptr, deta_ptr, dmw_ptr, dmb_ptr,
    dfw_ptr, dfb_ptr,
    N, clip,
    RULE: tl.constexpr, ALPHA_KIND: tl.constexpr, W_PER_SAMPLE: tl.constexpr,
    HAS_GHEBB: tl.constexpr, HAS_GELIG: tl.constexpr, HAS_CLAMP: tl.constexpr,
    HAS_FANOUT: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_I: tl.constexpr,
):  # fmt: skip
    """One program per sample b. Final per-sample gradients: du, dh [B, N], d hebb, d elig
    [B, N, N], dw [B, N, N] (w per sample), dA [B, N, N] (alpha per sample). Per-sample terms of
    the shared parameters' gradients, summed over the batch by ``plastic_step_reduce_kernel``: da
    [B, N] (the pre-activation's adjoint: dw = h^T da), dAv [B, N] (alpha per neuron or scalar),
    deta, dmb [B], dmw, dfw, dfb [B, N]."""
    ELIG: tl.constexpr = RULE == 4
    MOD: tl.constexpr = RULE >= 3
    b = tl.program_id(0).to(tl.int64)
    NN = N * N
    cols = tl.arange(0, BLOCK_N)
    cmask = cols < N
    rbase = tl.arange(0, BLOCK_I)
    eta = 0.0
    if RULE != 3:
        eta = tl.load(eta_ptr)
    post = tl.load(hn_ptr + b * N + cols, mask=cmask, other=0.0)
    zv = post * 0.0
    s = 0.0
    M = zv
    if MOD:
        s = tl.load(mod_ptr + b)
        M = _modulation(s, fw_ptr, fb_ptr, cols, cmask, HAS_FANOUT, N, 0.0, False)

    # Pass A: adjoint of the trace update (its pre-synaptic terms go to dh, finished in pass B).
    dpost = zv
    dM = zv
    deta = tl.sum(zv, axis=0)
    for i0 in range(0, N, BLOCK_I):
        rows, rmask, m2, off, woff, aoff = _tiles(b, i0, rbase, cols, cmask, N, W_PER_SAMPLE,
                                                  ALPHA_KIND)  # fmt: skip
        H = tl.load(hebb_ptr + b * NN + off, mask=m2, other=0.0)
        dH = tl.zeros([BLOCK_I, BLOCK_N], dtype=post.dtype)
        if HAS_GHEBB:
            dH = tl.load(gH_ptr + b * NN + off, mask=m2, other=0.0)
        E = H
        dE = dH
        if ELIG:
            E = tl.load(elig_ptr + b * NN + off, mask=m2, other=0.0)
            dE = dH * 0.0
            if HAS_GELIG:
                dE = tl.load(gE_ptr + b * NN + off, mask=m2, other=0.0)
        pre = tl.load(h_ptr + b * N + rows, mask=rmask, other=0.0)
        dH, dE, g_pre, g_post, g_mod, g_eta = _rule_bwd(
            H, E, pre[:, None], post[None, :], M[None, :], eta, clip, dH, dE, RULE, False
        )
        tl.store(dH_ptr + b * NN + off, dH, mask=m2)
        if ELIG:
            tl.store(dE_ptr + b * NN + off, dE, mask=m2)
        dpost += tl.sum(g_post, axis=0)
        if MOD:
            dM += tl.sum(g_mod, axis=0)
        if RULE != 3:
            deta += tl.sum(tl.sum(g_eta, axis=1), axis=0)
        tl.store(dh_ptr + b * N + rows, tl.sum(g_pre, axis=1), mask=rmask)

    # Adjoint of h_new: its output gradient, the trace update and the neuromodulator.
    g = tl.load(gh_ptr + b * N + cols, mask=cmask, other=0.0) + dpost
    if MOD:
        if HAS_FANOUT:
            fw = tl.load(fw_ptr + cols, mask=cmask, other=0.0)
            ds = tl.sum(dM * fw, axis=0)
            tl.store(dfw_ptr + b * N + cols, dM * s, mask=cmask)
            tl.store(dfb_ptr + b * N + cols, dM, mask=cmask)
        else:
            ds = tl.sum(dM, axis=0)
        dz = ds * (1.0 - s * s)
        tl.store(dmb_ptr + b, dz)
        g += dz * tl.load(modw_ptr + cols, mask=cmask, other=0.0)
        tl.store(dmw_ptr + b * N + cols, dz * post, mask=cmask)
    if RULE != 3:
        tl.store(deta_ptr + b, deta)
    da = g * (1.0 - post * post)
    du = da
    if HAS_CLAMP:
        cl = tl.load(clamp_ptr + b * N + cols, mask=cmask, other=0) != 0
        da = tl.where(cl, 0.0, da)
        du = tl.where(cl, g, da)
    da = tl.where(cmask, da, 0.0)
    tl.store(du_ptr + b * N + cols, du, mask=cmask)
    tl.store(da_ptr + b * N + cols, da, mask=cmask)
    tl.debug_barrier()  # pass A's dh and d hebb, re-read below by other threads

    # Pass B: adjoint of the mat-vec a = u + h (w + A * H).
    dA_vec = zv
    for i0 in range(0, N, BLOCK_I):
        rows, rmask, m2, off, woff, aoff = _tiles(b, i0, rbase, cols, cmask, N, W_PER_SAMPLE,
                                                  ALPHA_KIND)  # fmt: skip
        H = tl.load(hebb_ptr + b * NN + off, mask=m2, other=0.0)
        x = tl.load(h_ptr + b * N + rows, mask=rmask, other=0.0)
        w = tl.load(w_ptr + woff + off, mask=m2, other=0.0)
        A = _alpha_tile(a_ptr, aoff, rows, cols, m2, cmask, N, ALPHA_KIND)
        xda = x[:, None] * da[None, :]
        dH = tl.load(dH_ptr + b * NN + off, mask=m2, other=0.0) + A * xda
        tl.store(dH_ptr + b * NN + off, dH, mask=m2)
        if W_PER_SAMPLE:
            tl.store(dw_ptr + b * NN + off, xda, mask=m2)
        if ALPHA_KIND == 3:
            tl.store(dA_ptr + b * NN + off, xda * H, mask=m2)
        elif ALPHA_KIND != 2:
            dA_vec += tl.sum(xda * H, axis=0)
        mv = tl.sum((w + A * H) * da[None, :], axis=1)
        dh = tl.load(dh_ptr + b * N + rows, mask=rmask, other=0.0) + mv
        tl.store(dh_ptr + b * N + rows, dh, mask=rmask)
    if ALPHA_KIND < 2:
        tl.store(dAv_ptr + b * N + cols, dA_vec, mask=cmask)


@triton.jit
def _batch_sum_vec(v_ptr, B, N, cols, cmask):
    """``sum_b v[b, cols]`` in order b = 0, 1, ..."""
    acc = cols.to(v_ptr.dtype.element_ty) * 0.0  # zeros (no load: B may be 0)
    for b in range(0, B):
        acc += tl.load(v_ptr + b * N + cols, mask=cmask, other=0.0)
    return acc


@triton.jit
def plastic_step_reduce_kernel(
    h_ptr, hebb_ptr, da_ptr, dAv_ptr, deta_ptr, dmw_ptr, dmb_ptr, dfw_ptr, dfb_ptr,
    dw_ptr, dA_ptr, deta_out, dmw_out, dmb_out, dfw_out, dfb_out,
    B, N,
    RULE: tl.constexpr, ALPHA_KIND: tl.constexpr, W_PER_SAMPLE: tl.constexpr,
    HAS_FANOUT: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr,
    BLOCK_V: tl.constexpr,
):  # fmt: skip
    """The batch sums of the shared parameters' gradients, each in a fixed order over the
    samples. Program (p, q) owns the tile (rows p, columns q) of dw = sum_b h_b^T da_b and of
    dalpha (per connection) = sum_b h_b^T da_b * H_b; program (0, 0) also sums the per-sample
    vectors and scalars (dalpha per neuron or scalar, eta, mod_w, mod_b, the fan-out)."""
    MOD: tl.constexpr = RULE >= 3
    pi = tl.program_id(0)
    pj = tl.program_id(1)
    rows = pi * BLOCK_I + tl.arange(0, BLOCK_I)
    cols = pj * BLOCK_J + tl.arange(0, BLOCK_J)
    rmask = rows < N
    cmask = cols < N
    m2 = rmask[:, None] & cmask[None, :]
    off = rows[:, None] * N + cols[None, :]
    NN = N * N + tl.full([], 0, tl.int64)  # 64-bit sample offsets (b is a 32-bit loop index)
    if (not W_PER_SAMPLE) or ALPHA_KIND == 2:
        dw = tl.zeros([BLOCK_I, BLOCK_J], dtype=dw_ptr.dtype.element_ty)
        dA = dw
        for b in range(0, B):
            x = tl.load(h_ptr + b * N + rows, mask=rmask, other=0.0)
            d = tl.load(da_ptr + b * N + cols, mask=cmask, other=0.0)
            xda = x[:, None] * d[None, :]
            dw += xda
            if ALPHA_KIND == 2:
                dA += xda * tl.load(hebb_ptr + b * NN + off, mask=m2, other=0.0)
        if not W_PER_SAMPLE:
            tl.store(dw_ptr + off, dw, mask=m2)
        if ALPHA_KIND == 2:
            tl.store(dA_ptr + off, dA, mask=m2)
    if (pi == 0) & (pj == 0):
        vc = tl.arange(0, BLOCK_V)
        vm = vc < N
        if ALPHA_KIND == 1:
            tl.store(dA_ptr + vc, _batch_sum_vec(dAv_ptr, B, N, vc, vm), mask=vm)
        if ALPHA_KIND == 0:
            tl.store(dA_ptr, tl.sum(_batch_sum_vec(dAv_ptr, B, N, vc, vm), axis=0))
        bmask = vc < 1
        if RULE != 3:
            tl.store(deta_out, tl.sum(_batch_sum_vec(deta_ptr, B, 1, vc, bmask), axis=0))
        if MOD:
            tl.store(dmw_out + vc, _batch_sum_vec(dmw_ptr, B, N, vc, vm), mask=vm)
            tl.store(dmb_out, tl.sum(_batch_sum_vec(dmb_ptr, B, 1, vc, bmask), axis=0))
            if HAS_FANOUT:
                tl.store(dfw_out + vc, _batch_sum_vec(dfw_ptr, B, N, vc, vm), mask=vm)
                tl.store(dfb_out + vc, _batch_sum_vec(dfb_ptr, B, N, vc, vm), mask=vm)
