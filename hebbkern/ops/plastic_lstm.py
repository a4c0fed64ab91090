"""``hebbkern.plastic_lstm``: the plastic LSTM layer over a whole sequence (docs/SPEC.md section 2).

The kernels are the ``torch.ops.hebbkern.plastic_lstm_fwd`` / ``plastic_lstm_bwd`` custom ops
(C++ schemas in csrc/ops.cpp). This file gives them fake kernels and autograd, so they run under
``torch.compile(fullgraph=True)``, and wraps them in the public function.

On CUDA tensors (backend ``"triton"``) the same arguments go to
``hebbkern::plastic_lstm_triton_fwd`` (hebbkern/triton/plastic_lstm_ops.py: cuBLAS GEMMs and fused
Triton step kernels, same outputs).

Memory: the forward saves the trace only every ``K ~ sqrt(T)`` steps (plus the ``[T, B, N]``
activations and the ``[T, B, 4N]`` gates); the backward recomputes the traces inside each chunk.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _extension, _func, backends
from .. import reference as _reference
from .._guards import check_materialisable
from .._validation import MODULATED_RULES, check_plastic_lstm_args
from .._variants import LSTM_POSTS, check_lstm_variants, uses_eta
from ..types import PlasticLSTMState
from .plastic_rnn import checkpoint_count, checkpoint_interval

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def lstm_variant_code(clip_mode: str, post: str) -> int:
    """The kernels' ``variant`` argument for the options of docs/SPEC.md section 2.1 (checked):
    ``1 * (clip_mode == "read") + 2 * post`` with ``post`` numbered as ``LSTM_POSTS``
    (csrc/plastic_lstm.h decodes it; 0 is section 2)."""
    return int(clip_mode == "read") + 2 * LSTM_POSTS.index(post)


def gates_width(N: int, variant: int) -> int:
    """Width of the saved gates per sample: ``4N``, or ``5N`` with post ``"drive"`` (the drive)."""
    return 5 * N if variant >> 1 == LSTM_POSTS.index("drive") else 4 * N


def lstm_autograd(bwd):
    """``(backward, setup_context)`` of a plastic_lstm forward op whose backward op is ``bwd``:
    the C++ op's here, the Triton op's in hebbkern/triton/plastic_lstm_ops.py (same arguments and
    outputs)."""

    def setup_context(ctx, inputs, output):
        (u, wh, alpha, h0, c0, hebb0, elig0, eta, mod_w, mod_b, fanout_w, fanout_b, rule, clip,
         ckpt_every, *variant) = inputs  # fmt: skip
        h, c, gates, _, _, hebb_ckpt, elig_ckpt, mod = output
        ctx.save_for_backward(
            wh, alpha, h0, c0, h, c, gates, hebb_ckpt, elig_ckpt, mod, eta, mod_w, mod_b,
            fanout_w, fanout_b,
        )  # fmt: skip
        ctx.rule, ctx.clip, ctx.ckpt_every = rule, clip, ckpt_every
        ctx.variant, ctx.n_variant = (variant[0] if variant else 0), len(variant)
        ctx.given = tuple(x is not None for x in (h0, c0, hebb0, elig0))

    def backward(ctx, grad_h, grad_c, _g_gates, grad_hebb, grad_elig, _g_ck, _g_eck, _g_mod):
        (wh, alpha, h0, c0, h, c, gates, hebb_ckpt, elig_ckpt, mod, eta, mod_w, mod_b, fanout_w,
         fanout_b) = ctx.saved_tensors  # fmt: skip
        retro = ctx.rule == "retro"
        (du, dwh, dalpha, dh0, dc0, dhebb0, delig0, deta, dmod_w, dmod_b, dfanout_w,
         dfanout_b) = bwd(
            grad_h, grad_c, grad_hebb, grad_elig if retro else None, wh, alpha, h0, c0, h, c,
            gates, hebb_ckpt, elig_ckpt, mod, eta, mod_w, mod_b, fanout_w, fanout_b, ctx.rule,
            ctx.clip, ctx.ckpt_every, ctx.variant,
        )  # fmt: skip
        has_h0, has_c0, has_hebb0, has_elig0 = ctx.given

        def keep(grad, given):
            return grad if given else None

        return (
            du, dwh, dalpha, keep(dh0, has_h0), keep(dc0, has_c0), keep(dhebb0, has_hebb0),
            keep(delig0, has_elig0), keep(deta, eta is not None), keep(dmod_w, mod_w is not None),
            keep(dmod_b, mod_b is not None), keep(dfanout_w, fanout_w is not None),
            keep(dfanout_b, fanout_b is not None), None, None, None,
        ) + (None,) * ctx.n_variant  # fmt: skip

    return backward, setup_context


if _extension.available():

    @torch.library.register_fake("hebbkern::plastic_lstm_fwd")
    def _plastic_lstm_fwd_fake(
        u, wh, alpha, h0, c0, hebb0, elig0, eta, mod_w, mod_b, fanout_w, fanout_b, rule, clip,
        ckpt_every, variant=0,
    ):  # fmt: skip
        T, B, G = u.shape
        N = G // 4
        C = checkpoint_count(T, ckpt_every)
        retro = rule == "retro"
        return (
            u.new_empty(T, B, N),
            u.new_empty(T, B, N),
            u.new_empty(T, B, gates_width(N, variant)),
            u.new_empty(B, N, N),
            u.new_empty(B, N, N) if retro else u.new_empty(0),
            u.new_empty(C, B, N, N),
            u.new_empty(C, B, N, N) if retro else u.new_empty(0),
            u.new_empty(T, B) if rule in MODULATED_RULES else u.new_empty(0),
        )

    @torch.library.register_fake("hebbkern::plastic_lstm_bwd")
    def _plastic_lstm_bwd_fake(
        grad_h, grad_c, grad_hebb, grad_elig, wh, alpha, h0, c0, h, c, gates, hebb_ckpt,
        elig_ckpt, mod, eta, mod_w, mod_b, fanout_w, fanout_b, rule, clip, ckpt_every, variant=0,
    ):  # fmt: skip
        T, B, N = h.shape
        modulated = rule in MODULATED_RULES

        def empty():
            return h.new_empty(0)

        return (
            h.new_empty(T, B, 4 * N),
            h.new_empty(N, 4 * N),
            alpha.new_empty(alpha.shape),  # contiguous, like the kernel's; never alpha's strides
            h.new_empty(B, N),
            h.new_empty(B, N),
            h.new_empty(B, N, N),
            h.new_empty(B, N, N) if rule == "retro" else empty(),
            h.new_empty(()) if uses_eta(rule, 0) else empty(),
            h.new_empty(N) if modulated else empty(),
            h.new_empty(()) if modulated else empty(),
            h.new_empty(N) if fanout_w is not None else empty(),
            h.new_empty(N) if fanout_w is not None else empty(),
        )

    _backward, _setup_context = lstm_autograd(torch.ops.hebbkern.plastic_lstm_bwd)
    _func.register_autograd("hebbkern::plastic_lstm_fwd", _backward, _setup_context)


def _triton_fwd():
    """The Triton op (GEMMs + fused per-step kernels), imported on first use only, so that
    ``import hebbkern`` never imports triton (TRITON_INTERPRET must be set before its first
    import)."""
    from ..triton.plastic_lstm_ops import plastic_lstm_triton_fwd

    return plastic_lstm_triton_fwd


def _to(x: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    return None if x is None else x.to(dtype)


def plastic_lstm(
    u: Tensor,
    wh: Tensor,
    alpha: Tensor,
    *,
    rule: str = "neuromod",
    eta: float | Tensor | None = None,
    mod_w: Tensor | None = None,
    mod_b: float | Tensor | None = None,
    fanout_w: Tensor | None = None,
    fanout_b: Tensor | None = None,
    clip: float = 2.0,
    h0: Tensor | None = None,
    c0: Tensor | None = None,
    hebb0: Tensor | None = None,
    elig0: Tensor | None = None,
    backend: str | None = None,
    clip_mode: str = "update",
    post: str = "candidate",
) -> tuple[Tensor, PlasticLSTMState]:
    r"""Runs a plastic LSTM layer over a sequence (docs/SPEC.md section 2, Backpropamine).

    For t = 1..T, with gates in ``torch.nn.LSTM``'s order (i, f, g, o) and the trace ``H``
    indexed ``[b, pre, post]``::

        [i, f, g~, o] = u_t + h_{t-1} wh                  (i, f, o: sigmoid)
        g_t = tanh(g~ + h_{t-1} (alpha * H_{t-1}))        (only the candidate path is plastic)
        c_t = f * c_{t-1} + i * g_t;   h_t = o * tanh(c_t)
        H_t = rule(H_{t-1}, pre = h_{t-1}, post = g_t)    (modulator from h_t)

    Args:
        u: gate inputs ``[T, B, 4N]`` (the input projection ``x_t W_x + b``, already computed).
        wh: recurrent weights ``[N, 4N]``, indexed ``[pre, post]``; its candidate block
            ``wh[:, 2N:3N]`` is the fixed part ``w`` of the plastic connections.
        alpha: plasticity coefficients: ``[N, N]``, ``[N]`` or ``[1, 1, N]`` (per post-synaptic
            neuron, the paper's model; ``[1, 1, N]`` is its code's shape) or 0-dim or ``[1]``.
        rule: ``"neuromod"`` (the paper's simple neuromodulation, default), ``"retro"``
            (retroactive), ``"hebb"`` (plain plastic, decaying), ``"oja"`` or ``"clip"``.
        eta: trace (``"retro"``: eligibility) rate; not used by ``"neuromod"``.
        mod_w, mod_b: neuromodulator ``m_t = tanh(h_t . mod_w + mod_b)``; ``mod_w`` ``[N]`` or
            ``[1, N]`` (``nn.Linear(N, 1).weight``), ``mod_b`` float, 0-dim or ``[1]``.
        fanout_w, fanout_b: optional per-neuron fan-out of the modulator: ``fanout_w`` ``[N]``
            or ``[N, 1]`` (``nn.Linear(1, N).weight``), ``fanout_b`` ``[N]``.
        clip: bound of the clipped rules (2 in the paper's language model).
        h0, c0: initial output and cell ``[B, N]``; hebb0, elig0: initial traces ``[B, N, N]``
            or unbatched ``[N, N]`` (broadcast to the batch).
        backend: ``None`` (automatic: ``"cpu"`` on CPU tensors, ``"triton"`` on CUDA tensors),
            ``"reference"``, ``"cpu"`` or ``"triton"`` (cuBLAS GEMMs for the dense parts, Triton
            kernels fusing the plastic term, the gates and the trace update per step; CPU tensors
            only under the Triton interpreter).
        clip_mode: ``"update"`` (default: the clipped rules clamp the trace) or ``"read"`` (the
            trace grows unclamped; the clamp applies where it is read; docs/SPEC.md section 2.1).
        post: the post-synaptic term of the trace product: ``"candidate"`` (``g_t``, default),
            ``"drive"``, ``"cell"`` or ``"hidden"`` (docs/SPEC.md section 2.1).

        Rule ``"gated"`` (docs/SPEC.md section 1.1), ``clip_mode`` and ``post`` run on every
        backend.

    Returns:
        ``(h, state)``: the outputs ``[T, B, N]`` and :class:`~hebbkern.PlasticLSTMState`
        ``(h, c, hebb, elig)`` after the last step. Differentiable with respect to every tensor
        argument.
    """
    a = check_plastic_lstm_args(
        u, wh, alpha, rule=rule, eta=eta, mod_w=mod_w, mod_b=mod_b, fanout_w=fanout_w,
        fanout_b=fanout_b, clip=clip, h0=h0, c0=c0, hebb0=hebb0, elig0=elig0,
    )  # fmt: skip
    clip_mode, post = check_lstm_variants(rule, clip_mode, post)
    check_materialisable(
        u=a.u, wh=a.wh, alpha=a.alpha, h0=a.h0, c0=a.c0, hebb0=a.hebb0, elig0=a.elig0
    )
    name = backends.resolve(backend, u.device, family="plastic_lstm")
    if name == "reference":
        return _reference.plastic_lstm(
            u, wh, alpha, rule=rule, eta=eta, mod_w=mod_w, mod_b=mod_b, fanout_w=fanout_w,
            fanout_b=fanout_b, clip=clip, h0=h0, c0=c0, hebb0=hebb0, elig0=elig0,
            clip_mode=clip_mode, post=post,
        )  # fmt: skip

    # The C++ and Triton kernels compute in float32 or float64; half inputs run in float32 (state
    # and accumulation) and come back in their own dtype.
    io_dtype = u.dtype
    dt = torch.float32 if io_dtype in _LOW_PRECISION else io_dtype
    T = a.shape[0]
    tensors = (a.u, a.wh, a.alpha, a.h0, a.c0, a.hebb0, a.elig0, a.eta, a.mod_w, a.mod_b,
               a.fanout_w, a.fanout_b)  # fmt: skip
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    # Without autograd no backward reads the checkpoints: keep only the first one.
    ckpt_every = checkpoint_interval(T, needs_grad)
    fwd = _triton_fwd() if name == "triton" else torch.ops.hebbkern.plastic_lstm_fwd
    if torch._C._are_functorch_transforms_active():  # torch.func: hebbkern/_func.py
        fwd = _func.transformable(fwd)
    h, c, _, hebb, elig, _, _, _ = fwd(
        a.u.to(dt), a.wh.to(dt), a.alpha.to(dt), _to(a.h0, dt), _to(a.c0, dt), _to(a.hebb0, dt),
        _to(a.elig0, dt), _to(a.eta, dt), _to(a.mod_w, dt), _to(a.mod_b, dt),
        _to(a.fanout_w, dt), _to(a.fanout_b, dt), rule, a.clip, ckpt_every,
        lstm_variant_code(clip_mode, post),
    )  # fmt: skip
    h, c = h.to(io_dtype), c.to(io_dtype)
    elig_out = elig.to(io_dtype) if rule == "retro" else None
    return h, PlasticLSTMState(h[-1], c[-1], hebb.to(io_dtype), elig_out)
