"""``hebbkern.trace_update``: one Hebbian trace update, for custom plastic layers.

The kernels are the ``torch.ops.hebbkern.trace_update_fwd`` / ``trace_update_bwd`` custom ops
(C++ schemas in csrc/ops.cpp; the element-wise rule math is the shared
csrc/include/hebbkern/plastic_rules.h); this file gives them fake kernels and autograd and wraps
them in the public function.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _extension, _func, backends
from .. import reference as _reference
from .._guards import check_materialisable
from .._validation import check_trace_update_args
from ._glue import compute_dtype

if _extension.available():

    @torch.library.register_fake("hebbkern::trace_update_fwd")
    def _trace_update_fwd_fake(trace, pre, post, eta, rule, clip):
        return trace.new_empty(trace.shape)  # contiguous, like the kernel's; never trace's strides

    @torch.library.register_fake("hebbkern::trace_update_bwd")
    def _trace_update_bwd_fake(grad, trace, pre, post, eta, rule, clip):
        # Contiguous, like the kernel's outputs; never the inputs' strides.
        return tuple(t.new_empty(t.shape) for t in (trace, pre, post, eta))

    def _setup_context(ctx, inputs, output):
        trace, pre, post, eta, rule, clip = inputs
        ctx.save_for_backward(trace, pre, post, eta)
        ctx.rule, ctx.clip = rule, clip

    def _backward(ctx, grad):
        trace, pre, post, eta = ctx.saved_tensors
        dtrace, dpre, dpost, deta = torch.ops.hebbkern.trace_update_bwd(
            grad, trace, pre, post, eta, ctx.rule, ctx.clip
        )
        return dtrace, dpre, dpost, deta, None, None

    _func.register_autograd("hebbkern::trace_update_fwd", _backward, _setup_context)


def trace_update(
    trace: Tensor,
    pre: Tensor,
    post: Tensor,
    *,
    rule: str,
    eta: float | Tensor,
    clip: float | None = None,
    backend: str | None = None,
) -> Tensor:
    r"""One Hebbian trace update, fused: returns the new trace.

    Per sample (``trace`` ``[B, M, K]``), with ``e = eta[b, j]``, ``x = pre[b, i]``,
    ``y = post[b, j]``::

        hebb:  (1 - e) * H + e * x * y        (decaying Hebb)
        oja:   H + e * y * (x - y * H)
        add:   H + e * x * y
        clip:  clamp(H + e * x * y, -clip, clip)

    A shared trace ``[M, K]`` takes the increment summed over the batch (for ``hebb`` the decay
    applies once, so ``eta`` must be a scalar there).

    Args:
        trace: ``[B, M, K]`` per sample or ``[M, K]`` shared.
        pre: pre-synaptic activity ``[B, M]``.
        post: post-synaptic activity ``[B, K]``.
        rule: ``"hebb"``, ``"oja"``, ``"add"`` or ``"clip"``.
        eta: rate or modulation: a float, a 0-dim tensor, ``[B]`` (per sample) or ``[B, K]`` (per
            sample and post-synaptic neuron).
        clip: bound of rule ``"clip"`` (required there, ``None`` otherwise).
        backend: ``None`` (automatic: ``"cpu"`` on CPU tensors, ``"cuda"`` on CUDA tensors),
            ``"reference"``, ``"cpu"`` or ``"cuda"`` (the CUDA C++ kernels).

    Differentiable with respect to ``trace``, ``pre``, ``post`` and a tensor ``eta``.
    """
    a = check_trace_update_args(trace, pre, post, rule=rule, eta=eta, clip=clip)
    check_materialisable(trace=a.trace, pre=a.pre, post=a.post, eta=a.eta)
    if backends.resolve(backend, trace.device, family="trace_update") == "reference":
        return _reference.trace_update(trace, pre, post, rule=rule, eta=eta, clip=clip)
    io_dtype = trace.dtype
    dt = compute_dtype(io_dtype)
    fwd = torch.ops.hebbkern.trace_update_fwd
    if torch._C._are_functorch_transforms_active():  # torch.func: hebbkern/_func.py
        fwd = _func.transformable(fwd)
    out = fwd(trace.to(dt), pre.to(dt), post.to(dt), a.eta.to(dt), rule, a.clip)
    return out.to(io_dtype)
