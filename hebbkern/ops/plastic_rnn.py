"""``hebbkern.plastic_rnn``: the plastic recurrent layer over a whole sequence (SPEC.md section 1).

The kernels are the ``torch.ops.hebbkern.plastic_rnn_fwd`` / ``plastic_rnn_bwd`` custom ops (C++
schemas in csrc/ops.cpp). This file gives them fake kernels and autograd, so they run under
``torch.compile(fullgraph=True)``, and wraps them in the public function.

Memory: the forward saves the trace only every ``K ~ sqrt(T)`` steps; the backward recomputes the
traces inside each chunk. Autograd keeps O(T/K) ``[B, N, N]`` tensors instead of several per step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import _extension, _func, backends
from .. import reference as _reference
from .._guards import check_materialisable
from .._layout import check_layout, swap_square
from .._validation import MODULATED_RULES, check_plastic_rnn_args
from .._variants import check_with_variants, uses_eta
from ..types import PlasticState
from ._glue import compute_dtype, differentiable, keep_given, to, triton_fwd

# With a symbolic T (torch.export or torch.compile with a dynamic sequence length) the interval
# must not be computed from T: sqrt(T) would specialise T to the example's value. A fixed interval
# keeps T symbolic (sqrt-optimal at T = 256); without autograd one checkpoint (an interval >= T).
SYMBOLIC_CKPT_EVERY = 16
_ONE_CHECKPOINT = 2**31 - 1


def checkpoint_interval(T: int | torch.SymInt, needs_grad: bool = True) -> int:
    """Steps between saved traces: sqrt(T) balances saved checkpoints against recomputed steps;
    without autograd no backward reads them, so only the first is kept."""
    if isinstance(T, torch.SymInt):
        # torch.export: one checkpoint, so that their count is the constant 1 and no guard
        # on T appears (an exported graph is mostly run for inference; its backward, if any,
        # keeps the traces of the whole sequence). torch.compile: a fixed interval; the guards
        # on the checkpoint count only cause a recompile.
        exporting = torch.compiler.is_exporting()
        return SYMBOLIC_CKPT_EVERY if needs_grad and not exporting else _ONE_CHECKPOINT
    if not needs_grad:
        return T
    return max(1, math.ceil(math.sqrt(T)))


def checkpoint_count(T: int | torch.SymInt, ckpt_every: int) -> int | torch.SymInt:
    """The kernels' number of saved traces, ``ceil(T / min(ckpt_every, T))``. With one checkpoint
    requested it is the constant 1 (for any T < 2**31), not an expression in a symbolic T that
    the output's contiguity checks would turn into guards on T."""
    if ckpt_every >= _ONE_CHECKPOINT:
        return 1
    return (T + ckpt_every - 1) // ckpt_every


def eta_shape(eta: Tensor) -> tuple:
    """The shape of the raw ops' ``deta``: ``[B]`` for one eta per sample, else 0-dim (a shared
    eta, also a one-element ``[1]`` one: csrc/plastic_rnn_args.cpp's rule)."""
    return tuple(eta.shape) if eta.dim() == 1 and eta.numel() != 1 else ()


if _extension.available():

    @torch.library.register_fake("hebbkern::plastic_rnn_fwd")
    def _plastic_rnn_fwd_fake(
        u, w, alpha, h0, hebb0, elig0, clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b, rule,
        clip, ckpt_every, variant=0,
    ):  # fmt: skip
        T, B, N = u.shape
        C = checkpoint_count(T, ckpt_every)
        retro = rule == "retro"
        return (
            u.new_empty(T, B, N),
            u.new_empty(B, N, N),
            u.new_empty(B, N, N) if retro else u.new_empty(0),
            u.new_empty(C, B, N, N),
            u.new_empty(C, B, N, N) if retro else u.new_empty(0),
            u.new_empty(T, B) if rule in MODULATED_RULES else u.new_empty(0),
        )

    @torch.library.register_fake("hebbkern::plastic_rnn_bwd")
    def _plastic_rnn_bwd_fake(
        grad_h, grad_hebb, grad_elig, u, w, alpha, h0, h, hebb_ckpt, elig_ckpt, mod, clamp_mask,
        eta, mod_w, mod_b, fanout_w, fanout_b, rule, clip, ckpt_every, variant=0,
    ):  # fmt: skip
        T, B, N = u.shape
        retro = rule == "retro"
        modulated = rule in MODULATED_RULES

        def empty():
            return u.new_empty(0)

        return (
            u.new_empty(T, B, N),
            u.new_empty(w.shape),  # [N, N], or [B, N, N] per sample
            alpha.new_empty(alpha.shape),  # contiguous, like the kernel's; never alpha's strides
            u.new_empty(B, N),
            u.new_empty(B, N, N),
            u.new_empty(B, N, N) if retro else empty(),
            u.new_empty(eta_shape(eta)) if uses_eta(rule, variant) else empty(),
            u.new_empty(N) if modulated else empty(),
            u.new_empty(()) if modulated else empty(),
            u.new_empty(N) if fanout_w is not None else empty(),
            u.new_empty(N) if fanout_w is not None else empty(),
        )

    def _setup_context(ctx, inputs, output):
        (u, w, alpha, h0, hebb0, elig0, clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b,
         rule, clip, ckpt_every, variant) = inputs  # fmt: skip
        h, _, _, hebb_ckpt, elig_ckpt, mod = output
        ctx.save_for_backward(
            u, w, alpha, h0, h, hebb_ckpt, elig_ckpt, mod, clamp_mask, eta, mod_w, mod_b,
            fanout_w, fanout_b,
        )  # fmt: skip
        ctx.rule, ctx.clip, ctx.ckpt_every, ctx.variant = rule, clip, ckpt_every, variant
        ctx.given = differentiable(inputs)

    def _backward(ctx, grad_h, grad_hebb, grad_elig, _g_hebb_ckpt, _g_elig_ckpt, _g_mod):
        (u, w, alpha, h0, h, hebb_ckpt, elig_ckpt, mod, clamp_mask, eta, mod_w, mod_b,
         fanout_w, fanout_b) = ctx.saved_tensors  # fmt: skip
        retro = ctx.rule == "retro"
        (du, dw, dalpha, dh0, dhebb0, delig0, deta, dmod_w, dmod_b, dfanout_w,
         dfanout_b) = torch.ops.hebbkern.plastic_rnn_bwd(
            grad_h, grad_hebb, grad_elig if retro else None, u, w, alpha, h0, h, hebb_ckpt,
            elig_ckpt, mod, clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b, ctx.rule, ctx.clip,
            ctx.ckpt_every, ctx.variant,
        )  # fmt: skip
        return keep_given(ctx.given, (
            du, dw, dalpha, dh0, dhebb0, delig0, None, deta, dmod_w, dmod_b, dfanout_w, dfanout_b,
        ))  # fmt: skip

    _func.register_autograd("hebbkern::plastic_rnn_fwd", _backward, _setup_context)


def plastic_rnn(
    u: Tensor,
    w: Tensor,
    alpha: Tensor,
    *,
    rule: str = "hebb",
    eta: float | Tensor | None = None,
    mod_w: Tensor | None = None,
    mod_b: float | Tensor | None = None,
    fanout_w: Tensor | None = None,
    fanout_b: Tensor | None = None,
    clip: float = 1.0,
    h0: Tensor | None = None,
    hebb0: Tensor | None = None,
    elig0: Tensor | None = None,
    clamp_mask: Tensor | None = None,
    backend: str | None = None,
    layout: str = "pre_post",
    activation: str = "tanh",
    mod_squash: str = "tanh",
    soft_clip: bool = False,
    n_modulated: int | None = None,
) -> tuple[Tensor, PlasticState]:
    r"""Runs a plastic recurrent layer over a sequence (docs/SPEC.md section 1).

    For t = 1..T, with the trace ``H`` indexed ``[b, pre, post]``::

        h_t = tanh(u_t + h_{t-1} (w + alpha * H_{t-1}))    (clamped neurons: h_t = u_t)
        H_t = rule(H_{t-1}, h_{t-1}, h_t)

    Args:
        u: input drive ``[T, B, N]`` (already projected).
        w: fixed weights ``[N, N]``, indexed ``[pre, post]``, or ``[B, N, N]``: one network per
            sample (a population: sample b runs ``w[b]``; ``dw`` comes back ``[B, N, N]``).
        alpha: plasticity coefficients: ``[N, N]`` (per connection), ``[N]`` or ``[1, 1, N]``
            (per post-synaptic neuron; the latter is the plastic LSTM code's) or 0-dim or ``[1]``
            (one shared alpha, the papers' "homo"/"yoked" alpha), or ``[B, N, N]`` per sample.
            With ``w`` ``[B, N, N]``: ``[B, N, N]``, ``[B, N]`` (per sample and post neuron),
            ``[B]`` (one per sample) or one shared scalar (a shared ``[N, N]`` or ``[N]`` alpha
            must be expanded to ``[B, ...]``). Its gradient has the shape given.
        rule: ``"hebb"`` (decaying Hebb), ``"oja"``, ``"clip"`` (additive, clipped), ``"neuromod"``
            (neuromodulated, clipped) or ``"retro"`` (retroactive neuromodulation through an
            eligibility trace).
        eta: trace (or, for ``"retro"``, eligibility) rate: float or 0-dim tensor, or ``[B]``
            (one per sample, with shared or per-sample ``w``). Not used by ``"neuromod"``.
        mod_w, mod_b: neuromodulator ``m_t = tanh(h_t . mod_w + mod_b)``; ``mod_w`` ``[N]`` or
            ``[1, N]`` (``nn.Linear(N, 1).weight``), ``mod_b`` float, 0-dim or ``[1]``
            (``nn.Linear(N, 1).bias``).
        fanout_w, fanout_b: optional per-neuron fan-out of the modulator: ``fanout_w`` ``[N]`` or
            ``[N, 1]`` (``nn.Linear(1, N).weight``), ``fanout_b`` ``[N]``.
        clip: bound ``c`` of the clipped rules (``> 0``). The default 1.0 is the maze agents';
            **Backpropamine's simple maze and plastic LSTM clip at 2.0: pass** ``clip=2.0`` **to
            match them.**
        h0, hebb0, elig0: initial activity ``[B, N]``, trace and eligibility ``[B, N, N]``
            (zeros when omitted); the traces may be unbatched ``[N, N]`` (one trace, as the
            differentiable-plasticity code keeps it), broadcast to the batch (the gradient comes
            back ``[N, N]``).
        clamp_mask: ``[T, B, N]`` bool mask of neurons clamped to their input.
        backend: ``None`` (automatic: ``"cpu"`` on CPU tensors; on CUDA tensors the faster of
            ``"cuda"`` and ``"triton"`` for the shape, see :mod:`hebbkern.backends`),
            ``"reference"``, ``"cpu"``, ``"cuda"`` (the CUDA C++ kernels) or ``"triton"``.
        layout: ``"pre_post"`` (default: ``w``, ``alpha`` ``[N, N]``, ``hebb0``, ``elig0`` and the
            returned traces indexed ``[.., pre, post]``) or ``"post_pre"`` (``[.., post, pre]``,
            as Backpropamine's batched code stores them). The ``plastic_rnn`` kernels (every
            backend) read ``"pre_post"`` only: ``"post_pre"`` is transposed at the op boundary
            (``w``, ``alpha`` and the initial traces copied once per call, not per step).
        activation: the neurons' nonlinearity, ``"tanh"`` (default), ``"relu"``, ``"selu"``,
            ``"sigmoid"`` or ``"identity"`` (SPEC.md section 1.1).
        mod_squash: the neuromodulator's squashing, ``"tanh"`` (default), ``"sigmoid"`` or
            ``"identity"``. With rule ``"gated"`` (``H_t = (1 - m_t) H_{t-1} + m_t P_t``) use
            ``"sigmoid"``.
        soft_clip: the maze code's soft clamp in place of the hard clip (rules ``"clip"``,
            ``"neuromod"``, ``"retro"``).
        n_modulated: rule ``"neuromod"`` only: the post-synaptic neurons ``j >= n_modulated``
            follow the clipped rule with ``eta`` instead of the modulator (the papers'
            half-modulated networks: ``N // 2``). ``None``: all modulated.

    Returns:
        ``(h, state)``: the activity ``[T, B, N]`` and :class:`~hebbkern.PlasticState` ``(h, hebb,
        elig)`` after the last step. Differentiable with respect to every floating tensor argument
        except the (boolean) clamp mask.
    """
    if check_layout(layout) == "post_pre":
        # A population's [B, N] alpha is per post neuron, not a square matrix to transpose.
        per_neuron = isinstance(w, Tensor) and w.dim() == 3 and isinstance(alpha, Tensor)
        per_neuron = per_neuron and alpha.dim() == 2
        h, st = plastic_rnn(
            u, swap_square(w), alpha if per_neuron else swap_square(alpha), rule=rule, eta=eta,
            mod_w=mod_w, mod_b=mod_b, fanout_w=fanout_w, fanout_b=fanout_b, clip=clip, h0=h0,
            hebb0=swap_square(hebb0), elig0=swap_square(elig0), clamp_mask=clamp_mask,
            backend=backend, activation=activation, mod_squash=mod_squash, soft_clip=soft_clip,
            n_modulated=n_modulated,
        )  # fmt: skip
        return h, PlasticState(st.h, swap_square(st.hebb), swap_square(st.elig))
    a, v = check_with_variants(
        check_plastic_rnn_args, u, w, alpha, rule=rule, eta=eta, mod_w=mod_w, mod_b=mod_b,
        fanout_w=fanout_w, fanout_b=fanout_b, clip=clip, h0=h0, hebb0=hebb0, elig0=elig0,
        clamp_mask=clamp_mask, activation=activation, mod_squash=mod_squash, soft_clip=soft_clip,
        n_modulated=n_modulated,
    )  # fmt: skip
    check_materialisable(
        u=a.u, w=a.w, alpha=a.alpha, h0=a.h0, hebb0=a.hebb0, elig0=a.elig0, clamp_mask=a.clamp_mask
    )
    N = u.shape[-1] if u.dim() == 3 else 0
    name = backends.resolve(
        backend,
        u.device,
        family="plastic_rnn",
        gpu_choice=lambda available: backends.plastic_rnn_gpu_backend(N, u.dtype, available),
    )
    if name == "reference":
        return _reference.plastic_rnn(
            u, w, alpha, rule=rule, eta=eta, mod_w=mod_w, mod_b=mod_b, fanout_w=fanout_w,
            fanout_b=fanout_b, clip=clip, h0=h0, hebb0=hebb0, elig0=elig0, clamp_mask=clamp_mask,
            activation=activation, mod_squash=mod_squash, soft_clip=soft_clip,
            n_modulated=n_modulated,
        )  # fmt: skip

    # The C++ (CPU and CUDA) and Triton kernels compute in float32 or float64; half inputs run with
    # float32 state and accumulation and come back in their own dtype. "cpu" and "cuda" are the
    # CPU and CUDA implementations of the same torch.library op.
    io_dtype = u.dtype
    dt = compute_dtype(io_dtype)
    T = a.shape[0]
    # Without autograd no backward will read the checkpoints: keep only the first one.
    tensors = (a.u, a.w, a.alpha, a.h0, a.hebb0, a.elig0, a.eta, a.mod_w, a.mod_b, a.fanout_w,
               a.fanout_b)  # fmt: skip
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    ckpt_every = checkpoint_interval(T, needs_grad)
    args = (
        a.u.to(dt), a.w.to(dt), a.alpha.to(dt), to(a.h0, dt), to(a.hebb0, dt),
        to(a.elig0, dt), a.clamp_mask, to(a.eta, dt), to(a.mod_w, dt), to(a.mod_b, dt),
        to(a.fanout_w, dt), to(a.fanout_b, dt), rule, a.clip, ckpt_every,
    )  # fmt: skip
    fwd = triton_fwd("plastic_rnn") if name == "triton" else torch.ops.hebbkern.plastic_rnn_fwd
    if torch._C._are_functorch_transforms_active():  # torch.func: hebbkern/_func.py
        fwd = _func.transformable(fwd)
    h, hebb, elig, _, _, _ = fwd(*args, v.code)
    h = h.to(io_dtype)
    state = PlasticState(h[-1], hebb.to(io_dtype), elig.to(io_dtype) if rule == "retro" else None)
    return h, state
