"""Custom ops ``hebbkern::plastic_lstm_triton_fwd`` / ``plastic_lstm_triton_bwd``: the host loops
that issue the per-step cuBLAS GEMMs and the Triton kernels of plastic_lstm.py
(``torch.library.triton_op``: ``torch.compile(fullgraph=True)`` keeps the kernels in the graph),
with autograd registered.

Same argument lists and outputs as the C++ ops ``hebbkern::plastic_lstm_fwd`` / ``plastic_lstm_bwd``
(csrc/ops.cpp), so ``hebbkern.ops.plastic_lstm`` dispatches to either. The host loops read no
tensor value (no ``.item()``, no data-dependent branch): they can be captured in a CUDA graph.

Memory, as the CPU kernel's: the forward saves ``h``, ``c`` ``[T, B, N]``, the gates
``[T, B, 4N]`` and the trace before every K-th step ``[ceil(T/K), B, N, N]``; the backward holds one
chunk's traces ``[K, B, N, N]`` plus the running adjoints ``[B, N, N]`` (and for alpha per
connection a per-sample ``[B, N, N]`` accumulator of its gradient).

Imported lazily (first use of ``backend="triton"``), never by ``import hebbkern``.
"""

# No ``from __future__ import annotations``: triton_op reads the annotations to build the schema.
import torch
import triton
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

from .. import _func
from .._validation import MODULATED_RULES
from .._variants import uses_eta
from ..ops.plastic_lstm import gates_width, lstm_autograd
from .plastic_lstm import (
    plastic_lstm_bwd_step_kernel,
    plastic_lstm_fwd_step_kernel,
    plastic_lstm_recompute_kernel,
)
from .plastic_rnn import RULE_IDS, interpreting

# Tiles (rows x columns) and warps. 64 columns: 256-byte rows of float32 per tile, coalesced; 16
# rows keep 8 floats of each tile per thread on 4 warps. The backward step holds two traces, the
# eligibility and their adjoints at once: with 32 rows it took 220-255 registers (sm_80 retro
# spilled), two blocks per SM, too few warps in flight for a bandwidth-bound loop
# (tests/test_plastic_lstm_triton_aot.py prints the table). At N = 1149, B = 64 a step launches
# 64 x 18 programs.
BLOCK_I, BLOCK_J, NUM_WARPS = 16, 64, 4
# The interpreter runs small blocks, so that odd N exercise several row and column blocks, partial
# last ones, and the per-block partial sums.
INTERPRETER_BLOCKS = (4, 8)


# The retro backward step holds the most live tiles (trace, eligibility and their adjoints): with
# 16-row tiles ptxas (triton 3.8) put it at sm_80's 168-register cap for 4 warps and spilled 8 bytes
# (12 with a variant of docs/SPEC.md section 2.1). 8-row tiles: 96 registers, no spill, more
# blocks per SM (tests/test_plastic_lstm_triton_aot.py). Speed on a GPU unmeasured.
RETRO_BWD_BLOCK_I = 8


def bwd_block_i(rule: str, variant: int = 0) -> int:
    """The backward step's tile height for ``rule`` (and the variant code, which does not change
    it today)."""
    return RETRO_BWD_BLOCK_I if rule == "retro" else BLOCK_I


def blocks() -> tuple[int, int]:
    return INTERPRETER_BLOCKS if interpreting() else (BLOCK_I, BLOCK_J)


def _launch(kernel, grid, *args, block_i: int = BLOCK_I, **kwargs) -> None:
    if grid[0] == 0:
        return
    bi, bj = blocks()
    bi = bi if interpreting() else block_i
    if interpreting():
        # The interpreter's kernels are not JITFunctions, so wrap_triton cannot trace them: under
        # fake tensors (opcheck, tracing) the outputs' shapes are all there is to compute.
        if any(isinstance(a, Tensor) and is_fake(a) for a in args):
            return
        kernel[grid](*args, **kwargs, BLOCK_I=bi, BLOCK_J=bj)
    else:
        torch.library.wrap_triton(kernel)[grid](
            *args, **kwargs, BLOCK_I=bi, BLOCK_J=bj, num_warps=NUM_WARPS
        )


def _grid(B, N) -> tuple[int, int]:
    return (int(B), triton.cdiv(int(N), blocks()[1]))


def _variant_flags(variant: int, clip: float) -> tuple[bool, int, float]:
    """(READ, POST, the update's bound) of the variant code (hebbkern/ops/plastic_lstm.py): the
    read-out clip moves the bound from the update (made infinite) to the read."""
    read = bool(variant & 1)
    return read, int(variant) >> 1, float("inf") if read else float(clip)


def _interval(T, ckpt_every: int) -> tuple[int, int]:
    """(K, C): the steps per chunk and the number of checkpoints, as the C++ kernel counts them."""
    K = min(int(ckpt_every), int(T))
    return K, (int(T) + K - 1) // K


# The argument lists are written out in full, as in the other *_ops.py: triton_op builds each op's
# schema from its annotations.
def plastic_lstm_fwd_body(
    u: Tensor,
    wh: Tensor,
    alpha: Tensor,
    h0: Tensor | None,
    c0: Tensor | None,
    hebb0: Tensor | None,
    elig0: Tensor | None,
    eta: Tensor | None,
    mod_w: Tensor | None,
    mod_b: Tensor | None,
    fanout_w: Tensor | None,
    fanout_b: Tensor | None,
    rule: str,
    clip: float,
    ckpt_every: int,
    variant: int = 0,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns ``(h, c, gates, hebb, elig, hebb_ckpt, elig_ckpt, mod)`` as the C++ op does."""
    T, B, G = u.shape
    N = G // 4
    K, C = _interval(T, ckpt_every)
    retro = rule == "retro"
    modulated = rule in MODULATED_RULES
    read, post, uclip = _variant_flags(variant, clip)
    u = u.contiguous()
    wh = wh.contiguous()

    def c_(x: Tensor | None) -> Tensor:
        return u if x is None else x.contiguous()

    h = u.new_empty(T, B, N)
    c = u.new_empty(T, B, N)
    gates = u.new_empty(T, B, gates_width(N, variant))
    hebb = hebb0.clone(memory_format=torch.contiguous_format) if hebb0 is not None else None
    hebb = u.new_zeros(B, N, N) if hebb is None else hebb
    elig = u.new_empty(0)
    if retro:
        elig = elig0.contiguous().clone() if elig0 is not None else u.new_zeros(B, N, N)
    hebb_ckpt = u.new_empty(C, B, N, N)
    elig_ckpt = u.new_empty(C, B, N, N) if retro else u.new_empty(0)
    mod = u.new_empty(T, B) if modulated else u.new_empty(0)
    zeros = u.new_zeros(B, N)
    if modulated and mod_b is None:
        mod_b = u.new_zeros(())
    hm1 = zeros if h0 is None else h0.contiguous()  # h_{-1}
    cm1 = zeros if c0 is None else c0.contiguous()
    grid = _grid(B, N)
    for t in range(T + 1):
        step = t < T
        hp = h[t - 1] if t >= 1 else hm1  # h_{t-1}
        hpp = h[t - 2] if t >= 2 else hm1  # h_{t-2}, pre of step t-1's update
        # The dense part of the gates, one GEMM over the samples: u_t + h_{t-1} wh (the drive
        # needs h_{t-1} wh alone).
        g = hw = u[0]
        if step and post == 1:
            hw = hp @ wh
            g = u[t] + hw
        elif step:
            g = torch.addmm(u[t], hp, wh)
        ckpt = step and t % K == 0
        slot = t // K if ckpt else 0
        _launch(
            plastic_lstm_fwd_step_kernel, grid,
            g, hp, c[t - 1] if t >= 1 else cm1, hpp, gates[t - 1] if t >= 1 else gates[0],
            c_(alpha), c_(eta), c_(mod_w), c_(mod_b), c_(fanout_w), c_(fanout_b),
            hebb, elig if retro else hebb, hebb_ckpt[slot], elig_ckpt[slot] if retro else hebb,
            h[t] if step else h[0], c[t] if step else c[0], gates[t] if step else gates[0],
            mod[t - 1] if (modulated and t >= 1) else h, hw,
            N, uclip, float(clip),
            RULE=RULE_IDS[rule], ALPHA_KIND=alpha.dim(), HAS_FANOUT=fanout_w is not None,
            PENDING=t >= 1, STEP=step, CKPT=ckpt, READ=read, POST=post,
        )  # fmt: skip
    return h, c, gates, hebb, elig, hebb_ckpt, elig_ckpt, mod


def plastic_lstm_bwd_body(
    grad_h: Tensor | None,
    grad_c: Tensor | None,
    grad_hebb: Tensor | None,
    grad_elig: Tensor | None,
    wh: Tensor,
    alpha: Tensor,
    h0: Tensor | None,
    c0: Tensor | None,
    h: Tensor,
    c: Tensor,
    gates: Tensor,
    hebb_ckpt: Tensor,
    elig_ckpt: Tensor,
    mod: Tensor,
    eta: Tensor | None,
    mod_w: Tensor | None,
    mod_b: Tensor | None,
    fanout_w: Tensor | None,
    fanout_b: Tensor | None,
    rule: str,
    clip: float,
    ckpt_every: int,
    variant: int = 0,
) -> tuple[
    Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor
]:
    """Returns ``(du, dwh, dalpha, dh0, dc0, dhebb0, delig0, deta, dmod_w, dmod_b, dfanout_w,
    dfanout_b)`` as the C++ op does; empty tensors where the rule has no such input."""
    T, B, N = h.shape
    K, C = _interval(T, ckpt_every)
    retro = rule == "retro"
    modulated = rule in MODULATED_RULES
    read, post, uclip = _variant_flags(variant, clip)
    fan = fanout_w is not None
    kind = alpha.dim()
    h, c, gates = h.contiguous(), c.contiguous(), gates.contiguous()
    wh = wh.contiguous()

    def c_(x: Tensor | None) -> Tensor:
        return h if x is None else x.contiguous()

    def empty() -> Tensor:
        return h.new_empty(0)

    grid = _grid(B, N)
    NB = grid[1]
    zeros = h.new_zeros(B, N)
    if modulated and mod_b is None:
        mod_b = h.new_zeros(())
    hm1 = zeros if h0 is None else h0.contiguous()
    cm1 = zeros if c0 is None else c0.contiguous()
    dH = h.new_zeros(B, N, N) if grad_hebb is None else grad_hebb.contiguous().clone()
    dE = empty()
    if retro:
        dE = h.new_zeros(B, N, N) if grad_elig is None else grad_elig.contiguous().clone()
    ws_h = h.new_empty(K, B, N, N)
    ws_e = h.new_empty(K, B, N, N) if retro else ws_h
    dh = h.new_zeros(B, N)  # adjoint of h_t from the steps after t
    dc = h.new_zeros(B, N)  # adjoint of c_t from the steps after t
    # Per-step buffers by parity of the step: a launch finishes step t's cell (reading step t's
    # trace-phase results) while it writes step t-1's trace-phase results.
    dpost = h.new_empty(2, B, N)  # adjoint of g_s from step s's trace update
    rowpart = h.new_empty(2, B, NB, N)  # per column block parts of the adjoint of h_{s-1}
    ds = h.new_zeros(2, B, NB)  # per column block parts of the adjoint of m_s
    deta = h.new_zeros(B, NB)
    dmw = h.new_zeros(B, N)
    dmb = h.new_zeros(B)
    dfw = h.new_zeros(B, N)
    dfb = h.new_zeros(B, N)
    dA = h.new_zeros(B, N, N) if kind == 2 else h.new_zeros(B, N)
    du = h.new_empty(T, B, 4 * N)
    # Post "drive": u's adjoint in the candidate block (du's own adds the drive's adjoint).
    dug = h.new_empty(T, B, N) if post == 1 else h
    gh = None if grad_h is None else grad_h.contiguous()
    gc = None if grad_c is None else grad_c.contiguous()
    whT = wh.t()
    shared = (dH, dE if retro else dH, c_(alpha), c_(eta), c_(mod_w), c_(fanout_w), c_(fanout_b))
    flags = dict(RULE=RULE_IDS[rule], ALPHA_KIND=kind, HAS_FANOUT=fan, HAS_GH=gh is not None,
                 HAS_GC=gc is not None, READ=read, POST=post)  # fmt: skip

    def variant_args(t: int, s: int) -> tuple:
        """Step s's c_s, h_s (the trace phase's post, POST 2 and 3) and step t's dug (POST 1)."""
        return (c[s] if s >= 0 else c, h[s] if s >= 0 else h, dug[t] if post == 1 and t >= 0 else h)

    def cell_args(t: int, k: int) -> tuple:
        """Step t's cell phase; k: the index of H_{t-1} in the chunk's workspace."""
        if t < 0:
            return (h,) * 18
        p = t % 2
        return (
            ws_h[k], h[t - 1] if t >= 1 else hm1, c[t - 1] if t >= 1 else cm1, h[t], c[t],
            gates[t], mod[t] if modulated else h, gh[t] if gh is not None else h,
            gc[t] if gc is not None else h, dh, dpost[p], ds[p], dc, du[t], dA, rowpart[p], dmw,
            dmb,
        )  # fmt: skip

    def trace_args(s: int, k: int) -> tuple:
        """Step s's trace phase; k: the index of H_{s-1} in the chunk's workspace."""
        if s < 0:
            return (h,) * 11
        p = s % 2
        return (
            ws_h[k], ws_e[k], h[s - 1] if s >= 1 else hm1, gates[s], mod[s] if modulated else h,
            dpost[p], rowpart[p], ds[p], deta, dfw, dfb,
        )  # fmt: skip

    for ci in range(C - 1, -1, -1):
        t0 = ci * K
        t1 = min(t0 + K, T)
        ws_h[0].copy_(hebb_ckpt[ci])
        if retro:
            ws_e[0].copy_(elig_ckpt[ci])
        if t1 - t0 > 1:
            _launch(
                plastic_lstm_recompute_kernel, grid,
                ws_h, ws_e, h, hm1, gates, c_(mod if modulated else None), c_(eta),
                c_(fanout_w), c_(fanout_b), c,
                t0, t1 - t0, B, N, uclip, HAS_FANOUT=fan, RULE=RULE_IDS[rule], POST=post,
            )  # fmt: skip
        # The trace phase of the chunk's last step alone (its step after is in the next chunk,
        # whose workspace is gone); then each launch: step t's cell and step t-1's trace.
        _launch(
            plastic_lstm_bwd_step_kernel, grid,
            *cell_args(-1, 0), *trace_args(t1 - 1, t1 - 1 - t0), *shared,
            *variant_args(-1, t1 - 1), N, NB, uclip, float(clip), CELL=False, TRACE=True,
            block_i=bwd_block_i(rule, variant), **flags,
        )  # fmt: skip
        for t in range(t1 - 1, t0 - 1, -1):
            k = t - t0
            both = k >= 1
            _launch(
                plastic_lstm_bwd_step_kernel, grid,
                *cell_args(t, k), *trace_args(t - 1 if both else -1, k - 1 if both else 0),
                *shared, *variant_args(t, t - 1 if both else -1), N, NB, uclip, float(clip),
                CELL=True, TRACE=both, block_i=bwd_block_i(rule, variant), **flags,
            )  # fmt: skip
            # Adjoint of h_{t-1}: through the gates' GEMM, plus the plastic term's and the trace
            # update's per-block parts (summed in block order: deterministic).
            dh = torch.addmm(rowpart[t % 2].sum(1), du[t], whT)
    # The weight gradient is one GEMM over all steps and samples: dwh = sum_t h_{t-1}^T du_t.
    h_prev = torch.cat([hm1.unsqueeze(0), h[:-1]], dim=0).reshape(T * B, N)
    dwh = h_prev.t() @ du.reshape(T * B, 4 * N)
    dalpha = dA.sum(0) if kind else dA.sum()
    if post == 1:  # u's adjoint: du without the drive's part in the candidate block
        du = du.clone()
        du[:, :, 2 * N : 3 * N] = dug
    return (
        du, dwh, dalpha, dh, dc, dH, dE if retro else empty(),
        deta.sum() if uses_eta(rule, 0) else empty(),
        dmw.sum(0) if modulated else empty(), dmb.sum() if modulated else empty(),
        dfw.sum(0) if fan else empty(), dfb.sum(0) if fan else empty(),
    )  # fmt: skip


# The ops. The bodies stay importable as plain functions: tests trace them with make_fx (the host
# loops' calls, without a GPU).
plastic_lstm_triton_fwd = torch.library.triton_op(
    "hebbkern::plastic_lstm_triton_fwd", mutates_args=()
)(plastic_lstm_fwd_body)
plastic_lstm_triton_bwd = torch.library.triton_op(
    "hebbkern::plastic_lstm_triton_bwd", mutates_args=()
)(plastic_lstm_bwd_body)


_backward, _setup_context = lstm_autograd(plastic_lstm_triton_bwd)
_func.register_autograd(plastic_lstm_triton_fwd, _backward, _setup_context)
