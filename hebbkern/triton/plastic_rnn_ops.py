"""Custom ops ``hebbkern::plastic_rnn_triton_fwd`` / ``plastic_rnn_triton_bwd`` over the Triton
kernels (``torch.library.triton_op``: the fake kernel is derived from the body, and
``torch.compile(fullgraph=True)`` keeps the kernels in the graph), with autograd registered.

Same argument lists as the C++ ops ``hebbkern::plastic_rnn_fwd`` / ``plastic_rnn_bwd`` (without
the inputs the backward does not need), so ``hebbkern.ops.plastic_rnn`` dispatches to either.
Parameters per sample (a population) come in the raw ops' canonical forms, which the public op
makes: ``w`` ``[B, N, N]``; ``alpha`` ``[B, N, N]`` / ``[B, 1, N]`` / ``[B, 1, 1]``; ``eta``
``[B]``. Their gradients come back in the same forms (not summed over the batch).

Imported lazily (first use of ``backend="triton"``), never by ``import hebbkern``.
"""

# No ``from __future__ import annotations``: triton_op reads the annotations to build the schema.
import functools
import os

import torch
import triton
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

from .. import _func
from .._variants import uses_eta
from ..ops._glue import differentiable, keep_given
from .plastic_rnn import (
    RULE_IDS,
    interpreting,
    plastic_rnn_bwd_kernel,
    plastic_rnn_fwd_kernel,
)

# (register-tile elements, warps): 4 and 8 floats per thread and tile. The checked configurations
# compile for sm_80 and sm_90 with no spill in the time loop (tests/test_plastic_rnn_triton_aot.py).
# ptxas picks register budgets by its own occupancy heuristics (96, 128 or 168 registers, spilling
# a few values) for 2 and 4 warps with 8-16 floats per thread, and 4096 elements on 8 warps reach
# 255 registers; those shapes spilled inside the step loops and are not shipped (NOTES.md).
TILE_CONFIGS = ((512, 4), (2048, 8))
# With per-sample parameters, at the narrow widths ptxas's own register budget left one or two
# 4-8 byte values spilled inside the step loop of the backward (sm_80: retro on 8 warps, sm_90:
# neuromod on 4 warps, BLOCK_N = 32); a budget of 96 registers (.maxnreg) compiles every narrow
# per-sample backward without spill (tests/test_plastic_rnn_population_triton_aot.py; 128 did
# too, at up to 128 registers: fewer programs per SM for a large population). The forward and
# the shared kernels keep ptxas's choice. {widest BLOCK_N: registers}.
PER_SAMPLE_BWD_MAXNREG = {32: 96}
# Resident kernels (issue 13 item 4): where one tile is the whole sample (BLOCK_I == BLOCK_N),
# the kernels keep w, alpha and the state in registers across steps. {kernel: widest BLOCK_N}:
# the forward holds 4 tiles (w, alpha, trace, eligibility), the backward 7 (w, alpha, dH, dE,
# d alpha, the workspace's trace and eligibility); at BLOCK_N = 64 the backward spilled inside
# the time loop on 8 and on 16 warps (sm_80 and sm_90, neuromod and retro; NOTES.md M10), so its
# resident kernels stop at 32. A resident configuration has 8 floats per thread per tile (the
# density of the (2048, 8) shape): BN * BN / 256 warps, added where no tile shape covers the
# sample (BN = 64); at BN <= 32 the (2048, 8) shape already does.
RESIDENT_MAX_BN = {"fwd": 64, "bwd": 32}
_KERNELS = {"fwd": plastic_rnn_fwd_kernel, "bwd": plastic_rnn_bwd_kernel}
# The interpreter runs the resident kernels up to this width, elsewhere row blocks of
# INTERPRETER_BLOCK_I rows, so that odd N exercise several blocks and a partial one. (The tests
# of the resident kernels raise the width to 64, what the GPU runs.)
INTERPRETER_BLOCK_I = 8
INTERPRETER_RESIDENT_MAX_BN = 8


def resident(kernel_name: str, BN: int, BLOCK_I: int) -> bool:
    """The one place that decides the kernels' RESIDENT constant: one tile of BLOCK_I rows covers
    the whole padded sample, at a width whose resident state fits the registers."""
    return BLOCK_I == BN and BN <= RESIDENT_MAX_BN[kernel_name]


def block_n(N) -> int:
    """The padded width, a compile-time constant of the kernels. ``N`` may be a SymInt (tracing
    with dynamic shapes: opcheck's test_aot_dispatch_dynamic, ``torch.compile(dynamic=True)``):
    ``int()`` specialises it (a guard on N) so the constant and the configurations derived from it
    are plain, hashable ints; a symbolic BLOCK_N could not compile anyway."""
    return triton.next_power_of_2(int(N))


def tile_configs(BN: int) -> list:
    """The row-block shapes of TILE_CONFIGS at padded width ``BN`` (deduplicated), as
    ``triton.Config`` with BLOCK_I and warps (plastic_step's kernels use the last one)."""
    BN = int(BN)
    seen, out = set(), []
    for elems, warps in TILE_CONFIGS:
        bi = max(1, min(BN, elems // BN))
        if (bi, warps) not in seen:
            seen.add((bi, warps))
            out.append(triton.Config({"BLOCK_I": bi}, num_warps=warps))
    return out


def configs_for(BN: int, per_sample_bwd: bool = False, kernel_name: str = "fwd") -> list:
    """The autotuning configurations shipped for a padded width ``BN`` and kernel (``"fwd"`` or
    ``"bwd"``): the tile shapes and, where none covers the sample, the resident one (last, so
    that it is also the one configuration run without autotuning). ``per_sample_bwd``: the
    backward kernel with some parameter per sample (a register budget for its tiled shapes)."""
    BN = int(BN)
    maxnreg = next((r for w, r in PER_SAMPLE_BWD_MAXNREG.items() if BN <= w), None)
    shapes = [(c.kwargs["BLOCK_I"], c.num_warps) for c in tile_configs(BN)]
    if BN <= RESIDENT_MAX_BN[kernel_name] and all(bi != BN for bi, _ in shapes):
        shapes.append((BN, max(4, min(16, BN * BN // 256))))
    out = []
    for bi, warps in shapes:
        res = resident(kernel_name, BN, bi)
        # The per-sample register budget is the tiled kernels' (the resident ones compile
        # without spill under ptxas's own budget, and spilled under 96 registers).
        regs = maxnreg if per_sample_bwd and not res else None
        out.append(triton.Config({"BLOCK_I": bi, "RESIDENT": res}, num_warps=warps,
                                 maxnreg=regs))  # fmt: skip
    return out


def interpreter_block_i(kernel_name: str, BN: int) -> int:
    """The row block the interpreter runs at padded width ``BN``: the whole sample where the
    resident kernel runs (up to INTERPRETER_RESIDENT_MAX_BN), else INTERPRETER_BLOCK_I rows."""
    if BN <= INTERPRETER_RESIDENT_MAX_BN and resident(kernel_name, BN, BN):
        return BN
    return min(BN, INTERPRETER_BLOCK_I)


@functools.cache
def _tuned(kernel_name: str, BN: int, per_sample: bool):
    """The kernel autotuned over its shipped configurations; the choice is cached per (N, B)."""
    configs = configs_for(BN, per_sample and kernel_name == "bwd", kernel_name)
    return triton.autotune(configs=configs, key=["N", "B"])(_KERNELS[kernel_name])


def autotuning() -> bool:
    """Autotuning is on unless ``HEBBKERN_TRITON_AUTOTUNE=0`` (tests: one compile per case)."""
    return os.environ.get("HEBBKERN_TRITON_AUTOTUNE", "1") != "0"


def _launch(kernel_name: str, grid, *args, **kwargs) -> None:
    BN = kwargs["BLOCK_N"]
    per_sample = any(kwargs[f] for f in ("W_PER_SAMPLE", "A_PER_SAMPLE", "ETA_PER_SAMPLE"))
    # Every path, the interpreter's too, derives its configurations first, so the CPU tests run
    # the same Python on fake tensors as a GPU does.
    configs = configs_for(BN, per_sample and kernel_name == "bwd", kernel_name)
    if interpreting():
        # The interpreter's kernels are not JITFunctions, so wrap_triton cannot trace them: under
        # fake tensors (opcheck, tracing) the outputs' shapes are all there is to compute.
        if any(isinstance(a, Tensor) and is_fake(a) for a in args):
            return
        bi = interpreter_block_i(kernel_name, BN)
        _KERNELS[kernel_name][grid](
            *args, **kwargs, BLOCK_I=bi, RESIDENT=resident(kernel_name, BN, bi)
        )
    elif not autotuning():
        cfg = configs[-1]
        regs = {} if cfg.maxnreg is None else {"maxnreg": cfg.maxnreg}
        torch.library.wrap_triton(_KERNELS[kernel_name])[grid](
            *args, **kwargs, **cfg.kwargs, num_warps=cfg.num_warps, **regs
        )
    else:
        torch.library.wrap_triton(_tuned(kernel_name, BN, per_sample))[grid](*args, **kwargs)


def _alpha_kind(alpha: Tensor) -> int:
    """0 scalar, 1 per post neuron, 2 per connection: the number of dimensions of a shared alpha
    (``[]``, ``[N]``, ``[N, N]``), the last two sizes of a per-sample one (``[B, 1, 1]``,
    ``[B, 1, N]``, ``[B, N, N]``; at N = 1 all three are one value per sample, kind 0)."""
    if alpha.dim() < 3:
        return alpha.dim()
    return 2 if alpha.shape[1] != 1 else (1 if alpha.shape[2] != 1 else 0)


def _per_sample(w: Tensor, alpha: Tensor, eta: Tensor | None) -> dict:
    """The kernels' compile-time flags for parameters given per sample (canonical forms)."""
    return {
        "W_PER_SAMPLE": w.dim() == 3,
        "A_PER_SAMPLE": alpha.dim() == 3,
        "ETA_PER_SAMPLE": eta is not None and eta.dim() == 1,
    }


# The modulator's squashings (tanh, sigmoid, identity) are the activations of codes 0, 3, 4: the
# kernels take SQUASH as that code and apply _act / _act_grad.
_SQUASH_ACT = (0, 3, 4)


def _variant_args(rule: str, N: int, variant: int) -> tuple[int, dict]:
    """The kernels' run-time n_mod and compile-time variant constants for the variant code of
    hebbkern/_variants.py (SPEC.md section 1.1)."""
    consts = {
        "USES_ETA": uses_eta(rule, variant), "SOFT": bool((variant >> 5) & 1),
        "ACT": variant & 7, "SQUASH": _SQUASH_ACT[(variant >> 3) & 3],
        "UNMOD": (variant >> 8) > 0,
    }  # fmt: skip
    return int(N) - (variant >> 8), consts


_MODULATED = ("neuromod", "retro", "gated")


# The op's schema is read from these annotations, so each op's arguments are written out.
@torch.library.triton_op("hebbkern::plastic_rnn_triton_fwd", mutates_args=())
def plastic_rnn_triton_fwd(
    u: Tensor,
    w: Tensor,
    alpha: Tensor,
    h0: Tensor | None,
    hebb0: Tensor | None,
    elig0: Tensor | None,
    clamp_mask: Tensor | None,
    eta: Tensor | None,
    mod_w: Tensor | None,
    mod_b: Tensor | None,
    fanout_w: Tensor | None,
    fanout_b: Tensor | None,
    rule: str,
    clip: float,
    ckpt_every: int,
    variant: int = 0,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns ``(h, hebb, elig, hebb_ckpt, elig_ckpt, mod)`` as the C++ op does."""
    T, B, N = u.shape
    K = ckpt_every
    C = (T + K - 1) // K
    retro = rule == "retro"
    modulated = rule in _MODULATED
    n_mod, consts = _variant_args(rule, N, variant)
    u = u.contiguous()

    def c(x: Tensor | None) -> Tensor:
        return u if x is None else x.contiguous()

    h = u.new_empty(T, B, N)
    hebb = u.new_empty(B, N, N)
    elig = u.new_empty(B, N, N) if retro else u.new_empty(0)
    hebb_ckpt = u.new_empty(C, B, N, N)
    elig_ckpt = u.new_empty(C, B, N, N) if retro else u.new_empty(0)
    mod = u.new_empty(T, B) if modulated else u.new_empty(0)
    clamp = u if clamp_mask is None else clamp_mask.contiguous().view(torch.uint8)
    _launch(
        "fwd", (B,),
        u, c(w), c(alpha), c(h0), c(hebb0), c(elig0), clamp, c(eta), c(mod_w), c(mod_b),
        c(fanout_w), c(fanout_b),
        h, hebb, elig if retro else hebb, hebb_ckpt, elig_ckpt if retro else hebb_ckpt,
        mod if modulated else h,
        T, B, N, K, float(clip), n_mod,
        RULE=RULE_IDS[rule], ALPHA_KIND=_alpha_kind(alpha), HAS_H0=h0 is not None,
        HAS_HEBB0=hebb0 is not None, HAS_ELIG0=elig0 is not None,
        HAS_CLAMP=clamp_mask is not None, HAS_FANOUT=fanout_w is not None, BLOCK_N=block_n(N),
        **consts, **_per_sample(w, alpha, eta),
    )  # fmt: skip
    return h, hebb, elig, hebb_ckpt, elig_ckpt, mod


# The op's schema is read from these annotations, so each op's arguments are written out.
@torch.library.triton_op("hebbkern::plastic_rnn_triton_bwd", mutates_args=())
def plastic_rnn_triton_bwd(
    grad_h: Tensor,
    grad_hebb: Tensor | None,
    grad_elig: Tensor | None,
    w: Tensor,
    alpha: Tensor,
    h0: Tensor | None,
    h: Tensor,
    hebb_ckpt: Tensor,
    elig_ckpt: Tensor,
    mod: Tensor,
    clamp_mask: Tensor | None,
    eta: Tensor | None,
    mod_w: Tensor | None,
    fanout_w: Tensor | None,
    fanout_b: Tensor | None,
    rule: str,
    clip: float,
    ckpt_every: int,
    variant: int = 0,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns ``(du, dw, dalpha, dh0, dhebb0, delig0, deta, dmod_w, dmod_b, dfanout_w,
    dfanout_b)``; empty tensors where the rule has no such input."""
    T, B, N = h.shape
    K = ckpt_every
    retro = rule == "retro"
    modulated = rule in _MODULATED
    n_mod, consts = _variant_args(rule, N, variant)
    fan = fanout_w is not None
    kind = _alpha_kind(alpha)
    per_sample = _per_sample(w, alpha, eta)
    h = h.contiguous()
    grad_h = grad_h.contiguous()

    def c(x: Tensor | None) -> Tensor:
        return h if x is None else x.contiguous()

    def empty() -> Tensor:
        return h.new_empty(0)

    # Workspace: the traces of one chunk, and one vector per sample for the adjoint of h.
    ws_h = h.new_empty(B, K, N, N)
    ws_e = h.new_empty(B, K, N, N) if retro else ws_h
    carry = h.new_empty(B, N)
    dH = h.new_empty(B, N, N)
    dE = h.new_empty(B, N, N) if retro else empty()
    dA = h.new_empty(B, N, N) if kind == 2 else h.new_empty(B, N)
    du = h.new_empty(T, B, N)
    da = h.new_empty(T, B, N)
    dh0 = h.new_empty(B, N)
    deta = h.new_empty(B)
    dmw = h.new_empty(B, N) if modulated else empty()
    dmb = h.new_empty(B) if modulated else empty()
    dfw = h.new_empty(B, N) if fan else empty()
    dfb = h.new_empty(B, N) if fan else empty()
    clamp = h if clamp_mask is None else clamp_mask.contiguous().view(torch.uint8)
    _launch(
        "bwd", (B,),
        grad_h, c(grad_hebb), c(grad_elig), c(w), c(alpha), h, c(h0), hebb_ckpt.contiguous(),
        c(elig_ckpt if retro else None), c(mod if modulated else None), clamp, c(eta), c(mod_w),
        c(fanout_w), c(fanout_b),
        ws_h, ws_e, carry,
        dH, dE if retro else dH, dA, du, da, dh0, deta, dmw if modulated else dh0,
        dmb if modulated else deta, dfw if fan else dh0, dfb if fan else dh0,
        T, B, N, K, float(clip), n_mod,
        RULE=RULE_IDS[rule], ALPHA_KIND=kind, HAS_H0=h0 is not None,
        HAS_GHEBB=grad_hebb is not None, HAS_GELIG=grad_elig is not None,
        HAS_CLAMP=clamp_mask is not None, HAS_FANOUT=fan, BLOCK_N=block_n(N), **consts,
        **per_sample,
    )  # fmt: skip
    # The weight gradient is a GEMM over all steps (and samples, when w is shared):
    # dw = sum_t h_{t-1}^T da_t.
    first = h0 if h0 is not None else h.new_zeros(1, B, N)[0]
    h_prev = torch.cat([first.reshape(1, B, N), h[:-1]], dim=0)
    if per_sample["W_PER_SAMPLE"]:
        dw = torch.bmm(h_prev.permute(1, 2, 0), da.transpose(0, 1))
    else:
        dw = h_prev.reshape(T * B, N).transpose(0, 1) @ da.reshape(T * B, N)
    # The kernel's per-sample partial sums are a per-sample alpha's and eta's gradients.
    if per_sample["A_PER_SAMPLE"]:
        dalpha = (dA.sum(1) if kind == 0 else dA).reshape(alpha.shape)
    else:
        dalpha = dA.sum(0) if kind else dA.sum()
    if consts["USES_ETA"]:
        deta = deta if per_sample["ETA_PER_SAMPLE"] else deta.sum()
    return (
        du, dw, dalpha, dh0, dH, dE, deta if consts["USES_ETA"] else empty(),
        dmw.sum(0) if modulated else empty(), dmb.sum() if modulated else empty(),
        dfw.sum(0) if fan else empty(), dfb.sum(0) if fan else empty(),
    )  # fmt: skip


def _setup_context(ctx, inputs, output):
    (u, w, alpha, h0, hebb0, elig0, clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b,
     rule, clip, ckpt_every, *variant) = inputs  # fmt: skip
    h, _, _, hebb_ckpt, elig_ckpt, mod = output
    ctx.save_for_backward(
        w, alpha, h0, h, hebb_ckpt, elig_ckpt, mod, clamp_mask, eta, mod_w, fanout_w, fanout_b
    )
    ctx.rule, ctx.clip, ctx.ckpt_every = rule, clip, ckpt_every
    ctx.variant = variant[0] if variant else 0
    ctx.given = differentiable(inputs)


def _backward(ctx, grad_h, grad_hebb, grad_elig, _g_hebb_ckpt, _g_elig_ckpt, _g_mod):
    (w, alpha, h0, h, hebb_ckpt, elig_ckpt, mod, clamp_mask, eta, mod_w, fanout_w,
     fanout_b) = ctx.saved_tensors  # fmt: skip
    retro = ctx.rule == "retro"
    if grad_h is None:
        grad_h = torch.zeros_like(h)
    (du, dw, dalpha, dh0, dhebb0, delig0, deta, dmod_w, dmod_b, dfanout_w,
     dfanout_b) = plastic_rnn_triton_bwd(
        grad_h, grad_hebb, grad_elig if retro else None, w, alpha, h0, h, hebb_ckpt, elig_ckpt,
        mod, clamp_mask, eta, mod_w, fanout_w, fanout_b, ctx.rule, ctx.clip, ctx.ckpt_every,
        ctx.variant,
    )  # fmt: skip
    return keep_given(ctx.given, (
        du, dw, dalpha, dh0, dhebb0, delig0, None, deta, dmod_w, dmod_b, dfanout_w, dfanout_b,
    ))  # fmt: skip


_func.register_autograd(plastic_rnn_triton_fwd, _backward, _setup_context)
