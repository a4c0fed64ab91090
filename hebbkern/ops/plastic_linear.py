"""``hebbkern.plastic_linear``: the plastic read-out ``z = x (w + alpha * H)`` (SPEC.md section 3).

The kernels are the ``torch.ops.hebbkern.plastic_linear_fwd`` / ``plastic_linear_bwd`` custom ops
(C++ schemas in csrc/ops.cpp); this file gives them fake kernels and autograd and wraps them in
the public function. On CUDA tensors the Triton ops of hebbkern/triton/plastic_linear_ops.py (same
arguments) run instead. With a per-sample trace, ``w + alpha * H[b]`` is never built: autograd saves
only the inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _extension, _func, backends
from .. import reference as _reference
from .._guards import check_materialisable
from .._layout import check_layout, swap
from .._validation import check_plastic_linear_args
from ._glue import compute_dtype, triton_fwd

if _extension.available():

    @torch.library.register_fake("hebbkern::plastic_linear_fwd")
    def _plastic_linear_fwd_fake(x, w, alpha, hebb):
        return x.new_empty(x.shape[0], w.shape[1])

    @torch.library.register_fake("hebbkern::plastic_linear_bwd")
    def _plastic_linear_bwd_fake(grad_z, x, w, alpha, hebb):
        # Contiguous, like the kernel's outputs; never the inputs' strides.
        return tuple(t.new_empty(t.shape) for t in (x, w, alpha, hebb))

    def _setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _backward(ctx, grad_z):
        x, w, alpha, hebb = ctx.saved_tensors
        return tuple(torch.ops.hebbkern.plastic_linear_bwd(grad_z, x, w, alpha, hebb))

    _func.register_autograd("hebbkern::plastic_linear_fwd", _backward, _setup_context)


def plastic_linear(
    x: Tensor,
    w: Tensor,
    alpha: Tensor,
    hebb: Tensor,
    *,
    backend: str | None = None,
    layout: str = "pre_post",
) -> Tensor:
    r"""Plastic linear read-out ``z = x (w + alpha * hebb)`` (docs/SPEC.md section 3), fused.

    Args:
        x: input ``[B, M]``.
        w: fixed weights ``[M, K]`` (indexed ``[pre, post]``).
        alpha: plasticity coefficients ``[M, K]``, ``[K]`` (per output), or 0-dim or ``[1]`` (one
            shared alpha, the Omniglot read-out's "yoked" alpha).
        hebb: trace ``[M, K]`` shared by the batch (DHP Softmax) or ``[B, M, K]`` per sample.
        backend: ``None`` (automatic: ``"cpu"`` on CPU tensors, ``"triton"`` on CUDA tensors),
            ``"reference"``, ``"cpu"`` or ``"triton"``.
        layout: ``"pre_post"`` (default, ``w``, ``alpha`` ``[M, K]`` and ``hebb`` indexed
            ``[.., pre, post]``) or ``"post_pre"`` (``[K, M]`` and ``[.., K, M]``, as
            ``nn.Linear.weight``). The kernels read ``"pre_post"`` only: ``"post_pre"`` is
            transposed at the op boundary (a copy of ``w``, ``alpha`` and ``hebb`` per call).

    Returns:
        ``z`` ``[B, K]``; differentiable with respect to all four inputs.
    """
    if check_layout(layout) == "post_pre":
        return plastic_linear(x, swap(w), swap(alpha), swap(hebb), backend=backend)
    x, w, alpha, hebb = check_plastic_linear_args(x, w, alpha, hebb)
    check_materialisable(x=x, w=w, alpha=alpha, hebb=hebb)
    name = backends.resolve(backend, x.device, family="plastic_linear")
    if name == "reference":
        return _reference.plastic_linear(x, w, alpha, hebb)
    io_dtype = x.dtype
    dt = compute_dtype(io_dtype)
    fwd = (
        triton_fwd("plastic_linear") if name == "triton" else torch.ops.hebbkern.plastic_linear_fwd
    )
    if torch._C._are_functorch_transforms_active():  # torch.func: hebbkern/_func.py
        fwd = _func.transformable(fwd)
    z = fwd(x.to(dt), w.to(dt), alpha.to(dt), hebb.to(dt))
    return z.to(io_dtype)
