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
import math

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

from .. import _func
from ..ops.plastic_step import _make_backward, _setup_context
from .plastic_rnn import RULE_IDS, interpreting
from .plastic_rnn_ops import INTERPRETER_BLOCK_I, _variant_args, block_n, tile_configs
from .plastic_step import plastic_step_bwd_kernel, plastic_step_fwd_kernel


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
    cfg = tile_configs(BN)[-1]
    return {"BLOCK_N": BN, **cfg.kwargs, "num_warps": cfg.num_warps}


def alpha_kind(alpha: Tensor) -> int:
    """0 scalar, 1 per post neuron [N], 2 per connection [N, N], 3 per sample [B, N, N]."""
    return alpha.dim()


# The backward's ticket counters (plastic_step.py, ``_ticket``), int32, per (device, stream), zero
# between launches: each launch sets every counter it used back to 0. One set per stream, so that
# launches on two streams never share a counter; launches on one stream run one after the other.
_COUNTERS: dict = {}


def ticket_counters(like: Tensor, n: int) -> Tensor:
    """``n`` zeroed counters for a backward launch on ``like``'s device and current stream. While
    a CUDA graph is captured, and under fake tensors (torch.compile's tracing), fresh zeroed ones
    instead (allocated on the stream, no host sync): a cached tensor first allocated during a
    capture would hold its zeros only once the graph replays."""
    if is_fake(like) or (like.is_cuda and torch.cuda.is_current_stream_capturing()):
        return torch.zeros(n, dtype=torch.int32, device=like.device)
    stream = torch.cuda.current_stream(like.device).cuda_stream if like.is_cuda else None
    key = (like.device, stream)
    if key not in _COUNTERS or _COUNTERS[key].numel() < n:
        _COUNTERS[key] = torch.zeros(max(n, 64), dtype=torch.int32, device=like.device)
    return _COUNTERS[key]


def batch_groups(B: int) -> tuple[int, int]:
    """(G, number of groups): the backward sums the batch in groups of G = ceil(sqrt(B))
    consecutive samples, then the groups (plastic_step.py)."""
    B = int(B)
    G = math.isqrt(B - 1) + 1 if B > 0 else 1
    return G, -(-B // G)


# The op's schema is read from these annotations, so each op's arguments are written out.
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
    variant: int = 0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Returns ``(h_new, hebb_new, elig_new, mod)`` as the C++ op does (empty ``elig_new`` except
    for rule retro, empty ``mod`` for the rules without a neuromodulator)."""
    B, N = u.shape
    retro = rule == "retro"
    modulated = rule in ("neuromod", "retro", "gated")
    n_mod, consts = _variant_args(rule, N, variant)
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
        N, float(clip), n_mod,
        RULE=RULE_IDS[rule], ALPHA_KIND=alpha_kind(alpha), W_PER_SAMPLE=w.dim() == 3,
        HAS_CLAMP=clamp_mask is not None, HAS_FANOUT=fanout_w is not None, **consts,
        **_row_config(N),
    )  # fmt: skip
    return h_new, hebb_new, elig_new, mod


# The op's schema is read from these annotations, so each op's arguments are written out.
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
    variant: int = 0,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns ``(du, dh, dhebb, delig, dw, dalpha, deta, dmod_w, dmod_b, dfanout_w,
    dfanout_b)`` as the C++ op does; empty tensors where the rule has no such input. One launch
    (plastic_step.py): the shared parameters' batch sums are taken by its last programs."""
    B, N = u.shape
    retro = rule == "retro"
    modulated = rule in ("neuromod", "retro", "gated")
    fan = fanout_w is not None
    kind = alpha_kind(alpha)
    n_mod, consts = _variant_args(rule, N, variant)
    uses_eta = consts["USES_ETA"]
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
    deta = u.new_empty(()) if uses_eta else empty()
    dmw = u.new_empty(N) if modulated else empty()
    dmb = u.new_empty(()) if modulated else empty()
    dfw = u.new_empty(N) if fan else empty()
    dfb = u.new_empty(N) if fan else empty()
    if B == 0:  # no program to run: the batch sums are zeros
        for t in (deta, dmw, dmb, dfw, dfb) + ((dw,) if w.dim() == 2 else ()) + (
            (dalpha,) if kind < 3 else ()
        ):  # fmt: skip
            t.zero_()
        return du, dh, dhebb, delig, dw, dalpha, deta, dmw, dmb, dfw, dfb
    # Scratch: the per-sample terms of the shared parameters' gradients (summed in the kernel).
    da = u.new_empty(B, N)
    dAv = u.new_empty(B, N) if kind < 2 else da
    deta_b = u.new_empty(B) if uses_eta else da
    dmw_b = u.new_empty(B, N) if modulated else da
    dmb_b = u.new_empty(B) if modulated else da
    dfw_b = u.new_empty(B, N) if fan else da
    dfb_b = u.new_empty(B, N) if fan else da
    G, n_groups = batch_groups(B)
    pw = u.new_empty(n_groups, N, N) if w.dim() == 2 else da  # the groups' partials
    pA = u.new_empty(n_groups, N, N) if kind == 2 else da
    clamp = u if clamp_mask is None else clamp_mask.contiguous().view(torch.uint8)
    _launch(
        plastic_step_bwd_kernel, (B,),
        grad_h, c(grad_hebb), c(grad_elig), c(h), c(hebb), c(elig), c(w), c(alpha), c(h_new),
        c(mod), clamp, c(eta), c(mod_w), c(fanout_w), c(fanout_b),
        du, dh, dhebb, delig if retro else dhebb, da, dw, dalpha, dAv, deta_b, dmw_b, dmb_b,
        dfw_b, dfb_b,
        ticket_counters(u, n_groups + 1), pw, pA, deta if uses_eta else da,
        dmw if modulated else da, dmb if modulated else da, dfw if fan else da,
        dfb if fan else da,
        B, N, G, n_groups, float(clip), n_mod,
        RULE=RULE_IDS[rule], ALPHA_KIND=kind, W_PER_SAMPLE=w.dim() == 3,
        HAS_GHEBB=grad_hebb is not None, HAS_GELIG=grad_elig is not None,
        HAS_CLAMP=clamp_mask is not None, HAS_FANOUT=fan, **consts, **_row_config(N),
    )  # fmt: skip
    return du, dh, dhebb, delig, dw, dalpha, deta, dmw, dmb, dfw, dfb


# The autograd formula of the C++ ops (same arguments and outputs).
_func.register_autograd(
    plastic_step_triton_fwd, _make_backward(plastic_step_triton_bwd), _setup_context
)
