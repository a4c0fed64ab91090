"""Triton kernels of the plastic LSTM layer (SPEC.md section 2): the per-step fused parts.

The dense parts are cuBLAS GEMMs issued by the host loop (plastic_lstm_ops.py): the gate
pre-activations ``u_t + h_{t-1} wh`` of a step (one GEMM batched over the samples), the adjoint
``dG_t wh^T`` of a step, and the weight gradient over all steps. These kernels do the rest.

Work layout: one program per (sample b, block of BLOCK_J post-synaptic columns j). A program owns
the column slab ``H[b, :, j-block]`` of the trace and walks it in tiles of BLOCK_I rows, so the
register tile is ``BLOCK_I * BLOCK_J`` whatever N is. Everything per column (the plastic term
``sum_i h_i alpha_ij H_ij``, the gates, c_t and h_t of those neurons, the trace update, whose post
is the candidate g_t) stays inside the program; no two programs write the same element, and no
atomics are used, so results are deterministic. What crosses columns (the neuromodulator
``m_t = tanh(h_t . mod_w + mod_b)``, and in the backward the adjoints of pre-synaptic rows) is
either recomputed by every program in the same order (m_t) or written as per-block partials that
the host sums in a fixed order.

Forward, one launch per step t: apply the pending trace update of step t-1 (it needed m_{t-1},
i.e. all of h_{t-1}), save the checkpoint when t % K == 0, accumulate step t's plastic term, then
the gates. One pass over the trace per step. A last launch (t = T) applies step T-1's update.

Backward, per chunk of K steps (last chunk first): one launch recomputes the chunk's traces from its
checkpoint into a ``[K, B, N, N]`` workspace; then per step, last first, one launch for the adjoint
of the trace update (``bwd_trace``) and one for the adjoint of the cell and of the plastic term
(``bwd_cell``), between which the per-block partials of the neuromodulator's adjoint are summed.

Rules are compile-time constants as in plastic_rnn.py; alpha kinds 0 scalar, 1 per post-synaptic
neuron ``[N]``, 2 per connection ``[N, N]``. Gates in torch.nn.LSTM's order (i, f, g, o).

The variants of SPEC.md section 2.1 are compile-time constants too, so that the default's code is
unchanged: READ (the read-out clip: the update runs with ``clip`` infinite, the host's choice, and
the plastic term reads the trace clamped to ``rclip``) and POST (the post-synaptic term: 0 the
candidate, 1 the drive, kept in a fifth block of the saved gates ``[.., 5N]``, 2 the cell, 3 the
output).
"""

from __future__ import annotations

import triton
import triton.language as tl

from .plastic_rnn import _clamp, _load_alpha, _modulation, _rule_bwd, _rule_fwd, _tanh

# plastic_rnn's helpers carry the variants of docs/SPEC.md section 1.1 (SOFT; n_mod and eta of the
# unmodulated neurons). These kernels compute section 1 only: SOFT and UNMOD False (every neuron
# modulated): plastic_lstm has no such options. Its own variants (SPEC.md section 2.1) are the
# READ and POST constants below.


@triton.jit
def _sigmoid(x):
    # exp(-x) overflows to inf for very negative x, giving 0: no NaN for any finite x.
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _program(eta_ptr, N, RULE: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr):
    """Sample b, column block jb, its columns and mask, the row offsets of a tile, N * N and eta
    (0 for rule neuromod, which has none)."""
    b = tl.program_id(0).to(tl.int64)
    jb = tl.program_id(1)
    cols = jb * BLOCK_J + tl.arange(0, BLOCK_J)
    eta = 0.0
    if RULE != 3:
        if RULE != 5:  # neuromod and gated have no eta
            eta = tl.load(eta_ptr)
    return b, jb, cols, cols < N, tl.arange(0, BLOCK_I), N * N, eta


@triton.jit
def _neuromodulator(h_ptr, modw_ptr, modb_ptr, b, N, BLOCK_J: tl.constexpr):
    """m = tanh(h[b] . mod_w + mod_b) over all N neurons; every program computes it in the same
    order, so all get the same bits."""
    acc = tl.zeros([BLOCK_J], dtype=h_ptr.dtype.element_ty)
    for j0 in range(0, N, BLOCK_J):
        jj = j0 + tl.arange(0, BLOCK_J)
        jm = jj < N
        acc += tl.load(h_ptr + b * N + jj, mask=jm, other=0.0) * tl.load(
            modw_ptr + jj, mask=jm, other=0.0
        )
    return _tanh(tl.sum(acc, axis=0) + tl.load(modb_ptr))


@triton.jit
def _gates_width(N, POST: tl.constexpr):
    """Row length of the saved gates: 4N, or 5N with the drive (POST 1)."""
    if POST == 1:
        gw = 5 * N
    else:
        gw = 4 * N
    return gw


@triton.jit
def _post_of(gates_ptr, c_ptr, h_ptr, r, N, cols, cmask, POST: tl.constexpr):
    """Row r's post-synaptic term of one step (SPEC.md section 2.1): from the step's saved gates
    (the candidate, or the drive in the fifth block), its c_t or its h_t."""
    if POST == 0:
        y = tl.load(gates_ptr + r * 4 * N + 2 * N + cols, mask=cmask, other=0.0)
    elif POST == 1:
        y = tl.load(gates_ptr + r * 5 * N + 4 * N + cols, mask=cmask, other=0.0)
    elif POST == 2:
        y = tl.load(c_ptr + r * N + cols, mask=cmask, other=0.0)
    else:
        y = tl.load(h_ptr + r * N + cols, mask=cmask, other=0.0)
    return y


@triton.jit
def plastic_lstm_fwd_step_kernel(
    g_ptr, hp_ptr, cp_ptr, hpp_ptr, gp_ptr, a_ptr, eta_ptr, modw_ptr, modb_ptr, fw_ptr, fb_ptr,
    H_ptr, E_ptr, ckh_ptr, cke_ptr, h_ptr, c_ptr, go_ptr, mod_ptr, hw_ptr,
    N, clip, rclip,
    RULE: tl.constexpr, ALPHA_KIND: tl.constexpr, HAS_FANOUT: tl.constexpr,
    PENDING: tl.constexpr, STEP: tl.constexpr, CKPT: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, READ: tl.constexpr = False,
    POST: tl.constexpr = 0,
):  # fmt: skip
    """Step t. In: g [B, 4N] = u_t + h_{t-1} wh; h_{t-1}, c_{t-1}, h_{t-2} [B, N]; the activated
    gates of step t-1 [B, 4N] (post of the pending update: its candidate block, or with POST its
    drive, c_{t-1} or h_{t-1}); POST 1: hw [B, 4N] = h_{t-1} wh. State H (E) [B, N, N] advanced
    in place. Out: checkpoint slot [B, N, N] (CKPT), h_t, c_t [B, N], activated gates [B, 4N]
    (5N with the drive) (STEP), m_{t-1} [B] (PENDING, modulated rules)."""
    ELIG: tl.constexpr = RULE == 4
    MOD: tl.constexpr = RULE >= 3
    b, jb, cols, cmask, rbase, NN, eta = _program(eta_ptr, N, RULE, BLOCK_I, BLOCK_J)
    dt = g_ptr.dtype.element_ty
    state = H_ptr + b * NN
    estate = E_ptr + b * NN
    G4 = 4 * N
    GW = _gates_width(N, POST)

    M = tl.zeros([BLOCK_J], dtype=dt)
    post = M
    if PENDING:
        post = _post_of(gp_ptr, cp_ptr, hp_ptr, b, N, cols, cmask, POST)
        if MOD:
            s = _neuromodulator(hp_ptr, modw_ptr, modb_ptr, b, N, BLOCK_J)
            tl.store(mod_ptr + b, s, mask=jb == 0)
            M = _modulation(s, fw_ptr, fb_ptr, cols, cmask, HAS_FANOUT, N, 0.0, False)

    q = tl.zeros([BLOCK_J], dtype=dt)  # the plastic term of step t, per column
    for i0 in range(0, N, BLOCK_I):
        rows = i0 + rbase
        rmask = rows < N
        m2 = rmask[:, None] & cmask[None, :]
        off = rows[:, None] * N + cols[None, :]
        H = tl.load(state + off, mask=m2, other=0.0)
        E = H
        if ELIG:
            E = tl.load(estate + off, mask=m2, other=0.0)
        if PENDING:  # step t-1's update: pre h_{t-2}, post g_{t-1}
            pre = tl.load(hpp_ptr + b * N + rows, mask=rmask, other=0.0)
            H, E = _rule_fwd(H, E, pre[:, None], post[None, :], M[None, :], eta, clip, RULE, False)
            tl.store(state + off, H, mask=m2)
            if ELIG:
                tl.store(estate + off, E, mask=m2)
        if CKPT:
            tl.store(ckh_ptr + b * NN + off, H, mask=m2)
            if ELIG:
                tl.store(cke_ptr + b * NN + off, E, mask=m2)
        if STEP:
            x = tl.load(hp_ptr + b * N + rows, mask=rmask, other=0.0)
            A = _load_alpha(a_ptr, rows, cols, m2, cmask, N, ALPHA_KIND)
            if READ:
                q += tl.sum(x[:, None] * (A * _clamp(H, rclip)), axis=0)
            else:
                q += tl.sum(x[:, None] * (A * H), axis=0)

    if STEP:
        gb = g_ptr + b * G4 + cols
        i = _sigmoid(tl.load(gb, mask=cmask, other=0.0))
        f = _sigmoid(tl.load(gb + N, mask=cmask, other=0.0))
        g = _tanh(tl.load(gb + 2 * N, mask=cmask, other=0.0) + q)
        o = _sigmoid(tl.load(gb + 3 * N, mask=cmask, other=0.0))
        c = f * tl.load(cp_ptr + b * N + cols, mask=cmask, other=0.0) + i * g
        h = o * _tanh(c)
        tl.store(c_ptr + b * N + cols, c, mask=cmask)
        tl.store(h_ptr + b * N + cols, h, mask=cmask)
        ob = go_ptr + b * GW + cols
        tl.store(ob, i, mask=cmask)
        tl.store(ob + N, f, mask=cmask)
        tl.store(ob + 2 * N, g, mask=cmask)
        tl.store(ob + 3 * N, o, mask=cmask)
        if POST == 1:  # the drive h_{t-1} wh_g + q, before the input and the tanh
            hw = tl.load(hw_ptr + b * G4 + 2 * N + cols, mask=cmask, other=0.0)
            tl.store(ob + 4 * N, hw + q, mask=cmask)


@triton.jit
def plastic_lstm_recompute_kernel(
    ws_h_ptr, ws_e_ptr, h_ptr, h0_ptr, gates_ptr, mod_ptr, eta_ptr, fw_ptr, fb_ptr, c_ptr,
    t0, L, B, N, clip,
    RULE: tl.constexpr, HAS_FANOUT: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr,
    POST: tl.constexpr = 0,
):  # fmt: skip
    """Traces before steps t0 + 1 .. t0 + L - 1 into ws[1 .. L-1] [K, B, N, N], from ws[0] (the
    chunk's checkpoint). h, c [T, B, N] (h0 [B, N] before step 0), gates [T, B, 4N] (5N with the
    drive), mod [T, B]."""
    ELIG: tl.constexpr = RULE == 4
    MOD: tl.constexpr = RULE >= 3
    b, jb, cols, cmask, rbase, NN, eta = _program(eta_ptr, N, RULE, BLOCK_I, BLOCK_J)
    dt = ws_h_ptr.dtype.element_ty
    BNN = B * NN
    for k in range(1, L):
        t = t0 + k - 1  # the step whose update gives the trace before step t + 1
        post = _post_of(gates_ptr, c_ptr, h_ptr, t * B + b, N, cols, cmask, POST)
        M = tl.zeros([BLOCK_J], dtype=dt)
        if MOD:
            M = _modulation(
                tl.load(mod_ptr + t * B + b), fw_ptr, fb_ptr, cols, cmask, HAS_FANOUT, N, 0.0,
                False,
            )  # fmt: skip
        src = (k - 1) * BNN + b * NN
        dst = k * BNN + b * NN
        for i0 in range(0, N, BLOCK_I):
            rows = i0 + rbase
            rmask = rows < N
            m2 = rmask[:, None] & cmask[None, :]
            off = rows[:, None] * N + cols[None, :]
            H = tl.load(ws_h_ptr + src + off, mask=m2, other=0.0)
            E = H
            if ELIG:
                E = tl.load(ws_e_ptr + src + off, mask=m2, other=0.0)
            if t == 0:
                pre = tl.load(h0_ptr + b * N + rows, mask=rmask, other=0.0)
            else:
                pre = tl.load(h_ptr + ((t - 1) * B + b) * N + rows, mask=rmask, other=0.0)
            H, E = _rule_fwd(H, E, pre[:, None], post[None, :], M[None, :], eta, clip, RULE, False)
            tl.store(ws_h_ptr + dst + off, H, mask=m2)
            if ELIG:
                tl.store(ws_e_ptr + dst + off, E, mask=m2)


@triton.jit
def plastic_lstm_bwd_step_kernel(
    # the cell phase: step t
    Hc_ptr, hp_ptr, cp_ptr, hc_ptr, cc_ptr, gtc_ptr, modc_ptr, gh_ptr, gcell_ptr, dhn_ptr,
    dpostc_ptr, dsc_ptr, dc_ptr, du_ptr, dA_ptr, rpc_ptr, dmw_ptr, dmb_ptr,
    # the trace phase: step s (t - 1 after a cell phase)
    Hs_ptr, Es_ptr, hps_ptr, gs_ptr, mods_ptr, dposts_ptr, rps_ptr, dss_ptr, deta_ptr, dfw_ptr,
    dfb_ptr,
    # shared
    dH_ptr, dE_ptr, a_ptr, eta_ptr, modw_ptr, fw_ptr, fb_ptr,
    # the variants: step s's c_s and h_s (POST 2, 3), step t's u-side candidate adjoint (POST 1)
    cs_ptr, hs_ptr, dug_ptr,
    N, NB, clip, rclip,
    RULE: tl.constexpr, ALPHA_KIND: tl.constexpr, HAS_FANOUT: tl.constexpr,
    HAS_GH: tl.constexpr, HAS_GC: tl.constexpr, CELL: tl.constexpr, TRACE: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, READ: tl.constexpr = False,
    POST: tl.constexpr = 0,
):  # fmt: skip
    """One pass over the adjoint dH [B, N, N] for two consecutive pieces of the backward.

    CELL: the adjoint of step t's cell and plastic term. The adjoint of h_t is its output
    gradient gh (HAS_GH), dhn [B, N] (from step t+1's gates, plastic term and trace update) and
    the neuromodulator m_t (the ds partials of step t's trace phase, summed here in block order).
    In: h_{t-1}, c_{t-1}, h_t, c_t [B, N], activated gates [B, 4N], H_{t-1} [B, N, N], dpost
    [B, N]. In/out: dc [B, N] (adjoint of c_t -> c_{t-1}), rpc [B, NB, N] (adds this block's
    plastic part of the adjoint of h_{t-1} to the trace part already there). Out: du [B, 4N];
    accumulated: dA ([B, N, N] or [B, N]), dmw [B, N], dmb [B].

    TRACE: the adjoint of step s's trace update H_s = rule(H_{s-1}, pre h_{s-1}, post g_s, m_s),
    with dH then the adjoint of H_s. In: H_{s-1} (E) [B, N, N], h_{s-1} [B, N], step s's gates
    and m_s [B]. Out: dposts [B, N] (adjoint of g_s), rps [B, NB, N] (this block's part of the
    adjoint of h_{s-1}), dss [B, NB] (its part of the adjoint of m_s); accumulated: deta [B, NB],
    dfw / dfb [B, N].

    dH (dE) end as the adjoint of the state before the last phase run. With both phases, the
    trace tiles of two steps are read once each and dH is read and written once per row tile.

    Variants (SPEC.md section 2.1): the adjoint dpost of the post-synaptic term joins that of g_t
    (POST 0), of the drive (1: du's candidate block, which feeds the plastic term and the GEMMs,
    while dug gets u's own, without it), of c_t (2) or of h_t (3). READ: the plastic term reads
    clamp(H, rclip); the trace phase's update bound ``clip`` is infinite (the host's).
    """
    ELIG: tl.constexpr = RULE == 4
    MOD: tl.constexpr = RULE >= 3
    b, jb, cols, cmask, rbase, NN, eta = _program(eta_ptr, N, RULE, BLOCK_I, BLOCK_J)
    dt = dH_ptr.dtype.element_ty
    vo = b * N + cols
    zv = tl.zeros([BLOCK_J], dtype=dt)
    # Per-sample base pointers (scalars), so the tiles' offsets stay 32-bit: fewer registers.
    Hc_ptr += b * NN
    Hs_ptr += b * NN
    Es_ptr += b * NN
    dH_ptr += b * NN
    dE_ptr += b * NN
    dA2_ptr = dA_ptr + b * NN

    da = zv
    if CELL:
        dh = tl.load(dhn_ptr + vo, mask=cmask, other=0.0)
        if HAS_GH:
            dh += tl.load(gh_ptr + vo, mask=cmask, other=0.0)
        if POST == 3:
            dh += tl.load(dpostc_ptr + vo, mask=cmask, other=0.0)
        if MOD:
            acc = zv
            for q0 in range(0, NB, BLOCK_J):
                qq = q0 + tl.arange(0, BLOCK_J)
                acc += tl.load(dsc_ptr + b * NB + qq, mask=qq < NB, other=0.0)
            s_c = tl.load(modc_ptr + b)
            dz = tl.sum(acc, axis=0) * (1.0 - s_c * s_c)
            dh += dz * tl.load(modw_ptr + cols, mask=cmask, other=0.0)
            hc = tl.load(hc_ptr + vo, mask=cmask, other=0.0)
            tl.store(dmw_ptr + vo, tl.load(dmw_ptr + vo, mask=cmask) + dz * hc, mask=cmask)
            tl.store(dmb_ptr + b, tl.load(dmb_ptr + b) + dz, mask=jb == 0)
        gb = gtc_ptr + b * _gates_width(N, POST) + cols
        i = tl.load(gb, mask=cmask, other=0.0)
        f = tl.load(gb + N, mask=cmask, other=0.0)
        g = tl.load(gb + 2 * N, mask=cmask, other=0.0)
        o = tl.load(gb + 3 * N, mask=cmask, other=0.0)
        tc = _tanh(tl.load(cc_ptr + vo, mask=cmask, other=0.0))
        dct = tl.load(dc_ptr + vo, mask=cmask, other=0.0) + dh * o * (1.0 - tc * tc)
        if HAS_GC:
            dct += tl.load(gcell_ptr + vo, mask=cmask, other=0.0)
        if POST == 2:
            dct += tl.load(dpostc_ptr + vo, mask=cmask, other=0.0)
        if POST == 0:
            dg = dct * i + tl.load(dpostc_ptr + vo, mask=cmask, other=0.0)
        else:
            dg = dct * i
        tl.store(dc_ptr + vo, dct * f, mask=cmask)
        ub = du_ptr + b * 4 * N + cols
        tl.store(ub, dct * g * i * (1.0 - i), mask=cmask)
        cprev = tl.load(cp_ptr + vo, mask=cmask, other=0.0)
        tl.store(ub + N, dct * cprev * f * (1.0 - f), mask=cmask)
        da = tl.where(cmask, dg * (1.0 - g * g), 0.0)  # adjoint of the candidate pre-activation
        if POST == 1:  # the drive's adjoint reaches the plastic term and wh, not u
            tl.store(dug_ptr + vo, da, mask=cmask)
            da += tl.load(dpostc_ptr + vo, mask=cmask, other=0.0)
        tl.store(ub + 2 * N, da, mask=cmask)
        tl.store(ub + 3 * N, dh * tc * o * (1.0 - o), mask=cmask)

    s_s = tl.sum(zv, axis=0)
    M = zv
    post = zv
    if TRACE:
        post = _post_of(gs_ptr, cs_ptr, hs_ptr, b, N, cols, cmask, POST)
        if MOD:
            s_s = tl.load(mods_ptr + b)
            M = _modulation(s_s, fw_ptr, fb_ptr, cols, cmask, HAS_FANOUT, N, 0.0, False)

    dA_vec = zv
    dpost = zv
    dM = zv
    deta = tl.sum(zv, axis=0)
    for i0 in range(0, N, BLOCK_I):
        rows = i0 + rbase
        rmask = rows < N
        m2 = rmask[:, None] & cmask[None, :]
        off = rows[:, None] * N + cols[None, :]
        dH = tl.load(dH_ptr + off, mask=m2, other=0.0)
        if CELL:
            # Adjoint of the plastic term q_j = sum_i h_{t-1,i} alpha_ij H_{t-1,ij}.
            H = tl.load(Hc_ptr + off, mask=m2, other=0.0)
            x = tl.load(hp_ptr + b * N + rows, mask=rmask, other=0.0)
            A = _load_alpha(a_ptr, rows, cols, m2, cmask, N, ALPHA_KIND)
            xda = x[:, None] * da[None, :]
            if READ:  # the candidate read clamp(H): torch.clamp's gradient (NaN blocks it)
                dH += tl.where(tl.abs(H) <= rclip, A * xda, 0.0)
                H = _clamp(H, rclip)
            else:
                dH += A * xda
            gA = xda * H
            if ALPHA_KIND == 2:
                tl.store(dA2_ptr + off, tl.load(dA2_ptr + off, mask=m2, other=0.0) + gA, mask=m2)
            else:
                dA_vec += tl.sum(gA, axis=0)
            rp = rpc_ptr + (b * NB + jb) * N + rows
            mv = tl.sum((A * H) * da[None, :], axis=1)
            tl.store(rp, tl.load(rp, mask=rmask, other=0.0) + mv, mask=rmask)
        if TRACE:
            Hs = tl.load(Hs_ptr + off, mask=m2, other=0.0)
            Es = Hs
            dE = dH
            if ELIG:
                Es = tl.load(Es_ptr + off, mask=m2, other=0.0)
                dE = tl.load(dE_ptr + off, mask=m2, other=0.0)
            pre = tl.load(hps_ptr + b * N + rows, mask=rmask, other=0.0)
            # Outside [N, N] every loaded tile is zero (masked loads), so are the per-element
            # terms.
            dH, dE, g_pre, g_post, g_mod, g_eta = _rule_bwd(
                Hs, Es, pre[:, None], post[None, :], M[None, :], eta, clip, dH, dE, RULE, False
            )
            if ELIG:
                tl.store(dE_ptr + off, dE, mask=m2)
            dpost += tl.sum(g_post, axis=0)
            if MOD:
                dM += tl.sum(g_mod, axis=0)
            if RULE != 3:
                if RULE != 5:
                    deta += tl.sum(tl.sum(g_eta, axis=1), axis=0)
            rs = rps_ptr + (b * NB + jb) * N + rows
            tl.store(rs, tl.sum(g_pre, axis=1), mask=rmask)
        tl.store(dH_ptr + off, dH, mask=m2)

    if CELL:
        if ALPHA_KIND != 2:
            tl.store(dA_ptr + vo, tl.load(dA_ptr + vo, mask=cmask) + dA_vec, mask=cmask)
    if TRACE:
        tl.store(dposts_ptr + vo, dpost, mask=cmask)
        if RULE != 3:
            if RULE != 5:
                slot = deta_ptr + b * NB + jb
                tl.store(slot, tl.load(slot) + deta)
        if MOD:
            if HAS_FANOUT:
                fw = tl.load(fw_ptr + cols, mask=cmask, other=0.0)
                tl.store(dss_ptr + b * NB + jb, tl.sum(dM * fw, axis=0))
                tl.store(dfw_ptr + vo, tl.load(dfw_ptr + vo, mask=cmask) + dM * s_s, mask=cmask)
                tl.store(dfb_ptr + vo, tl.load(dfb_ptr + vo, mask=cmask) + dM, mask=cmask)
            else:
                tl.store(dss_ptr + b * NB + jb, tl.sum(tl.where(cmask, dM, 0.0), axis=0))
