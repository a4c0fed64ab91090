"""``hebbkern.plastic_step``: one step of the plastic recurrent layer (docs/SPEC.md section 1).

For loops that cannot hand a whole sequence to one call (an agent stepped once per environment
step). The kernels are the ``torch.ops.hebbkern.plastic_step_fwd`` / ``plastic_step_bwd`` custom
ops (C++ schemas in csrc/ops.cpp); this file gives them fake kernels and autograd, so they run
under ``torch.compile(fullgraph=True)``, and wraps them in the public function. On CUDA tensors
the Triton ops of hebbkern/triton/plastic_step_ops.py (same arguments) run instead.

Memory: autograd keeps the step's inputs (the trace ``hebb`` it was given, which the caller holds
anyway) and ``h_new``; no ``[B, N, N]`` temporary is saved.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _extension, _func, backends
from .. import reference as _reference
from .._layout import check_layout
from .._layout import swap_square as _t
from .._step_checks import check_plastic_step_call
from .._validation import MODULATED_RULES
from .._variants import uses_eta
from ..types import PlasticState
from ._glue import LOW_PRECISION, differentiable, keep_given, to, triton_fwd

# The autograd formula of the fused ops (the C++ ops here, the Triton ops of
# hebbkern/triton/plastic_step_ops.py: same arguments and outputs). Eager CPU calls with grad use
# the same formula written in C++ (csrc/cpu/plastic_step_autograd.cpp): a change here goes there
# too (tests/test_plastic_step_autograd.py compares the two bit for bit).


def _setup_context(ctx, inputs, output):
    (u, h, hebb, elig, w, alpha, clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b, rule,
     clip, variant) = inputs  # fmt: skip
    h_new, _, _, mod = output
    ctx.save_for_backward(
        u, h, hebb, elig, w, alpha, h_new, mod, clamp_mask, eta, mod_w, mod_b, fanout_w,
        fanout_b,
    )  # fmt: skip
    ctx.rule, ctx.clip = rule, clip
    ctx.variant = variant
    # elig's gradient is the kernel's for rule retro only (an empty tensor otherwise).
    ctx.given = differentiable(inputs[:3]) + (rule == "retro",) + differentiable(inputs[4:])


def _make_backward(bwd_op):
    def backward(ctx, grad_h, grad_hebb, grad_elig, _g_mod):
        return _backward(bwd_op, ctx, grad_h, grad_hebb, grad_elig)

    return backward


def _backward(bwd_op, ctx, grad_h, grad_hebb, grad_elig):
    (u, h, hebb, elig, w, alpha, h_new, mod, clamp_mask, eta, mod_w, mod_b, fanout_w,
     fanout_b) = ctx.saved_tensors  # fmt: skip
    (du, dh, dhebb, delig, dw, dalpha, deta, dmod_w, dmod_b, dfanout_w,
     dfanout_b) = bwd_op(
        grad_h, grad_hebb, grad_elig if ctx.given[3] else None, u, h, hebb, elig, w, alpha,
        h_new, mod, clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b, ctx.rule, ctx.clip,
        ctx.variant,
    )  # fmt: skip
    return keep_given(ctx.given, (
        du, dh, dhebb, delig, dw, dalpha, None, deta, dmod_w, dmod_b, dfanout_w, dfanout_b,
    ))  # fmt: skip


if _extension.available():

    def _plastic_step_fwd_fake(
        u, h, hebb, elig, w, alpha, clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b, rule, clip,
        variant=0,
    ):  # fmt: skip
        B, N = u.shape
        return (
            u.new_empty(B, N),
            u.new_empty(B, N, N),
            u.new_empty(B, N, N) if rule == "retro" else u.new_empty(0),
            u.new_empty(B) if rule in MODULATED_RULES else u.new_empty(0),
        )

    def _plastic_step_bwd_fake(
        grad_h, grad_hebb, grad_elig, u, h, hebb, elig, w, alpha, h_new, mod, clamp_mask, eta,
        mod_w, mod_b, fanout_w, fanout_b, rule, clip, variant=0,
    ):  # fmt: skip
        B, N = u.shape
        modulated = rule in MODULATED_RULES

        def empty():
            return u.new_empty(0)

        return (
            u.new_empty(B, N),
            u.new_empty(B, N),
            u.new_empty(B, N, N),
            u.new_empty(B, N, N) if rule == "retro" else empty(),
            w.new_empty(w.shape),  # contiguous, like the kernel's; never w's or alpha's strides
            alpha.new_empty(alpha.shape),
            u.new_empty(()) if uses_eta(rule, variant) else empty(),
            u.new_empty(N) if modulated else empty(),
            u.new_empty(()) if modulated else empty(),
            u.new_empty(N) if fanout_w is not None else empty(),
            u.new_empty(N) if fanout_w is not None else empty(),
        )

    # The pre_post ops and their post_pre twins (same schemas; the kernels read w, alpha and the
    # traces stored [post, pre]): one fake kernel and one autograd formula for both.
    for _suffix in ("", "_post_pre"):
        torch.library.register_fake(f"hebbkern::plastic_step_fwd{_suffix}")(_plastic_step_fwd_fake)
        torch.library.register_fake(f"hebbkern::plastic_step_bwd{_suffix}")(_plastic_step_bwd_fake)
        _func.register_autograd(
            f"hebbkern::plastic_step_fwd{_suffix}",
            _make_backward(getattr(torch.ops.hebbkern, f"plastic_step_bwd{_suffix}")),
            _setup_context,
        )

    def _eager_step(*inputs):
        """The forward op's arguments through the C++ autograd node (eager CPU calls with grad)."""
        return torch.ops.hebbkern._plastic_step_eager.default(*inputs, False)

    def _eager_step_post_pre(*inputs):
        """_eager_step for weights and traces stored [post, pre] (no partial built per call)."""
        return torch.ops.hebbkern._plastic_step_eager.default(*inputs, True)


# plastic_rnn's keywords written out again: the public signature is what help() and IDEs show.
def plastic_step(
    u: Tensor,
    h: Tensor,
    hebb: Tensor,
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
    elig: Tensor | None = None,
    clamp_mask: Tensor | None = None,
    backend: str | None = None,
    layout: str = "pre_post",
    activation: str = "tanh",
    mod_squash: str = "tanh",
    soft_clip: bool = False,
    n_modulated: int | None = None,
) -> PlasticState:
    r"""One step of the plastic recurrent layer (docs/SPEC.md section 1), fused.

    With the trace ``H`` indexed ``[b, pre, post]``::

        h_new = tanh(u + h (w + alpha * hebb))    (clamped neurons: h_new = u)
        hebb_new = rule(hebb, h, h_new)

    Chained over T steps under autograd it gives the values and gradients of
    :func:`hebbkern.plastic_rnn` over the same T steps.

    Args:
        u: input drive ``[B, N]`` (already projected).
        h: previous activity ``[B, N]``.
        hebb: previous trace ``[B, N, N]``, or unbatched ``[N, N]`` broadcast to the batch (the
            gradient comes back ``[N, N]``).
        w: fixed weights ``[N, N]``, or ``[B, N, N]`` per sample (a population of independent
            networks).
        alpha: plasticity coefficients ``[N, N]``, ``[N]`` or ``[1, 1, N]`` (per post-synaptic
            neuron), 0-dim or ``[1]`` (shared), or ``[B, N, N]`` per sample.
        rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip: as in :func:`hebbkern.plastic_rnn`
            (``mod_w`` also ``[1, N]``, ``fanout_w`` also ``[N, 1]``: ``nn.Linear`` weights).
            ``clip`` defaults to 1.0; Backpropamine's simple maze and plastic LSTM use 2.0.
        elig: previous eligibility trace ``[B, N, N]`` or ``[N, N]`` (rule ``"retro"`` only;
            zeros when omitted).
        clamp_mask: ``[B, N]`` bool mask of neurons clamped to their input.
        backend: ``None`` (automatic: ``"cpu"`` on CPU tensors, ``"triton"`` on CUDA tensors),
            ``"reference"``, ``"cpu"`` or ``"triton"``.
        layout: how ``w``, ``alpha`` (when ``[N, N]`` or ``[B, N, N]``), ``hebb``, ``elig`` and
            the returned traces are stored: ``"pre_post"`` (default, ``[.., pre, post]`` as
            above) or ``"post_pre"`` (``[.., post, pre]``, as Backpropamine's batched maze code
            and ``nn.Linear`` store weights). The math is the same: a ``"post_pre"`` call equals
            the ``"pre_post"`` call on the transposed tensors, with transposed traces returned.
            The CPU kernels read ``"post_pre"`` where it lies (no transposed copy of the trace;
            a per-neuron or scalar ``alpha`` is expanded to ``[N, N]``, a copy of ``alpha``
            only); the eager reference and any backend without a native kernel transpose at
            the op boundary.
        activation, mod_squash, soft_clip, n_modulated: the papers' variants (docs/SPEC.md
            section 1.1), as in :func:`hebbkern.plastic_rnn`, on every backend.

    Returns:
        :class:`~hebbkern.PlasticState` ``(h_new, hebb_new, elig_new)``; ``elig_new`` is ``None``
        except for rule ``"retro"``. Differentiable with respect to every floating tensor argument.
    """
    post_pre = check_layout(layout) == "post_pre"
    # The arguments, the variants and the materialisable guard; a fast path for the canonical
    # forms (hebbkern/_step_checks.py, benchmarks/NOTES.md P8).
    a, v = check_plastic_step_call(
        u, h, hebb, w, alpha, rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip, elig,
        clamp_mask, activation, mod_squash, soft_clip, n_modulated,
    )  # fmt: skip
    name = backends.resolve(backend, u.device, family="plastic_step")
    if post_pre and name != "cpu":
        # The native post_pre kernels are the CPU ones ("cpu" means CPU tensors); elsewhere
        # (the reference, Triton on CUDA or under the interpreter) transpose at the op boundary.
        st = plastic_step(
            u, h, _t(hebb), _t(w), _t(alpha), rule=rule, eta=eta, mod_w=mod_w, mod_b=mod_b,
            fanout_w=fanout_w, fanout_b=fanout_b, clip=clip, elig=_t(elig), clamp_mask=clamp_mask,
            backend=name, activation=activation, mod_squash=mod_squash, soft_clip=soft_clip,
            n_modulated=n_modulated,
        )  # fmt: skip
        return PlasticState(st.h, _t(st.hebb), _t(st.elig))
    if name == "reference":
        return _reference.plastic_step(
            u, a.h, a.hebb, a.w, a.alpha, rule=rule, eta=a.eta, mod_w=a.mod_w, mod_b=a.mod_b,
            fanout_w=a.fanout_w, fanout_b=a.fanout_b, clip=clip, elig=a.elig, clamp_mask=clamp_mask,
            activation=activation, mod_squash=mod_squash, soft_clip=soft_clip,
            n_modulated=n_modulated,
        )  # fmt: skip
    io_dtype = u.dtype
    # The checked arguments (a.*): the papers' shapes arrive there as views of the canonical ones.
    hebb, elig = a.hebb, a.elig
    if rule == "retro" and elig is None:
        elig = hebb.new_zeros(hebb.shape)
    if name == "triton":
        fwd = triton_fwd("plastic_step")
    else:
        fwd = (
            torch.ops.hebbkern.plastic_step_fwd_post_pre
            if post_pre
            else torch.ops.hebbkern.plastic_step_fwd
        )
    # v.code: the variant code (0: docs/SPEC.md section 1 exactly).
    if torch._C._are_functorch_transforms_active():
        # torch.func transforms: the registered formula through hebbkern/_func.py's Function.
        fwd = _func.transformable(fwd)
    elif name == "cpu" and torch.is_grad_enabled() and not torch.compiler.is_compiling():
        # Eager calls with grad: the C++ autograd node of csrc/cpu/plastic_step_autograd.cpp (the
        # formula of _setup_context/_backward without Python per step: benchmarks/NOTES.md P7).
        # torch.compile and opcheck go through the registered autograd.
        fwd = _eager_step_post_pre if post_pre else _eager_step
    if io_dtype not in LOW_PRECISION:  # no conversions: each .to() costs a dispatch per step
        h_new, hebb_new, elig_new, _ = fwd(
            u, a.h, hebb, elig, a.w, a.alpha, a.clamp_mask, a.eta, a.mod_w, a.mod_b, a.fanout_w,
            a.fanout_b, rule, a.clip, v.code,
        )  # fmt: skip
        return PlasticState(h_new, hebb_new, elig_new if rule == "retro" else None)
    dt = torch.float32
    h_new, hebb_new, elig_new, _ = fwd(
        u.to(dt), a.h.to(dt), hebb.to(dt), to(elig, dt), a.w.to(dt), a.alpha.to(dt), a.clamp_mask,
        to(a.eta, dt), to(a.mod_w, dt), to(a.mod_b, dt), to(a.fanout_w, dt),
        to(a.fanout_b, dt), rule, a.clip, v.code,
    )  # fmt: skip
    return PlasticState(
        h_new.to(io_dtype),
        hebb_new.to(io_dtype),
        elig_new.to(io_dtype) if rule == "retro" else None,
    )
