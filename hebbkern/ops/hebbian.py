"""``hebbkern.hebbian_update`` and ``hebbkern.hebbian_loss``: local learning rules of shared weights
(docs/SPEC.md section 4) for linear and conv2d layers.

The kernels are the ``torch.ops.hebbkern.hebbian_update_linear`` / ``hebbian_update_conv2d``
custom ops (C++ schemas in csrc/ops.cpp, CPU kernel in csrc/cpu/hebbian.cpp). They never build the
unfolded patch matrix: the plain term is the convolution's weight gradient with ``y`` as the output
gradient, the instar and Oja corrections are per-filter reductions of ``y`` and ``y^2``, fused.
This file gives the ops fake kernels and autograd (so they run under ``torch.compile(fullgraph=
True)``) and wraps them in the public function.

The update is bilinear in ``(x, y)`` plus ``w`` times a reduction of ``y``, so its backward is
made of the same convolutions: with ``G`` the gradient of ``dw``, ``dx`` is the convolution's input
gradient with weight ``G`` and output gradient ``y``, ``dy`` is ``conv2d(x, G)`` minus the
correction's derivative, and ``dw`` is ``-G * sum(y)`` (instar) or ``-G * sum(y^2)`` (Oja).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _extension, _func, backends
from .. import reference as _reference
from .._guards import check_materialisable
from .._validation import check_hebbian_args, check_hebbian_loss_args
from ._glue import compute_dtype


def _channel_view(t: Tensor, ndim: int) -> Tensor:
    """A per-output-channel vector ``[N]`` shaped to broadcast against ``[B, N, ...]``."""
    return t.reshape((1, -1) + (1,) * (ndim - 2))


def _y_sums(y: Tensor, rule: str) -> Tensor:
    """Per output channel: sum of y (instar) or of y^2 (Oja) over the batch and positions."""
    dims = [0] + list(range(2, y.dim()))
    return (y.square() if rule == "oja" else y).sum(dims)


def _correction_backward(grad: Tensor, w: Tensor, y: Tensor, rule: str, dy: Tensor | None):
    """Adds the gradient of ``-w * s(y)`` to ``dy`` and returns ``(dy, dw)``."""
    if rule == "hebb":
        return dy, None
    c = _channel_view((grad * w).flatten(1).sum(1), y.dim())  # <G[n], w[n]>
    if dy is not None:
        dy = dy - (2 * y * c if rule == "oja" else c.expand_as(y))
    dw = -grad * _y_sums(y, rule).reshape((-1,) + (1,) * (w.dim() - 1))
    return dy, dw


if _extension.available():

    @torch.library.register_fake("hebbkern::hebbian_update_linear")
    def _linear_fake(w, x, y, rule):
        return w.new_empty(w.shape)

    @torch.library.register_fake("hebbkern::hebbian_update_conv2d")
    def _conv2d_fake(w, x, y, rule, stride, padding, dilation, groups):
        return w.new_empty(w.shape)

    def _linear_setup(ctx, inputs, output):
        w, x, y, rule = inputs
        ctx.save_for_backward(w, x, y)
        ctx.rule = rule

    def _linear_backward(ctx, grad):
        w, x, y = ctx.saved_tensors
        need_w, need_x, need_y = ctx.needs_input_grad[:3]
        dx = y @ grad if need_x else None
        dy = x @ grad.mT if need_y else None
        dy, dw = _correction_backward(grad, w, y, ctx.rule, dy)
        return (dw if need_w else None), dx, dy, None

    def _conv2d_setup(ctx, inputs, output):
        w, x, y, rule, stride, padding, dilation, groups = inputs
        ctx.save_for_backward(w, x, y)
        ctx.rule, ctx.conv = rule, (stride, padding, dilation, groups)

    def _conv2d_backward(ctx, grad):
        w, x, y = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        need_w, need_x, need_y = ctx.needs_input_grad[:3]
        dx = dy = None
        if need_x:
            dx = torch.ops.aten.convolution_backward(
                y, x, grad, None, stride, padding, dilation, False, [0, 0], groups,
                [True, False, False],
            )[0]  # fmt: skip
        if need_y:
            dy = F.conv2d(x, grad, None, stride, padding, dilation, groups)
        dy, dw = _correction_backward(grad, w, y, ctx.rule, dy)
        return (dw if need_w else None), dx, dy, None, None, None, None, None

    # The backward is ATen ops: differentiable again (a second derivative exists).
    for _name, _bwd, _setup in (
        ("hebbian_update_linear", _linear_backward, _linear_setup),
        ("hebbian_update_conv2d", _conv2d_backward, _conv2d_setup),
    ):
        _func.register_autograd(f"hebbkern::{_name}", _bwd, _setup, differentiable_backward=True)


def _has_cuda_kernel() -> bool:
    """True in a CUDA build of the extension (csrc/ops.cpp registers the ops for CUDA)."""
    return _extension.available() and torch._C._dispatch_has_kernel_for_dispatch_key(
        "hebbkern::hebbian_update_conv2d", "CUDA"
    )


def _use_fused(backend: str | None, device: torch.device) -> bool:
    if device.type == "cuda" and backend is None and _has_cuda_kernel():
        # No GPU backend name exists yet; the C++ op (cuBLAS / cuDNN + ATen reductions) serves
        # CUDA tensors by default unless the caller forces "reference" (argument or use_backend).
        return getattr(backends._local, "default", None) is None
    return backends.resolve(backend, device) != "reference"


def hebbian_update(
    w: Tensor,
    x: Tensor,
    y: Tensor,
    *,
    rule: str = "oja",
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    backend: str | None = None,
) -> Tensor:
    r"""The Hebbian update ``dw`` of a shared weight, summed over the batch (and positions).

    For a linear weight ``w`` ``[N_out, D]`` with input ``x`` ``[B, D]`` and plastic output ``y``
    ``[B, N_out]``::

        hebb:   dw[n] = sum_b y[b, n] * x[b]
        instar: dw[n] = sum_b y[b, n] * (x[b] - w[n])
        oja:    dw[n] = sum_b y[b, n] * (x[b] - y[b, n] * w[n])

    For a conv2d weight ``w`` ``[C_out, C_in / groups, kh, kw]`` with ``x`` ``[B, C_in, H, W]``
    and ``y`` ``[B, C_out, H_out, W_out]`` (the convolution's output shape for ``stride``,
    ``padding``, ``dilation``, ``groups``), the patch of ``x`` under output position p replaces
    ``x[b]`` and the sums run over samples and positions. ``y`` may be any function of the drive
    (k-winners-take-all, thresholds, binarisation).

    Args:
        w: the weight (linear ``[N_out, D]`` or conv2d ``[C_out, C_in / groups, kh, kw]``).
        x: the layer's input.
        y: the layer's plastic output.
        rule: ``"hebb"``, ``"instar"`` or ``"oja"``.
        stride, padding, dilation, groups: the convolution's parameters (ints or pairs), as in
            :func:`torch.nn.functional.conv2d`; conv2d weights only.
        backend: ``None`` (automatic), ``"reference"`` (``unfold``, eager) or ``"cpu"``.

    Returns:
        ``dw``, shaped like ``w``; apply it as ``w += lr * dw``. Differentiable with respect to
        ``w``, ``x`` and ``y``.
    """
    a = check_hebbian_args(
        w, x, y, rule=rule, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    check_materialisable(w=w, x=x, y=y)
    if not _use_fused(backend, w.device):
        return _reference.hebbian_update(
            w, x, y, rule=rule, stride=a.stride, padding=a.padding, dilation=a.dilation,
            groups=a.groups,
        )  # fmt: skip
    io_dtype = w.dtype
    dt = compute_dtype(io_dtype)
    w_, x_, y_ = w.to(dt), x.to(dt), y.to(dt)
    if w.dim() == 2:
        fwd, args = torch.ops.hebbkern.hebbian_update_linear, (w_, x_, y_, rule)
    else:
        fwd = torch.ops.hebbkern.hebbian_update_conv2d
        args = (w_, x_, y_, rule, list(a.stride), list(a.padding), list(a.dilation), a.groups)
    if torch._C._are_functorch_transforms_active():  # torch.func: hebbkern/_func.py
        fwd = _func.transformable(fwd)
    return fwd(*args).to(io_dtype)


def hebbian_loss(u: Tensor, y: Tensor, w: Tensor, rule: str = "oja") -> Tensor:
    r"""The loss form of the rule (docs/SPEC.md section 4): ``d loss / d w = -hebbian_update(...)``.

    So any torch optimiser applies the rule: ``hebbian_loss(u, y, w, rule).backward();
    opt.step()`` moves ``w`` by ``lr * dw`` under plain SGD.

    ``u`` is the layer's drive, computed from ``w`` with the graph kept (``x @ w.T`` for a linear
    layer, ``conv2d(x, w, ...)`` for a convolution); ``y`` the plastic output, any function of
    ``u`` (it is detached: thresholds and k-WTA act on ``y`` only). With ``s = y.detach()``::

        hebb:   L = -sum(s * u)
        instar: L = -sum(s * (u - 0.5 * ||w_n||^2))
        oja:    L = -sum(s * (u - 0.5 * ||w_n||^2 * s))

    Args:
        u: drive ``[B, N_out]`` (linear) or ``[B, C_out, H_out, W_out]`` (conv2d).
        y: plastic output, ``u``'s shape.
        w: the weight ``u`` was computed from (2 or 4 dims).
        rule: ``"hebb"``, ``"instar"`` or ``"oja"``.
    """
    check_hebbian_loss_args(u, y, w, rule)
    s = y.detach().to(u.dtype)
    if rule == "hebb":
        return -(s * u).sum()
    sq = _channel_view(w.square().flatten(1).sum(1), u.dim())  # ||w_n||^2
    if rule == "instar":
        return -(s * (u - 0.5 * sq)).sum()
    return -(s * (u - 0.5 * sq * s)).sum()
