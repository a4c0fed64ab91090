"""Custom ops ``hebbkern::plastic_step_triton_fwd`` / ``plastic_step_triton_bwd`` over the Triton
kernels of hebbkern/triton/plastic_step.py (``torch.library.triton_op``: the fake kernel is derived
from the body and ``torch.compile(fullgraph=True)`` keeps the kernels in its graph), with autograd.

Same arguments and outputs as the C++ ops ``hebbkern::plastic_step_fwd`` / ``plastic_step_bwd``,
so ``hebbkern.ops.plastic_step`` dispatches to either. One configuration per width (no autotuning:
an agent calls the step once per environment step, and the autotuner's launcher costs more CPU
time per call than the kernel takes at B = 64, N = 128).

Imported lazily (first use of ``backend="triton"``), never by ``import hebbkern``.
"""

# No ``from __future__ import annotations``: triton_op reads the annotations to build the schema.
import torch
import triton
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

from .plastic_rnn import RULE_IDS, interpreting
from .plastic_rnn_ops import INTERPRETER_BLOCK_I, block_n, configs_for
from .plastic_step import (
    plastic_step_bwd_kernel,
    plastic_step_fwd_kernel,
    plastic_step_reduce_kernel,
)

# Tiles of the batch-sum kernel (rows x columns of dw / dalpha); the interpreter's are small so
# that odd N cross tile boundaries.
REDUCE_TILE = (32, 32)
INTERPRETER_REDUCE_TILE = (8, 8)


def _launch(kernel, grid, *args, **kwargs) -> None:
    if interpreting():
        # The interpreter's kernels cannot be traced by wrap_triton: under fake tensors (opcheck,
        # tracing) the outputs' shapes are all there is to compute.
        if any(isinstance(a, Tensor) and is_fake(a) for a in args):
            return
        kernel[grid](*args, **kwargs)
    else:
        torch.library.wrap_triton(kernel)[grid](*args, **kwargs)


def _row_config(N) -> dict:
    """BLOCK_N, BLOCK_I and warps of the per-sample kernels: plastic_rnn's largest shipped tile
    (2048 elements on 8 warps, checked spill-free), or the interpreter's 8-row blocks."""
    BN = block_n(N)
    if interpreting():
        return {"BLOCK_N": BN, "BLOCK_I": min(BN, INTERPRETER_BLOCK_I)}
    cfg = configs_for(BN)[-1]
    return {"BLOCK_N": BN, **cfg.kwargs, "num_warps": cfg.num_warps}


def alpha_kind(alpha: Tensor) -> int:
    """0 scalar, 1 per post neuron [N], 2 per connection [N, N], 3 per sample [B, N, N]."""
    return alpha.dim()


@torch.library.triton_op("hebbkern::plastic_step_triton_fwd", mutates_args=())
def plastic_step_triton_fwd(
    u: Tensor,
    h: Tensor,
    hebb: Tensor,
    elig: Tensor | None,
    w: Tensor,
    alpha: Tensor,
    clamp_mask: Tensor | None,
    eta: Tensor | None,
    mod_w: Tensor | None,
    mod_b: Tensor | None,
    fanout_w: Tensor | None,
    fanout_b: Tensor | None,
    rule: str,
    clip: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Returns ``(h_new, hebb_new, elig_new, mod)`` as the C++ op does (empty ``elig_new`` except
    for rule retro, empty ``mod`` for the rules without a neuromodulator)."""
    B, N = u.shape
    retro = rule == "retro"
    modulated = rule in ("neuromod", "retro")
    u = u.contiguous()

    def c(x: Tensor | None) -> Tensor:
        return u if x is None else x.contiguous()

    h_new = u.new_empty(B, N)
    hebb_new = u.new_empty(B, N, N)
    elig_new = u.new_empty(B, N, N) if retro else u.new_empty(0)
    mod = u.new_empty(B) if modulated else u.new_empty(0)
    clamp = u if clamp_mask is None else clamp_mask.contiguous().view(torch.uint8)
    _launch(
        plastic_step_fwd_kernel, (B,),
        u, c(h), c(hebb), c(elig), c(w), c(alpha), clamp, c(eta), c(mod_w), c(mod_b),
        c(fanout_w), c(fanout_b),
        h_new, hebb_new, elig_new if retro else hebb_new, mod if modulated else h_new,
        N, float(clip),
        RULE=RULE_IDS[rule], ALPHA_KIND=alpha_kind(alpha), W_PER_SAMPLE=w.dim() == 3,
        HAS_CLAMP=clamp_mask is not None, HAS_FANOUT=fanout_w is not None, **_row_config(N),
    )  # fmt: skip
    return h_new, hebb_new, elig_new, mod


@torch.library.triton_op("hebbkern::plastic_step_triton_bwd", mutates_args=())
def plastic_step_triton_bwd(
    grad_h: Tensor,
    grad_hebb: Tensor | None,
    grad_elig: Tensor | None,
    u: Tensor,
    h: Tensor,
    hebb: Tensor,
    elig: Tensor | None,
    w: Tensor,
    alpha: Tensor,
    h_new: Tensor,
    mod: Tensor,
    clamp_mask: Tensor | None,
    eta: Tensor | None,
    mod_w: Tensor | None,
    mod_b: Tensor | None,
    fanout_w: Tensor | None,
    fanout_b: Tensor | None,
    rule: str,
    clip: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns ``(du, dh, dhebb, delig, dw, dalpha, deta, dmod_w, dmod_b, dfanout_w,
    dfanout_b)`` as the C++ op does; empty tensors where the rule has no such input."""
    B, N = u.shape
    retro = rule == "retro"
    modulated = rule in ("neuromod", "retro")
    fan = fanout_w is not None
    kind = alpha_kind(alpha)
    w_ps = w.dim() == 3
    grad_h = grad_h.contiguous()

    def c(x: Tensor | None) -> Tensor:
        return grad_h if x is None else x.contiguous()

    def empty() -> Tensor:
        return u.new_empty(0)

    du = u.new_empty(B, N)
    dh = u.new_empty(B, N)
    dhebb = u.new_empty(B, N, N)
    delig = u.new_empty(B, N, N) if retro else empty()
    dw = u.new_empty(w.shape)
    dalpha = u.new_empty(alpha.shape)
    # Per-sample terms of the shared parameters' gradients (summed by the reduce kernel).
    da = u.new_empty(B, N)
    dAv = u.new_empty(B, N) if kind < 2 else da
    deta_b = u.new_empty(B) if rule != "neuromod" else da
    dmw_b = u.new_empty(B, N) if modulated else da
    dmb_b = u.new_empty(B) if modulated else da
    dfw_b = u.new_empty(B, N) if fan else da
    dfb_b = u.new_empty(B, N) if fan else da
    deta = u.new_empty(()) if rule != "neuromod" else empty()
    dmw = u.new_empty(N) if modulated else empty()
    dmb = u.new_empty(()) if modulated else empty()
    dfw = u.new_empty(N) if fan else empty()
    dfb = u.new_empty(N) if fan else empty()
    clamp = u if clamp_mask is None else clamp_mask.contiguous().view(torch.uint8)
    consts = {"RULE": RULE_IDS[rule], "ALPHA_KIND": kind, "W_PER_SAMPLE": w_ps}
    _launch(
        plastic_step_bwd_kernel, (B,),
        grad_h, c(grad_hebb), c(grad_elig), c(h), c(hebb), c(elig), c(w), c(alpha), c(h_new),
        c(mod), clamp, c(eta), c(mod_w), c(fanout_w), c(fanout_b),
        du, dh, dhebb, delig if retro else dhebb, da, dw, dalpha, dAv, deta_b, dmw_b, dmb_b,
        dfw_b, dfb_b,
        N, float(clip),
        **consts, HAS_GHEBB=grad_hebb is not None, HAS_GELIG=grad_elig is not None,
        HAS_CLAMP=clamp_mask is not None, HAS_FANOUT=fan, **_row_config(N),
    )  # fmt: skip
    bi, bj = INTERPRETER_REDUCE_TILE if interpreting() else REDUCE_TILE
    _launch(
        plastic_step_reduce_kernel, (triton.cdiv(N, bi), triton.cdiv(N, bj)),
        c(h), c(hebb), da, dAv, deta_b, dmw_b, dmb_b, dfw_b, dfb_b,
        dw, dalpha, deta if rule != "neuromod" else da, dmw if modulated else da,
        dmb if modulated else da, dfw if fan else da, dfb if fan else da,
        B, N,
        **consts, HAS_FANOUT=fan, BLOCK_I=bi, BLOCK_J=bj, BLOCK_V=block_n(N),
    )  # fmt: skip
    return du, dh, dhebb, delig, dw, dalpha, deta, dmw, dmb, dfw, dfb


def _setup_context(ctx, inputs, output):
    (u, h, hebb, elig, w, alpha, clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b, rule,
     clip) = inputs  # fmt: skip
    h_new, _, _, mod = output
    ctx.save_for_backward(
        u, h, hebb, elig, w, alpha, h_new, mod, clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b
    )
    ctx.rule, ctx.clip = rule, clip


def _backward(ctx, grad_h, grad_hebb, grad_elig, _g_mod):
    (u, h, hebb, elig, w, alpha, h_new, mod, clamp_mask, eta, mod_w, mod_b, fanout_w,
     fanout_b) = ctx.saved_tensors  # fmt: skip
    retro = ctx.rule == "retro"
    if grad_h is None:
        grad_h = torch.zeros_like(h_new)
    (du, dh, dhebb, delig, dw, dalpha, deta, dmod_w, dmod_b, dfanout_w,
     dfanout_b) = plastic_step_triton_bwd(
        grad_h, grad_hebb, grad_elig if retro else None, u, h, hebb, elig, w, alpha, h_new, mod,
        clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b, ctx.rule, ctx.clip,
    )  # fmt: skip

    def keep(grad, given):
        return grad if given else None

    return (
        du, dh, dhebb, keep(delig, retro), dw, dalpha, None, keep(deta, eta is not None),
        keep(dmod_w, mod_w is not None), keep(dmod_b, mod_b is not None),
        keep(dfanout_w, fanout_w is not None), keep(dfanout_b, fanout_b is not None), None, None,
    )  # fmt: skip


plastic_step_triton_fwd.register_autograd(_backward, setup_context=_setup_context)
