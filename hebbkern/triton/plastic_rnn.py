"""Triton kernels of the plastic recurrent layer (SPEC.md section 1), forward and backward.

Work layout (see benchmarks/NOTES.md, "Triton backend"): one program per sample runs the whole time
loop. Its ``[N, N]`` trace lives in a per-sample slab of global memory (the ``hebb`` output itself;
one sample's slab is 64 KiB at N = 128, so it stays in L1/L2 across steps) and is visited in blocks
of ``BLOCK_I`` pre-synaptic rows by ``BLOCK_N`` (all) post-synaptic columns, so the register tile is
``BLOCK_I * BLOCK_N`` whatever N is: no N makes the kernel spill, and small N (one block) never
leaves L1. Each step is ONE pass over the trace: a row block first receives the pending update of
step t-1 (it needed all of h_{t-1}), then feeds step t's mat-vec, as in the CPU kernel.

The backward recomputes the traces of each chunk of ``K`` steps from the forward's checkpoints into
a ``[B, K, N, N]`` workspace, then walks the chunk's steps backwards with two passes per step: the
adjoint of step t's trace update, then the adjoint of its mat-vec. The weight gradient is one GEMM
outside the kernel (``dw = sum_t h_{t-1}^T da_t``), from the ``da`` the kernel writes.

Vectors shared across rows (h_t, adjoints) are exchanged through global memory with a barrier, as
the row blocks of a step are handled by different threads than the columns.

Resident kernels (compile-time RESIDENT; issue 13 item 4, NOTES.md M10): where one tile is the whole
sample (BLOCK_I == BLOCK_N, chosen by ``plastic_rnn_ops.resident``: forward N <= 64, backward
N <= 32) no row loop is needed, so w, alpha and the state are register tensors carried across the
steps (``_fwd_resident``, ``_bwd_resident``): the forward touches global memory per step only for
u_t, h_t, m_t and the checkpoints, the backward for the chunk's recomputed traces (the workspace)
and the per-step vectors; neither has a barrier inside a step.

Rules are compile-time constants: 0 hebb, 1 oja, 2 clip, 3 neuromod, 4 retro, 5 gated. Alpha kinds:
0 scalar, 1 per post-synaptic neuron ``[N]``, 2 per connection ``[N, N]``. A population (issue 13
item 3) gives ``w``, ``alpha`` or ``eta`` per sample (``[B, N, N]``; ``[B, N, N]`` / ``[B, 1, N]`` /
``[B, 1, 1]``; ``[B]``): compile-time flags (W_PER_SAMPLE, A_PER_SAMPLE, ETA_PER_SAMPLE) move the
program's pointer to its sample's slab once, so the shared kernels compile to the same code as
without them and a per-sample one reads the same amount per step (its own slab instead of the
shared one). The variants of SPEC.md
section 1.1 are compile-time constants too (SOFT, ACT: codes of hebbkern/_variants.py; SQUASH: the
modulator's squashing as the ACT code of the same function), except the number of unmodulated
neurons (a run-time argument).
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

RULE_IDS = {"hebb": 0, "oja": 1, "clip": 2, "neuromod": 3, "retro": 4, "gated": 5}
# constexpr globals: a compiled @triton.jit function may read no other global (the interpreter
# does not check that; the AOT test does).
SELU_SCALE = tl.constexpr(1.0507009873554804934193349852946)
SELU_ALPHA = tl.constexpr(1.6732632423543772848170429916717)


def interpreting() -> bool:
    """True under ``TRITON_INTERPRET=1`` (kernels run on CPU tensors through numpy)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@triton.jit
def _tanh(x):
    # exp-based (libdevice is not available to the interpreter); no overflow for any |x|.
    e = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -y, y)


@triton.jit
def _clamp(x, c):
    # Comparisons (not min/max) so NaN propagates as in torch.clamp.
    return tl.where(x < -c, -c, tl.where(x > c, c, x))


@triton.jit
def _passes(x, c):
    # torch.clamp's gradient passes inside [-c, c], bounds included.
    return (x >= -c) & (x <= c)


@triton.jit
def _act(a, ACT: tl.constexpr):
    """The neuron's nonlinearity (SPEC.md section 1.1): tanh, relu, selu, sigmoid, identity."""
    if ACT == 0:
        y = _tanh(a)
    elif ACT == 1:
        y = tl.where(a > 0, a, 0.0)
    elif ACT == 2:
        y = tl.where(a > 0, SELU_SCALE * a, (SELU_SCALE * SELU_ALPHA) * (tl.exp(a) - 1.0))
    elif ACT == 3:
        y = 1.0 / (1.0 + tl.exp(-a))
    else:
        y = a
    return y


@triton.jit
def _act_grad(y, ACT: tl.constexpr):
    """The activation's derivative read from its output y (torch's conventions at 0)."""
    if ACT == 0:
        d = 1.0 - y * y
    elif ACT == 1:
        d = tl.where(y > 0, 1.0, 0.0)
    elif ACT == 2:
        d = tl.where(y > 0, SELU_SCALE, y + SELU_SCALE * SELU_ALPHA)
    elif ACT == 3:
        d = y * (1.0 - y)
    else:
        d = y * 0.0 + 1.0
    return d


@triton.jit
def _bound(H, D, clip, SOFT: tl.constexpr):
    """clamp(H + D, -c, c), or the soft clip of SPEC.md section 1.1, written as in
    plastic_rules.h: H + max(D, 0) (1 - H / c) + min(D, 0) (1 + H / c) = H + D - |D| H / c."""
    if SOFT:
        y = _clamp(H + D - tl.abs(D) * (H * (1.0 / clip)), clip)
    else:
        y = _clamp(H + D, clip)
    return y


@triton.jit
def _bound_bwd(H, D, clip, g, SOFT: tl.constexpr):
    """Adjoints of H and D in _bound for the adjoint g of its result (torch.clamp's gradient
    convention: at D = 0 both soft branches pass, the slope is 2)."""
    if SOFT:
        inv = 1.0 / clip
        s = H * inv
        a = tl.abs(D)
        gg = tl.where(_passes(H + D - a * s, clip), g, 0.0)
        dH = gg * (1.0 - a * inv)
        dD = gg * tl.where(D > 0, 1.0 - s, tl.where(D < 0, 1.0 + s, 2.0))
    else:
        dH = tl.where(_passes(H + D, clip), g, 0.0)
        dD = dH
    return dH, dD


@triton.jit
def _rule_fwd(H, E, pre, post, mod, eta, clip, RULE: tl.constexpr, SOFT: tl.constexpr):
    """One step's trace update of a tile. pre [BI, 1], post and mod [1, BN]."""
    P = pre * post
    if RULE == 0:
        H = (1.0 - eta) * H + eta * P
    elif RULE == 1:
        H = H + eta * post * (pre - post * H)
    elif RULE == 2:
        H = _bound(H, eta * P, clip, SOFT)
    elif RULE == 3:
        H = _bound(H, mod * P, clip, SOFT)
    elif RULE == 4:
        H = _bound(H, mod * E, clip, SOFT)
        E = (1.0 - eta) * E + eta * P
    else:
        H = (1.0 - mod) * H + mod * P
    return H, E


@triton.jit
def _rule_bwd(H, E, pre, post, mod, eta, clip, dH, dE, RULE: tl.constexpr, SOFT: tl.constexpr):
    """Adjoint of one step's trace update of a tile (same math as csrc/include plastic_rules.h).

    In: the state before the update (H, E) and the adjoints of the state after it (dH, dE).
    Out: adjoints of the state before it, and per-element contributions to the adjoints of pre,
    post, mod and eta.
    """
    P = pre * post
    zero = dH * 0.0
    if RULE == 0:
        d = dH
        dH = (1.0 - eta) * d
        d_pre = eta * d * post
        d_post = eta * d * pre
        d_mod = zero
        d_eta = d * (P - H)
    elif RULE == 1:
        d = dH
        dH = d * (1.0 - eta * post * post)
        d_pre = d * eta * post
        d_post = d * eta * (pre - 2.0 * post * H)
        d_mod = zero
        d_eta = d * post * (pre - post * H)
    elif RULE == 2:
        dH, d = _bound_bwd(H, eta * P, clip, dH, SOFT)
        d_pre = d * eta * post
        d_post = d * eta * pre
        d_mod = zero
        d_eta = d * P
    elif RULE == 3:
        dH, d = _bound_bwd(H, mod * P, clip, dH, SOFT)
        d_pre = d * mod * post
        d_post = d * mod * pre
        d_mod = d * P
        d_eta = zero
    elif RULE == 4:
        de = dE
        dH, d = _bound_bwd(H, mod * E, clip, dH, SOFT)
        dE = d * mod + (1.0 - eta) * de
        d_mod = d * E
        d_pre = eta * de * post
        d_post = eta * de * pre
        d_eta = de * (P - E)
    else:
        d = dH
        dH = (1.0 - mod) * d
        d_pre = d * mod * post
        d_post = d * mod * pre
        d_mod = d * (P - H)
        d_eta = zero
    return dH, dE, d_pre, d_post, d_mod, d_eta


@triton.jit
def _tile(i0, rbase, cols, cmask, N):
    """Rows ``i0 + rbase`` of an [N, N] state: the row indices, row mask, tile mask and element
    offsets (every pass over the trace walks its rows in these tiles)."""
    rows = i0 + rbase
    rmask = rows < N
    m2 = rmask[:, None] & cmask[None, :]
    off = rows[:, None] * N + cols[None, :]
    return rows, rmask, m2, off


@triton.jit
def _load_trace(h_ptr, e_ptr, off, m2, ELIG: tl.constexpr):
    """A tile of the trace and, for retro, of the eligibility (else the trace again, unused)."""
    H = tl.load(h_ptr + off, mask=m2, other=0.0)
    E = H
    if ELIG:
        E = tl.load(e_ptr + off, mask=m2, other=0.0)
    return H, E


@triton.jit
def _store_trace(h_ptr, e_ptr, off, m2, H, E, ELIG: tl.constexpr):
    tl.store(h_ptr + off, H, mask=m2)
    if ELIG:
        tl.store(e_ptr + off, E, mask=m2)


@triton.jit
def _load_h(h_ptr, h0_ptr, t, B, N, b, idx, mask, HAS_H0: tl.constexpr):
    """h_t[b, idx] for t >= 0; h0[b, idx] (or zeros) for t == -1."""
    first = (idx * 0 + t) < 0
    v = tl.load(h_ptr + (t * B + b) * N + idx, mask=mask & (~first), other=0.0)
    if HAS_H0:
        v0 = tl.load(h0_ptr + b * N + idx, mask=mask & first, other=0.0)
        v = tl.where(first, v0, v)
    return v


@triton.jit
def _load_alpha(a_ptr, rows, cols, m2, cmask, N, ALPHA_KIND: tl.constexpr):
    if ALPHA_KIND == 2:
        A = tl.load(a_ptr + rows[:, None] * N + cols[None, :], mask=m2, other=0.0)
    elif ALPHA_KIND == 1:
        A = tl.load(a_ptr + cols, mask=cmask, other=0.0)[None, :]
    else:
        A = tl.load(a_ptr)
    return A


@triton.jit
def _modulation(
    s, fw_ptr, fb_ptr, cols, cmask, HAS_FANOUT: tl.constexpr, n_mod, eta, UNMOD: tl.constexpr
):
    """m_t per post neuron from the per-sample neuromodulator s; with UNMOD, eta for the neurons
    from n_mod on (not modulated, SPEC.md section 1.1)."""
    if HAS_FANOUT:
        fw = tl.load(fw_ptr + cols, mask=cmask, other=0.0)
        fb = tl.load(fb_ptr + cols, mask=cmask, other=0.0)
        M = fw * s + fb
    else:
        M = tl.where(cmask, s, 0.0)
    if UNMOD:
        M = tl.where(cols >= n_mod, tl.where(cmask, eta, 0.0), M)
    return M


@triton.jit
def _mod_adjoint(
    dM, s, deta, fw_ptr, cols, cmask, n_mod, HAS_FANOUT: tl.constexpr, UNMOD: tl.constexpr,
    SQUASH: tl.constexpr,
):  # fmt: skip
    """Adjoint of ``_modulation`` from dM (the gradient of m_t per post neuron): dM with the
    unmodulated neurons' part moved to deta (UNMOD), the adjoint dz of the neuromodulator's
    pre-squash value, and deta."""
    if UNMOD:  # the unmodulated neurons' modulation is eta (SPEC.md section 1.1)
        unmod = cols >= n_mod
        deta += tl.sum(tl.where(unmod, dM, 0.0), axis=0)
        dM = tl.where(unmod, 0.0, dM)
    if HAS_FANOUT:
        fw = tl.load(fw_ptr + cols, mask=cmask, other=0.0)
        ds = tl.sum(dM * fw, axis=0)
    else:
        ds = tl.sum(dM, axis=0)
    return dM, ds * _act_grad(s, SQUASH), deta


@triton.jit
def _drive_adjoint(g, post, clamp_row, cols, cmask, HAS_CLAMP: tl.constexpr, ACT: tl.constexpr):
    """(du, da) from g, the gradient of h = f(a) (``post``): clamped neurons (h = u) pass g to u
    and none to a; da is zero outside the N columns."""
    da = g * _act_grad(post, ACT)
    du = da
    if HAS_CLAMP:
        cl = tl.load(clamp_row + cols, mask=cmask, other=0) != 0
        da = tl.where(cl, 0.0, da)
        du = tl.where(cl, g, da)
    return du, tl.where(cmask, da, 0.0)


@triton.jit
def _sample_slab(ptr, b, N, KIND: tl.constexpr, PER_SAMPLE: tl.constexpr):
    """``ptr`` moved to sample b's slab of a per-sample parameter (KIND 2: ``[B, N, N]``, 1:
    ``[B, 1, N]``, 0: ``[B]`` or ``[B, 1, 1]``); ``ptr`` itself when the parameter is shared."""
    if PER_SAMPLE:
        if KIND == 2:
            ptr += b * N * N
        elif KIND == 1:
            ptr += b * N
        else:
            ptr += b
    return ptr


@triton.jit
def _sample_eta(eta_ptr, PER_SAMPLE: tl.constexpr):
    """Where this program's eta is: ``eta[b]`` when per sample (``[B]``), else the shared one.
    (The program id is read only when per sample, so the shared kernels are unchanged.)"""
    if PER_SAMPLE:
        eta_ptr += tl.program_id(0)
    return eta_ptr


@triton.jit
def _sample_program(
    eta_ptr, N, USES_ETA: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_I: tl.constexpr
):
    """The set-up the forward and backward kernels share: the sample b of this program, N * N, the
    column indices and mask, the row offsets of a block, and eta (0 when the rule has none)."""
    b = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_N)
    eta = 0.0
    if USES_ETA:
        eta = tl.load(eta_ptr)
    return b, N * N, cols, cols < N, tl.arange(0, BLOCK_I), eta


@triton.jit
def _step_output(
    acc, M, t, B, N, b, cols, cmask, u_ptr, clamp_ptr, h_ptr, modw_ptr, modb_ptr, mod_ptr, fw_ptr,
    fb_ptr, n_mod, eta, MOD: tl.constexpr, HAS_CLAMP: tl.constexpr, HAS_FANOUT: tl.constexpr,
    ACT: tl.constexpr, SQUASH: tl.constexpr, UNMOD: tl.constexpr,
):  # fmt: skip
    """h_t from the drive a_t (``acc``): the activation, the clamp mask, zero outside the N
    columns; stores h_t and (modulated rules) m_t, and returns h_t and the modulation per post
    neuron (``M`` unchanged for the other rules)."""
    h = _act(acc, ACT)
    if HAS_CLAMP:
        c = tl.load(clamp_ptr + (t * B + b) * N + cols, mask=cmask, other=0)
        u_t = tl.load(u_ptr + (t * B + b) * N + cols, mask=cmask, other=0.0)
        h = tl.where(c != 0, u_t, h)
    h = tl.where(cmask, h, 0.0)
    tl.store(h_ptr + (t * B + b) * N + cols, h, mask=cmask)
    if MOD:
        mw = tl.load(modw_ptr + cols, mask=cmask, other=0.0)
        s = _act(tl.sum(h * mw, axis=0) + tl.load(modb_ptr), SQUASH)
        tl.store(mod_ptr + t * B + b, s)
        M = _modulation(s, fw_ptr, fb_ptr, cols, cmask, HAS_FANOUT, n_mod, eta, UNMOD)
    return h, M


@triton.jit
def _fwd_resident(
    u_ptr, w_ptr, a_ptr, h0_ptr, hebb0_ptr, elig0_ptr, clamp_ptr, modw_ptr, modb_ptr, fw_ptr,
    fb_ptr, h_ptr, state, estate, ckh_ptr, cke_ptr, mod_ptr,
    T, B, N, K, clip, n_mod, b, NN, cols, cmask, eta,
    RULE: tl.constexpr, ALPHA_KIND: tl.constexpr, HAS_H0: tl.constexpr,
    HAS_HEBB0: tl.constexpr, HAS_ELIG0: tl.constexpr, HAS_CLAMP: tl.constexpr,
    HAS_FANOUT: tl.constexpr, BLOCK_N: tl.constexpr, SOFT: tl.constexpr, ACT: tl.constexpr,
    SQUASH: tl.constexpr, UNMOD: tl.constexpr,
):  # fmt: skip
    """The forward when one tile is the whole sample (RESIDENT: BLOCK_I == BLOCK_N >= N; issue
    13 item 4). w and alpha are loaded once, before the time loop; the trace (and eligibility)
    and h_{t-1} are loop-carried register tensors, so a step reads from global memory only u_t
    (and the clamp mask), and writes h_t, m_t and, at checkpoints, the trace. Step t's trace
    update runs at the end of step t (pre h_{t-1}, post h_t, m_t: the tiled path's pending update,
    with the same operands), so the loop has no peeled first step and the last update needs no
    pass of its own. Nothing written in the loop is read back, so no barrier: h_{t-1} reaches
    the rows through the compiler's own layout conversion (``hprev[:, None]``)."""
    ELIG: tl.constexpr = RULE == 4
    MOD: tl.constexpr = RULE >= 3
    dt = u_ptr.dtype.element_ty
    m2 = cmask[:, None] & cmask[None, :]
    off = cols[:, None] * N + cols[None, :]
    H = tl.zeros([BLOCK_N, BLOCK_N], dtype=dt)
    if HAS_HEBB0:
        H = tl.load(hebb0_ptr + b * NN + off, mask=m2, other=0.0)
    E = H  # unused unless ELIG
    if ELIG:
        E = tl.zeros([BLOCK_N, BLOCK_N], dtype=dt)
        if HAS_ELIG0:
            E = tl.load(elig0_ptr + b * NN + off, mask=m2, other=0.0)
    w = tl.load(w_ptr + off, mask=m2, other=0.0)
    A = _load_alpha(a_ptr, cols, cols, m2, cmask, N, ALPHA_KIND)
    hprev = _load_h(h_ptr, h0_ptr, -1, B, N, b, cols, cmask, HAS_H0).to(dt)  # h_{t-1}
    M = tl.zeros([BLOCK_N], dtype=dt)  # m_t per post neuron
    for t in range(0, T):
        if (t % K) == 0:  # the trace before step t
            ckoff = ((t // K) * B + b) * NN
            _store_trace(ckh_ptr + ckoff, cke_ptr + ckoff, off, m2, H, E, ELIG)
        acc = tl.load(u_ptr + (t * B + b) * N + cols, mask=cmask, other=0.0)
        acc += tl.sum(hprev[:, None] * (w + A * H), axis=0)
        h, M = _step_output(
            acc, M, t, B, N, b, cols, cmask, u_ptr, clamp_ptr, h_ptr, modw_ptr, modb_ptr,
            mod_ptr, fw_ptr, fb_ptr, n_mod, eta, MOD, HAS_CLAMP, HAS_FANOUT, ACT, SQUASH, UNMOD,
        )  # fmt: skip
        H, E = _rule_fwd(H, E, hprev[:, None], h[None, :], M[None, :], eta, clip, RULE, SOFT)
        hprev = h
    _store_trace(state, estate, off, m2, H, E, ELIG)


@triton.jit
def plastic_rnn_fwd_kernel(
    u_ptr, w_ptr, a_ptr, h0_ptr, hebb0_ptr, elig0_ptr, clamp_ptr, eta_ptr, modw_ptr, modb_ptr,
    fw_ptr, fb_ptr,
    h_ptr, hebb_ptr, elig_ptr, ckh_ptr, cke_ptr, mod_ptr,
    T, B, N, K, clip, n_mod,
    RULE: tl.constexpr, ALPHA_KIND: tl.constexpr, HAS_H0: tl.constexpr,
    HAS_HEBB0: tl.constexpr, HAS_ELIG0: tl.constexpr, HAS_CLAMP: tl.constexpr,
    HAS_FANOUT: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_I: tl.constexpr,
    USES_ETA: tl.constexpr = True, SOFT: tl.constexpr = False, ACT: tl.constexpr = 0,
    SQUASH: tl.constexpr = 0, UNMOD: tl.constexpr = False, W_PER_SAMPLE: tl.constexpr = False,
    A_PER_SAMPLE: tl.constexpr = False, ETA_PER_SAMPLE: tl.constexpr = False,
    RESIDENT: tl.constexpr = False,
):  # fmt: skip
    """One program per sample: the whole sequence. Writes h [T, B, N], the final trace (and
    eligibility) [B, N, N] in place, the trace before every K-th step into the checkpoints
    [C, B, N, N] and the neuromodulator m_t [T, B]."""
    ELIG: tl.constexpr = RULE == 4
    MOD: tl.constexpr = RULE >= 3
    eta_ptr = _sample_eta(eta_ptr, ETA_PER_SAMPLE)
    b, NN, cols, cmask, rbase, eta = _sample_program(eta_ptr, N, USES_ETA, BLOCK_N, BLOCK_I)
    w_ptr = _sample_slab(w_ptr, b, N, 2, W_PER_SAMPLE)
    a_ptr = _sample_slab(a_ptr, b, N, ALPHA_KIND, A_PER_SAMPLE)
    dt = u_ptr.dtype.element_ty
    state = hebb_ptr + b * NN
    estate = elig_ptr + b * NN

    if RESIDENT:
        _fwd_resident(
            u_ptr, w_ptr, a_ptr, h0_ptr, hebb0_ptr, elig0_ptr, clamp_ptr, modw_ptr, modb_ptr,
            fw_ptr, fb_ptr, h_ptr, state, estate, ckh_ptr, cke_ptr, mod_ptr,
            T, B, N, K, clip, n_mod, b, NN, cols, cmask, eta,
            RULE, ALPHA_KIND, HAS_H0, HAS_HEBB0, HAS_ELIG0, HAS_CLAMP, HAS_FANOUT, BLOCK_N,
            SOFT, ACT, SQUASH, UNMOD,
        )  # fmt: skip
    else:
        # The state starts from hebb0 / elig0 (or zeros), written here so that a rerun (autotuning)
        # starts afresh.
        for i0 in range(0, N, BLOCK_I):
            rows, rmask, m2, off = _tile(i0, rbase, cols, cmask, N)
            H = tl.zeros([BLOCK_I, BLOCK_N], dtype=dt)
            if HAS_HEBB0:
                H = tl.load(hebb0_ptr + b * NN + off, mask=m2, other=0.0)
            tl.store(state + off, H, mask=m2)
            if ELIG:
                E = tl.zeros([BLOCK_I, BLOCK_N], dtype=dt)
                if HAS_ELIG0:
                    E = tl.load(elig0_ptr + b * NN + off, mask=m2, other=0.0)
                tl.store(estate + off, E, mask=m2)
        tl.debug_barrier()

        hprev = _load_h(h_ptr, h0_ptr, -1, B, N, b, cols, cmask, HAS_H0).to(dt)  # h_{t-1}
        M = tl.zeros([BLOCK_N], dtype=dt)  # m_{t-1} per post neuron
        for t in range(0, T):
            acc = tl.load(u_ptr + (t * B + b) * N + cols, mask=cmask, other=0.0)
            ck = (t % K) == 0
            ckoff = ((t // K) * B + b) * NN
            for i0 in range(0, N, BLOCK_I):
                rows, rmask, m2, off = _tile(i0, rbase, cols, cmask, N)
                H, E = _load_trace(state, estate, off, m2, ELIG)
                if t > 0:  # the pending update of step t-1: pre h_{t-2}, post h_{t-1}
                    pre = _load_h(h_ptr, h0_ptr, t - 2, B, N, b, rows, rmask, HAS_H0)
                    H, E = _rule_fwd(
                        H, E, pre[:, None], hprev[None, :], M[None, :], eta, clip, RULE, SOFT
                    )
                    _store_trace(state, estate, off, m2, H, E, ELIG)
                if ck:
                    _store_trace(ckh_ptr + ckoff, cke_ptr + ckoff, off, m2, H, E, ELIG)
                x = _load_h(h_ptr, h0_ptr, t - 1, B, N, b, rows, rmask, HAS_H0)
                w = tl.load(w_ptr + off, mask=m2, other=0.0)
                A = _load_alpha(a_ptr, rows, cols, m2, cmask, N, ALPHA_KIND)
                acc += tl.sum(x[:, None] * (w + A * H), axis=0)
            h, M = _step_output(
                acc, M, t, B, N, b, cols, cmask, u_ptr, clamp_ptr, h_ptr, modw_ptr, modb_ptr,
                mod_ptr, fw_ptr, fb_ptr, n_mod, eta, MOD, HAS_CLAMP, HAS_FANOUT, ACT, SQUASH, UNMOD,
            )  # fmt: skip
            hprev = h
            tl.debug_barrier()

        # The last step's update.
        for i0 in range(0, N, BLOCK_I):
            rows, rmask, m2, off = _tile(i0, rbase, cols, cmask, N)
            H, E = _load_trace(state, estate, off, m2, ELIG)
            pre = _load_h(h_ptr, h0_ptr, T - 2, B, N, b, rows, rmask, HAS_H0)
            H, E = _rule_fwd(H, E, pre[:, None], hprev[None, :], M[None, :], eta, clip, RULE, SOFT)
            _store_trace(state, estate, off, m2, H, E, ELIG)


@triton.jit
def _h_adjoint(
    gh_ptr, clamp_ptr, modw_ptr, fw_ptr, du_ptr, da_ptr, t, B, N, b, cols, cmask, n_mod, post, s,
    dcur, dpost, dM, deta, dmw, dmb, dfw, dfb, MOD: tl.constexpr, HAS_CLAMP: tl.constexpr,
    HAS_FANOUT: tl.constexpr, ACT: tl.constexpr, SQUASH: tl.constexpr, UNMOD: tl.constexpr,
):  # fmt: skip
    """The adjoint of h_t (``post``): its output gradient, later steps (``dcur``), this step's
    trace update (``dpost``; ``dM`` through m_t) and the neuromodulator m_t = tanh(h_t . mod_w +
    mod_b). Stores du_t and da_t; returns da_t and the updated per-sample partial gradients."""
    g = tl.load(gh_ptr + (t * B + b) * N + cols, mask=cmask, other=0.0) + dcur + dpost
    if MOD:
        dM, dz, deta = _mod_adjoint(dM, s, deta, fw_ptr, cols, cmask, n_mod, HAS_FANOUT, UNMOD,
                                    SQUASH)  # fmt: skip
        if HAS_FANOUT:
            dfw += dM * s
            dfb += dM
        dmb += dz
        g += dz * tl.load(modw_ptr + cols, mask=cmask, other=0.0)
        dmw += dz * post
    du, da = _drive_adjoint(g, post, clamp_ptr + (t * B + b) * N, cols, cmask, HAS_CLAMP, ACT)
    tl.store(du_ptr + (t * B + b) * N + cols, du, mask=cmask)
    tl.store(da_ptr + (t * B + b) * N + cols, da, mask=cmask)
    return da, deta, dmw, dmb, dfw, dfb


@triton.jit
def _bwd_resident(
    gh_ptr, gH_ptr, gE_ptr, w_ptr, a_ptr, h_ptr, h0_ptr, ckh_ptr, cke_ptr, mod_ptr, clamp_ptr,
    modw_ptr, fw_ptr, fb_ptr, ws_h, ws_e, dstate, destate, dA_ptr, du_ptr, da_ptr,
    T, B, N, K, clip, n_mod, b, NN, cols, cmask, eta,
    RULE: tl.constexpr, ALPHA_KIND: tl.constexpr, HAS_H0: tl.constexpr,
    HAS_GHEBB: tl.constexpr, HAS_GELIG: tl.constexpr, HAS_CLAMP: tl.constexpr,
    HAS_FANOUT: tl.constexpr, BLOCK_N: tl.constexpr, USES_ETA: tl.constexpr, SOFT: tl.constexpr,
    ACT: tl.constexpr, SQUASH: tl.constexpr, UNMOD: tl.constexpr,
):  # fmt: skip
    """The backward when one tile is the whole sample (RESIDENT; issue 13 item 4): w, alpha, the
    running adjoints dH (dE) and d alpha per connection are register tensors for the whole call,
    stored once at the end; the adjoint of h_{t-1} is carried as a vector (the tiled path's
    ``carry`` round trip through global memory and its barriers go). The K recomputed traces of
    a chunk stay in the global workspace (K tiles do not fit the registers): written by the
    recomputation from a register-carried trace, each read once per backward step (both passes
    of the tiled path use the same tile here). Two barriers per chunk, none per step: the
    workspace is the only memory written and read back. Same operands and order of operations
    per element as the tiled path. Returns the per-sample vector partial gradients."""
    ELIG: tl.constexpr = RULE == 4
    MOD: tl.constexpr = RULE >= 3
    dt = gh_ptr.dtype.element_ty
    m2 = cmask[:, None] & cmask[None, :]
    off = cols[:, None] * N + cols[None, :]
    z = tl.zeros([BLOCK_N, BLOCK_N], dtype=dt)
    dH = z
    if HAS_GHEBB:
        dH = tl.load(gH_ptr + b * NN + off, mask=m2, other=0.0)
    dE = dH  # unused unless ELIG
    if ELIG:
        dE = z
        if HAS_GELIG:
            dE = tl.load(gE_ptr + b * NN + off, mask=m2, other=0.0)
    dA = z  # d alpha per connection (ALPHA_KIND 2)
    w = tl.load(w_ptr + off, mask=m2, other=0.0)
    A = _load_alpha(a_ptr, cols, cols, m2, cmask, N, ALPHA_KIND)

    zv = tl.zeros([BLOCK_N], dtype=dt)
    dcur = zv  # adjoint of h_t from the steps after t
    dA_vec = zv
    dmw = zv
    dfw = zv
    dfb = zv
    deta = tl.sum(zv, axis=0)
    dmb = deta
    n_chunks = (T + K - 1) // K
    for cc in range(0, n_chunks):
        c = n_chunks - 1 - cc
        t0 = c * K
        t1 = tl.minimum(t0 + K, T)
        tl.debug_barrier()  # the later chunk's reads of the workspace are done
        # Traces before steps t0 .. t1-1, from the chunk's checkpoint.
        H, E = _load_trace(ckh_ptr + (c * B + b) * NN, cke_ptr + (c * B + b) * NN, off, m2, ELIG)
        _store_trace(ws_h, ws_e, off, m2, H, E, ELIG)
        for t in range(t0, t1 - 1):
            k = t - t0
            post = tl.load(h_ptr + (t * B + b) * N + cols, mask=cmask, other=0.0)
            M = zv
            if MOD:
                M = _modulation(
                    tl.load(mod_ptr + t * B + b), fw_ptr, fb_ptr, cols, cmask, HAS_FANOUT, n_mod,
                    eta, UNMOD,
                )  # fmt: skip
            pre = _load_h(h_ptr, h0_ptr, t - 1, B, N, b, cols, cmask, HAS_H0)
            H, E = _rule_fwd(H, E, pre[:, None], post[None, :], M[None, :], eta, clip, RULE, SOFT)
            _store_trace(ws_h + (k + 1) * NN, ws_e + (k + 1) * NN, off, m2, H, E, ELIG)
        tl.debug_barrier()

        for tt in range(0, t1 - t0):
            t = t1 - 1 - tt
            k = t - t0
            post = tl.load(h_ptr + (t * B + b) * N + cols, mask=cmask, other=0.0)
            s = 0.0
            M = zv
            if MOD:
                s = tl.load(mod_ptr + t * B + b)
                M = _modulation(s, fw_ptr, fb_ptr, cols, cmask, HAS_FANOUT, n_mod, eta, UNMOD)
            # Adjoint of step t's trace update (outside [N, N] every tile is zero).
            H, E = _load_trace(ws_h + k * NN, ws_e + k * NN, off, m2, ELIG)
            x = _load_h(h_ptr, h0_ptr, t - 1, B, N, b, cols, cmask, HAS_H0)  # h_{t-1}
            dH, dE, g_pre, g_post, g_mod, g_eta = _rule_bwd(
                H, E, x[:, None], post[None, :], M[None, :], eta, clip, dH, dE, RULE, SOFT
            )
            dpost = zv + tl.sum(g_post, axis=0)
            dM = zv
            if MOD:
                dM += tl.sum(g_mod, axis=0)
            if USES_ETA:
                deta += tl.sum(tl.sum(g_eta, axis=1), axis=0)
            da, deta, dmw, dmb, dfw, dfb = _h_adjoint(
                gh_ptr, clamp_ptr, modw_ptr, fw_ptr, du_ptr, da_ptr, t, B, N, b, cols, cmask,
                n_mod, post, s, dcur, dpost, dM, deta, dmw, dmb, dfw, dfb, MOD, HAS_CLAMP,
                HAS_FANOUT, ACT, SQUASH, UNMOD,
            )  # fmt: skip
            # Adjoint of step t's mat-vec a_t = u_t + h_{t-1} (w + A * H_{t-1}).
            xda = x[:, None] * da[None, :]
            dH = dH + A * xda
            gA = xda * H
            if ALPHA_KIND == 2:
                dA = dA + gA
            else:
                dA_vec += tl.sum(gA, axis=0)
            dcur = tl.sum(g_pre, axis=1) + tl.sum((w + A * H) * da[None, :], axis=1)
    _store_trace(dstate, destate, off, m2, dH, dE, ELIG)
    if ALPHA_KIND == 2:
        tl.store(dA_ptr + b * NN + off, dA, mask=m2)
    return dcur, dA_vec, deta, dmw, dmb, dfw, dfb


# A Triton kernel takes no *args/**kwargs, so each kernel's parameters are written out.
@triton.jit
def plastic_rnn_bwd_kernel(
    gh_ptr, gH_ptr, gE_ptr, w_ptr, a_ptr, h_ptr, h0_ptr, ckh_ptr, cke_ptr, mod_ptr, clamp_ptr,
    eta_ptr, modw_ptr, fw_ptr, fb_ptr,
    ws_h_ptr, ws_e_ptr, carry_ptr,
    dH_ptr, dE_ptr, dA_ptr, du_ptr, da_ptr, dh0_ptr, deta_ptr, dmw_ptr, dmb_ptr, dfw_ptr, dfb_ptr,
    T, B, N, K, clip, n_mod,
    RULE: tl.constexpr, ALPHA_KIND: tl.constexpr, HAS_H0: tl.constexpr,
    HAS_GHEBB: tl.constexpr, HAS_GELIG: tl.constexpr, HAS_CLAMP: tl.constexpr,
    HAS_FANOUT: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_I: tl.constexpr,
    USES_ETA: tl.constexpr = True, SOFT: tl.constexpr = False, ACT: tl.constexpr = 0,
    SQUASH: tl.constexpr = 0, UNMOD: tl.constexpr = False, W_PER_SAMPLE: tl.constexpr = False,
    A_PER_SAMPLE: tl.constexpr = False, ETA_PER_SAMPLE: tl.constexpr = False,
    RESIDENT: tl.constexpr = False,
):  # fmt: skip
    """One program per sample, chunks of K steps last to first. Per-sample outputs (summed over
    the batch by the caller where the parameter is shared; already the gradient of a per-sample
    alpha or eta): dA [B, N, N] (alpha per connection) or [B, N], deta [B], dmw [B, N], dmb [B],
    dfw / dfb [B, N]; plus du, da [T, B, N], dh0 [B, N] and d hebb0 / d elig0 [B, N, N] (dH / dE,
    which hold the running adjoint of the trace)."""
    ELIG: tl.constexpr = RULE == 4
    MOD: tl.constexpr = RULE >= 3
    eta_ptr = _sample_eta(eta_ptr, ETA_PER_SAMPLE)
    b, NN, cols, cmask, rbase, eta = _sample_program(eta_ptr, N, USES_ETA, BLOCK_N, BLOCK_I)
    w_ptr = _sample_slab(w_ptr, b, N, 2, W_PER_SAMPLE)
    a_ptr = _sample_slab(a_ptr, b, N, ALPHA_KIND, A_PER_SAMPLE)
    dt = gh_ptr.dtype.element_ty
    dstate = dH_ptr + b * NN
    destate = dE_ptr + b * NN
    ws_h = ws_h_ptr + b * K * NN
    ws_e = ws_e_ptr + b * K * NN
    carry = carry_ptr + b * N

    if RESIDENT:
        dcur, dA_vec, deta, dmw, dmb, dfw, dfb = _bwd_resident(
            gh_ptr, gH_ptr, gE_ptr, w_ptr, a_ptr, h_ptr, h0_ptr, ckh_ptr, cke_ptr, mod_ptr,
            clamp_ptr, modw_ptr, fw_ptr, fb_ptr, ws_h, ws_e, dstate, destate, dA_ptr, du_ptr,
            da_ptr, T, B, N, K, clip, n_mod, b, NN, cols, cmask, eta,
            RULE, ALPHA_KIND, HAS_H0, HAS_GHEBB, HAS_GELIG, HAS_CLAMP, HAS_FANOUT, BLOCK_N,
            USES_ETA, SOFT, ACT, SQUASH, UNMOD,
        )  # fmt: skip
    else:
        # The forward's state start, mirrored (adjoints from gH / gE instead of hebb0 / elig0); kept
        # inline because the same pass zeroes the dA rows.
        for i0 in range(0, N, BLOCK_I):
            rows, rmask, m2, off = _tile(i0, rbase, cols, cmask, N)
            z = tl.zeros([BLOCK_I, BLOCK_N], dtype=dt)
            dH = z
            if HAS_GHEBB:
                dH = tl.load(gH_ptr + b * NN + off, mask=m2, other=0.0)
            tl.store(dstate + off, dH, mask=m2)
            if ELIG:
                dE = z
                if HAS_GELIG:
                    dE = tl.load(gE_ptr + b * NN + off, mask=m2, other=0.0)
                tl.store(destate + off, dE, mask=m2)
            if ALPHA_KIND == 2:
                tl.store(dA_ptr + b * NN + off, z, mask=m2)
        tl.debug_barrier()

        zv = tl.zeros([BLOCK_N], dtype=dt)
        dcur = zv  # adjoint of h_t from the steps after t
        dA_vec = zv
        dmw = zv
        dfw = zv
        dfb = zv
        deta = tl.sum(zv, axis=0)
        dmb = deta
        n_chunks = (T + K - 1) // K
        for cc in range(0, n_chunks):
            c = n_chunks - 1 - cc
            t0 = c * K
            t1 = tl.minimum(t0 + K, T)
            # Traces before steps t0 .. t1-1, from the chunk's checkpoint.
            for i0 in range(0, N, BLOCK_I):
                rows, rmask, m2, off = _tile(i0, rbase, cols, cmask, N)
                tl.store(ws_h + off, tl.load(ckh_ptr + (c * B + b) * NN + off, mask=m2), mask=m2)
                if ELIG:
                    tl.store(
                        ws_e + off, tl.load(cke_ptr + (c * B + b) * NN + off, mask=m2), mask=m2
                    )
            tl.debug_barrier()
            for t in range(t0, t1 - 1):
                k = t - t0
                post = tl.load(h_ptr + (t * B + b) * N + cols, mask=cmask, other=0.0)
                M = zv
                if MOD:
                    M = _modulation(
                        tl.load(mod_ptr + t * B + b), fw_ptr, fb_ptr, cols, cmask, HAS_FANOUT,
                        n_mod, eta, UNMOD,
                    )  # fmt: skip
                for i0 in range(0, N, BLOCK_I):
                    rows, rmask, m2, off = _tile(i0, rbase, cols, cmask, N)
                    H, E = _load_trace(ws_h + k * NN, ws_e + k * NN, off, m2, ELIG)
                    pre = _load_h(h_ptr, h0_ptr, t - 1, B, N, b, rows, rmask, HAS_H0)
                    H, E = _rule_fwd(
                        H, E, pre[:, None], post[None, :], M[None, :], eta, clip, RULE, SOFT
                    )
                    _store_trace(ws_h + (k + 1) * NN, ws_e + (k + 1) * NN, off, m2, H, E, ELIG)
                tl.debug_barrier()

            for tt in range(0, t1 - t0):
                t = t1 - 1 - tt
                k = t - t0
                post = tl.load(h_ptr + (t * B + b) * N + cols, mask=cmask, other=0.0)
                s = 0.0
                M = zv
                if MOD:
                    s = tl.load(mod_ptr + t * B + b)
                    M = _modulation(s, fw_ptr, fb_ptr, cols, cmask, HAS_FANOUT, n_mod, eta, UNMOD)
                # Pass A: adjoint of step t's trace update. Outside [N, N] every loaded tile is zero
                # (masked loads), so the per-element terms are zero there without masking them.
                dpost = zv
                dM = zv
                for i0 in range(0, N, BLOCK_I):
                    rows, rmask, m2, off = _tile(i0, rbase, cols, cmask, N)
                    H, E = _load_trace(ws_h + k * NN, ws_e + k * NN, off, m2, ELIG)
                    dH, dE = _load_trace(dstate, destate, off, m2, ELIG)
                    pre = _load_h(h_ptr, h0_ptr, t - 1, B, N, b, rows, rmask, HAS_H0)
                    dH, dE, g_pre, g_post, g_mod, g_eta = _rule_bwd(
                        H, E, pre[:, None], post[None, :], M[None, :], eta, clip, dH, dE, RULE, SOFT
                    )
                    _store_trace(dstate, destate, off, m2, dH, dE, ELIG)
                    dpost += tl.sum(g_post, axis=0)
                    if MOD:
                        dM += tl.sum(g_mod, axis=0)
                    if USES_ETA:
                        deta += tl.sum(tl.sum(g_eta, axis=1), axis=0)
                    tl.store(carry + rows, tl.sum(g_pre, axis=1), mask=rmask)
                # Adjoint of h_t: its output gradient, later steps, this step's trace update and the
                # neuromodulator m_t = tanh(h_t . mod_w + mod_b).
                # (_h_adjoint's lines, kept inline: called here, ptxas spilled two values inside
                # the step loop of the per-sample backward at BLOCK_N = 1024 on sm_90.)
                g = tl.load(gh_ptr + (t * B + b) * N + cols, mask=cmask, other=0.0) + dcur + dpost
                if MOD:
                    dM, dz, deta = _mod_adjoint(dM, s, deta, fw_ptr, cols, cmask, n_mod,
                                                HAS_FANOUT, UNMOD, SQUASH)  # fmt: skip
                    if HAS_FANOUT:
                        dfw += dM * s
                        dfb += dM
                    dmb += dz
                    g += dz * tl.load(modw_ptr + cols, mask=cmask, other=0.0)
                    dmw += dz * post
                du, da = _drive_adjoint(
                    g, post, clamp_ptr + (t * B + b) * N, cols, cmask, HAS_CLAMP, ACT
                )
                tl.store(du_ptr + (t * B + b) * N + cols, du, mask=cmask)
                tl.store(da_ptr + (t * B + b) * N + cols, da, mask=cmask)
                tl.debug_barrier()
                # Pass B: adjoint of step t's mat-vec a_t = u_t + h_{t-1} (w + A * H_{t-1}).
                for i0 in range(0, N, BLOCK_I):
                    rows, rmask, m2, off = _tile(i0, rbase, cols, cmask, N)
                    H = tl.load(ws_h + k * NN + off, mask=m2, other=0.0)
                    x = _load_h(h_ptr, h0_ptr, t - 1, B, N, b, rows, rmask, HAS_H0)
                    w = tl.load(w_ptr + off, mask=m2, other=0.0)
                    A = _load_alpha(a_ptr, rows, cols, m2, cmask, N, ALPHA_KIND)
                    xda = x[:, None] * da[None, :]
                    dH = tl.load(dstate + off, mask=m2, other=0.0) + A * xda
                    tl.store(dstate + off, dH, mask=m2)
                    gA = xda * H
                    if ALPHA_KIND == 2:
                        prev = tl.load(dA_ptr + b * NN + off, mask=m2, other=0.0)
                        tl.store(dA_ptr + b * NN + off, prev + gA, mask=m2)
                    else:
                        dA_vec += tl.sum(gA, axis=0)
                    mv = tl.sum((w + A * H) * da[None, :], axis=1)
                    prev_c = tl.load(carry + rows, mask=rmask, other=0.0)
                    tl.store(carry + rows, prev_c + mv, mask=rmask)
                tl.debug_barrier()
                dcur = tl.load(carry + cols, mask=cmask, other=0.0)
                tl.debug_barrier()

    tl.store(dh0_ptr + b * N + cols, dcur, mask=cmask)
    if ALPHA_KIND != 2:
        tl.store(dA_ptr + b * N + cols, dA_vec, mask=cmask)
    if USES_ETA:
        tl.store(deta_ptr + b, deta)
    if MOD:
        tl.store(dmw_ptr + b * N + cols, dmw, mask=cmask)
        tl.store(dmb_ptr + b, dmb)
        if HAS_FANOUT:
            tl.store(dfw_ptr + b * N + cols, dfw, mask=cmask)
            tl.store(dfb_ptr + b * N + cols, dfb, mask=cmask)
