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

Launches per step: ONE for the forward, one program per sample (the new activity needs the whole
``[N, N]`` trace of its sample; the trace update needs the whole new activity, so the program keeps
the sample). ONE for the backward, one program per sample too; when the batch shares parameters
(``w``/``alpha`` ``[N, N]``, eta, mod_w, ...), their gradients are sums over the samples, a
dependency across the whole grid, which a grid-wide barrier would turn into a deadlock once B
exceeds the programs resident at once. So the programs that finish LAST sum them ("last block"
reductions, as CUDA's threadFenceReduction sample), in two levels so that no single program walks
the whole batch: the samples form groups of G consecutive ones (G about sqrt(B)); every program
writes its per-sample terms to scratch and takes a ticket from its group's atomic counter; the
group's last program sums the group's terms of the [N, N] gradients (dw, d alpha per connection)
in the order of its samples into the group's partial, then takes a ticket from the batch counter;
the last group to finish sums the groups' partials in group order and the per-sample vectors and
scalars in sample order. Atomics touch the counters only, never a result, and every sum has a
fixed order, so the results are bitwise reproducible. Each counter is set back to 0 by the
program that drew its last ticket, for the next launch. Why this is correct on a GPU is written at
``_ticket``. Critical path of the sums: about (G + B / G) N^2 loads of one program, against
B N^2 for a single last program (NOTES.md G4).

Alpha kinds: 0 scalar, 1 per post-synaptic neuron ``[N]``, 2 per connection ``[N, N]``, 3 per
sample ``[B, N, N]``. Rules as in plastic_rnn.py (5: gated), and the variants of docs/SPEC.md
section 1.1 as plastic_rnn.py's compile-time constants (SOFT, ACT, SQUASH, UNMOD with the
run-time ``n_mod``; USES_ETA: the rule or the unmodulated neurons read ``eta``): the default
constants compile the code of section 1 exactly.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .plastic_rnn import (
    _act,
    _drive_adjoint,
    _load_alpha,
    _load_trace,
    _mod_adjoint,
    _modulation,
    _rule_bwd,
    _rule_fwd,
    _sample_program,
    _store_trace,
    _tile,
)


@triton.jit
def _matvec_tile(
    h_ptr, hebb_ptr, w_ptr, a_ptr, b, i0, rbase, cols, cmask, N,
    W_PER_SAMPLE: tl.constexpr, ALPHA_KIND: tl.constexpr,
):  # fmt: skip
    """The operands of row block ``i0`` of sample b's mat-vec ``h (w + alpha * H)``: the tile's
    rows, masks and offsets, and H, h[rows], w and alpha there."""
    rows, rmask, m2, off = _tile(i0, rbase, cols, cmask, N)
    woff = b * N * N if W_PER_SAMPLE else 0  # w per sample or shared
    H = tl.load(hebb_ptr + b * N * N + off, mask=m2, other=0.0)
    x = tl.load(h_ptr + b * N + rows, mask=rmask, other=0.0)
    w = tl.load(w_ptr + woff + off, mask=m2, other=0.0)
    if ALPHA_KIND == 3:  # per sample
        A = tl.load(a_ptr + b * N * N + off, mask=m2, other=0.0)
    else:
        A = _load_alpha(a_ptr, rows, cols, m2, cmask, N, ALPHA_KIND)
    return rows, rmask, m2, off, H, x, w, A


@triton.jit
def plastic_step_fwd_kernel(
    u_ptr, h_ptr, hebb_ptr, elig_ptr, w_ptr, a_ptr, clamp_ptr, eta_ptr, modw_ptr, modb_ptr,
    fw_ptr, fb_ptr,
    hn_ptr, hebbn_ptr, eligv_ptr, mod_ptr,
    N, clip, n_mod,
    RULE: tl.constexpr, ALPHA_KIND: tl.constexpr, W_PER_SAMPLE: tl.constexpr,
    HAS_CLAMP: tl.constexpr, HAS_FANOUT: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_I: tl.constexpr, USES_ETA: tl.constexpr, SOFT: tl.constexpr = False,
    ACT: tl.constexpr = 0, SQUASH: tl.constexpr = 0, UNMOD: tl.constexpr = False,
):  # fmt: skip
    """One program per sample b: ``h_new = f(u + h (w + alpha * H))`` (clamped neurons take
    u), the neuromodulator, then the trace (and eligibility) update into new tensors."""
    ELIG: tl.constexpr = RULE == 4
    MOD: tl.constexpr = RULE >= 3
    b, NN, cols, cmask, rbase, eta = _sample_program(eta_ptr, N, USES_ETA, BLOCK_N, BLOCK_I)

    u = tl.load(u_ptr + b * N + cols, mask=cmask, other=0.0)
    acc = u
    for i0 in range(0, N, BLOCK_I):
        rows, rmask, m2, off, H, x, w, A = _matvec_tile(
            h_ptr, hebb_ptr, w_ptr, a_ptr, b, i0, rbase, cols, cmask, N, W_PER_SAMPLE, ALPHA_KIND
        )
        acc += tl.sum(x[:, None] * (w + A * H), axis=0)
    hn = _act(acc, ACT)
    if HAS_CLAMP:
        c = tl.load(clamp_ptr + b * N + cols, mask=cmask, other=0)
        hn = tl.where(c != 0, u, hn)
    hn = tl.where(cmask, hn, 0.0)
    tl.store(hn_ptr + b * N + cols, hn, mask=cmask)
    M = hn * 0.0
    if MOD:
        mw = tl.load(modw_ptr + cols, mask=cmask, other=0.0)
        s = _act(tl.sum(hn * mw, axis=0) + tl.load(modb_ptr), SQUASH)
        tl.store(mod_ptr + b, s)
        M = _modulation(s, fw_ptr, fb_ptr, cols, cmask, HAS_FANOUT, n_mod, eta, UNMOD)

    for i0 in range(0, N, BLOCK_I):
        rows, rmask, m2, off = _tile(i0, rbase, cols, cmask, N)
        H, E = _load_trace(hebb_ptr + b * NN, elig_ptr + b * NN, off, m2, ELIG)
        pre = tl.load(h_ptr + b * N + rows, mask=rmask, other=0.0)
        H, E = _rule_fwd(H, E, pre[:, None], hn[None, :], M[None, :], eta, clip, RULE, SOFT)
        _store_trace(hebbn_ptr + b * NN, eligv_ptr + b * NN, off, m2, H, E, ELIG)


@triton.jit
def plastic_step_bwd_kernel(
    gh_ptr, gH_ptr, gE_ptr, h_ptr, hebb_ptr, elig_ptr, w_ptr, a_ptr, hn_ptr, mod_ptr, clamp_ptr,
    eta_ptr, modw_ptr, fw_ptr, fb_ptr,
    du_ptr, dh_ptr, dH_ptr, dE_ptr, da_ptr, dw_ptr, dA_ptr, dAv_ptr, deta_ptr, dmw_ptr, dmb_ptr,
    dfw_ptr, dfb_ptr,
    count_ptr, pw_ptr, pA_ptr, deta_out, dmw_out, dmb_out, dfw_out, dfb_out,
    B, N, G, n_groups, clip, n_mod,
    RULE: tl.constexpr, ALPHA_KIND: tl.constexpr, W_PER_SAMPLE: tl.constexpr,
    HAS_GHEBB: tl.constexpr, HAS_GELIG: tl.constexpr, HAS_CLAMP: tl.constexpr,
    HAS_FANOUT: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_I: tl.constexpr,
    USES_ETA: tl.constexpr, SOFT: tl.constexpr = False, ACT: tl.constexpr = 0,
    SQUASH: tl.constexpr = 0, UNMOD: tl.constexpr = False,
):  # fmt: skip
    """One program per sample b. Final per-sample gradients: du, dh [B, N], d hebb, d elig
    [B, N, N], dw [B, N, N] (w per sample), dA [B, N, N] (alpha per sample). Per-sample terms of
    the shared parameters' gradients, written to scratch and summed over the batch by the last
    programs (``_ticket``; n_groups = ceil(B / G) groups of G samples, an argument rather than
    a value computed here and kept live through the sums, where ptxas spilled it; group partials
    pw, pA [n_groups, N, N]): da [B, N] (the
    pre-activation's adjoint: dw = h^T da), dAv [B, N] (alpha per neuron or scalar), deta, dmb
    [B], dmw, dfw, dfb [B, N]."""
    ELIG: tl.constexpr = RULE == 4
    MOD: tl.constexpr = RULE >= 3
    b, NN, cols, cmask, rbase, eta = _sample_program(eta_ptr, N, USES_ETA, BLOCK_N, BLOCK_I)
    post = tl.load(hn_ptr + b * N + cols, mask=cmask, other=0.0)
    zv = post * 0.0
    s = 0.0
    M = zv
    if MOD:
        s = tl.load(mod_ptr + b)
        M = _modulation(s, fw_ptr, fb_ptr, cols, cmask, HAS_FANOUT, n_mod, eta, UNMOD)

    # Pass A: adjoint of the trace update (its pre-synaptic terms go to dh, finished in pass B).
    dpost = zv
    dM = zv
    deta = tl.sum(zv, axis=0)
    for i0 in range(0, N, BLOCK_I):
        rows, rmask, m2, off = _tile(i0, rbase, cols, cmask, N)
        H, E = _load_trace(hebb_ptr + b * NN, elig_ptr + b * NN, off, m2, ELIG)
        dH = tl.zeros([BLOCK_I, BLOCK_N], dtype=post.dtype)
        if HAS_GHEBB:
            dH = tl.load(gH_ptr + b * NN + off, mask=m2, other=0.0)
        dE = dH
        if ELIG:
            dE = dH * 0.0
            if HAS_GELIG:
                dE = tl.load(gE_ptr + b * NN + off, mask=m2, other=0.0)
        pre = tl.load(h_ptr + b * N + rows, mask=rmask, other=0.0)
        dH, dE, g_pre, g_post, g_mod, g_eta = _rule_bwd(
            H, E, pre[:, None], post[None, :], M[None, :], eta, clip, dH, dE, RULE, SOFT
        )
        _store_trace(dH_ptr + b * NN, dE_ptr + b * NN, off, m2, dH, dE, ELIG)
        dpost += tl.sum(g_post, axis=0)
        if MOD:
            dM += tl.sum(g_mod, axis=0)
        if USES_ETA:
            deta += tl.sum(tl.sum(g_eta, axis=1), axis=0)
        tl.store(dh_ptr + b * N + rows, tl.sum(g_pre, axis=1), mask=rmask)

    # Adjoint of h_new: its output gradient, the trace update and the neuromodulator.
    g = tl.load(gh_ptr + b * N + cols, mask=cmask, other=0.0) + dpost
    if MOD:
        dM, dz, deta = _mod_adjoint(dM, s, deta, fw_ptr, cols, cmask, n_mod, HAS_FANOUT, UNMOD,
                                    SQUASH)  # fmt: skip
        if HAS_FANOUT:
            tl.store(dfw_ptr + b * N + cols, dM * s, mask=cmask)
            tl.store(dfb_ptr + b * N + cols, dM, mask=cmask)
        tl.store(dmb_ptr + b, dz)
        g += dz * tl.load(modw_ptr + cols, mask=cmask, other=0.0)
        tl.store(dmw_ptr + b * N + cols, dz * post, mask=cmask)
    if USES_ETA:
        tl.store(deta_ptr + b, deta)
    du, da = _drive_adjoint(g, post, clamp_ptr + b * N, cols, cmask, HAS_CLAMP, ACT)
    tl.store(du_ptr + b * N + cols, du, mask=cmask)
    tl.store(da_ptr + b * N + cols, da, mask=cmask)
    tl.debug_barrier()  # pass A's dh and d hebb, re-read below by other threads

    # Pass B: adjoint of the mat-vec a = u + h (w + A * H).
    dA_vec = zv
    for i0 in range(0, N, BLOCK_I):
        rows, rmask, m2, off, H, x, w, A = _matvec_tile(
            h_ptr, hebb_ptr, w_ptr, a_ptr, b, i0, rbase, cols, cmask, N, W_PER_SAMPLE, ALPHA_KIND
        )
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

    # The batch sums, two levels of "last program" (module docstring, ``_ticket``).
    # Each counter is set back to 0 as soon as its last ticket is drawn (no program of this launch
    # touches it again), before the sums: its address is then not kept live across them (the AOT
    # check found it spilled to local memory there).
    g = b // G
    if _ticket(count_ptr + g, tl.minimum(G, B - g * G)):
        tl.store(count_ptr + g, 0)  # the group's programs all drew their tickets
        _group_sums(h_ptr, hebb_ptr, da_ptr, pw_ptr, pA_ptr, g, G, B, N, cols, cmask, rbase,
                    ALPHA_KIND, W_PER_SAMPLE, BLOCK_I, BLOCK_N)  # fmt: skip
        if _ticket(count_ptr + n_groups, n_groups):
            tl.store(count_ptr + n_groups, 0)
            _final_sums(
                pw_ptr, pA_ptr, dAv_ptr, deta_ptr, dmw_ptr, dmb_ptr, dfw_ptr, dfb_ptr, dw_ptr,
                dA_ptr, deta_out, dmw_out, dmb_out, dfw_out, dfb_out, n_groups, B, N, cols,
                cmask, rbase, RULE, ALPHA_KIND, W_PER_SAMPLE, HAS_FANOUT, USES_ETA, BLOCK_I,
                BLOCK_N,
            )  # fmt: skip


@triton.jit
def _ticket(count_ptr, n):
    """Takes a ticket from the counter at ``count_ptr``, shared by ``n`` programs; True for the
    program that draws the last one (n - 1), when the other n - 1 have written their terms.

    Memory ordering on the GPU (PTX memory model): a program's scratch is written by all its
    threads; the barrier before the ticket orders those writes before it (a barrier synchronizes
    the CTA's threads, and the ticket's release at GPU scope is cumulative: it publishes every
    write ordered before it, not only its own thread's). Triton's scalar atomic runs on one thread
    and broadcasts its result through shared memory behind a barrier; the barrier after it repeats
    that guarantee. The program that draws ticket n - 1 has acquired (at GPU scope) the releases of
    all n - 1 earlier tickets, since the read-modify-writes of one counter form one chain, so its
    loads after the barrier, on every thread, see the others' scratch; the acquire also
    invalidates the SM's L1, and the sums load scratch with ``.cg`` (bypassing L1) besides. The
    second level chains on: a group's last program releases (its batch ticket) its group partial
    and, cumulatively, the group's per-sample terms it acquired. The counter goes back to 0 once
    its n tickets are drawn (no program of this launch touches it again); the next launch on the
    stream starts after this one ends, so the op may be replayed from a CUDA graph and the counter
    reused. The interpreter runs the programs one after the other, b = 0, 1, ..."""
    tl.debug_barrier()
    ticket = tl.atomic_add(count_ptr, 1, sem="acq_rel", scope="gpu")
    tl.debug_barrier()
    return ticket == n - 1


@triton.jit
def _batch_sum_vec(v_ptr, B, N, cols, cmask):
    """``sum_b v[b, cols]`` in order b = 0, 1, ..."""
    acc = cols.to(v_ptr.dtype.element_ty) * 0.0  # zeros (no load: B may be 0)
    for b in range(0, B):
        acc += tl.load(v_ptr + b * N + cols, mask=cmask, other=0.0, cache_modifier=".cg")
    return acc


@triton.jit
def _group_sums(
    h_ptr, hebb_ptr, da_ptr, pw_ptr, pA_ptr, g, G, B, N, cols, cmask, rbase,
    ALPHA_KIND: tl.constexpr, W_PER_SAMPLE: tl.constexpr, BLOCK_I: tl.constexpr,
    BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Group g's partials of the [N, N] gradients, over its samples in order: ``pw[g] = sum_b
    h_b^T da_b`` (w shared) and ``pA[g] = sum_b h_b^T da_b * H_b`` (alpha per connection)."""
    if (not W_PER_SAMPLE) or ALPHA_KIND == 2:
        NN = N * N + tl.full([], 0, tl.int64)  # 64-bit offsets (b, g are 32-bit indices)
        b0 = g * G
        b1 = tl.minimum(b0 + G, B)
        for i0 in range(0, N, BLOCK_I):
            rows, rmask, m2, off = _tile(i0, rbase, cols, cmask, N)
            dw = tl.zeros([BLOCK_I, BLOCK_N], dtype=pw_ptr.dtype.element_ty)
            dA = dw
            for b in range(b0, b1):
                x = tl.load(h_ptr + b * N + rows, mask=rmask, other=0.0)
                d = tl.load(da_ptr + b * N + cols, mask=cmask, other=0.0, cache_modifier=".cg")
                xda = x[:, None] * d[None, :]
                dw += xda
                if ALPHA_KIND == 2:
                    dA += xda * tl.load(hebb_ptr + b * NN + off, mask=m2, other=0.0)
            if not W_PER_SAMPLE:
                tl.store(pw_ptr + g * NN + off, dw, mask=m2)
            if ALPHA_KIND == 2:
                tl.store(pA_ptr + g * NN + off, dA, mask=m2)


@triton.jit
def _final_sums(
    pw_ptr, pA_ptr, dAv_ptr, deta_ptr, dmw_ptr, dmb_ptr, dfw_ptr, dfb_ptr, dw_ptr, dA_ptr,
    deta_out, dmw_out, dmb_out, dfw_out, dfb_out, n_groups, B, N, cols, cmask, rbase,
    RULE: tl.constexpr, ALPHA_KIND: tl.constexpr, W_PER_SAMPLE: tl.constexpr,
    HAS_FANOUT: tl.constexpr, USES_ETA: tl.constexpr, BLOCK_I: tl.constexpr,
    BLOCK_N: tl.constexpr,
):  # fmt: skip
    """The shared parameters' gradients: dw and d alpha per connection from the groups' partials
    in group order, the rest (d alpha per neuron or scalar, eta, mod_w, mod_b, the fan-out) from
    the per-sample terms in sample order."""
    MOD: tl.constexpr = RULE >= 3
    if (not W_PER_SAMPLE) or ALPHA_KIND == 2:
        NN = N * N + tl.full([], 0, tl.int64)
        for i0 in range(0, N, BLOCK_I):
            rows, rmask, m2, off = _tile(i0, rbase, cols, cmask, N)
            dw = tl.zeros([BLOCK_I, BLOCK_N], dtype=pw_ptr.dtype.element_ty)
            dA = dw
            for g in range(0, n_groups):
                if not W_PER_SAMPLE:
                    dw += tl.load(pw_ptr + g * NN + off, mask=m2, other=0.0, cache_modifier=".cg")
                if ALPHA_KIND == 2:
                    dA += tl.load(pA_ptr + g * NN + off, mask=m2, other=0.0, cache_modifier=".cg")
            if not W_PER_SAMPLE:
                tl.store(dw_ptr + off, dw, mask=m2)
            if ALPHA_KIND == 2:
                tl.store(dA_ptr + off, dA, mask=m2)
    if ALPHA_KIND == 1:
        tl.store(dA_ptr + cols, _batch_sum_vec(dAv_ptr, B, N, cols, cmask), mask=cmask)
    if ALPHA_KIND == 0:
        tl.store(dA_ptr, tl.sum(_batch_sum_vec(dAv_ptr, B, N, cols, cmask), axis=0))
    bmask = cols < 1
    if USES_ETA:
        tl.store(deta_out, tl.sum(_batch_sum_vec(deta_ptr, B, 1, cols, bmask), axis=0))
    if MOD:
        tl.store(dmw_out + cols, _batch_sum_vec(dmw_ptr, B, N, cols, cmask), mask=cmask)
        tl.store(dmb_out, tl.sum(_batch_sum_vec(dmb_ptr, B, 1, cols, bmask), axis=0))
        if HAS_FANOUT:
            tl.store(dfw_out + cols, _batch_sum_vec(dfw_ptr, B, N, cols, cmask), mask=cmask)
            tl.store(dfb_out + cols, _batch_sum_vec(dfb_ptr, B, N, cols, cmask), mask=cmask)
