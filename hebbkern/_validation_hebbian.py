"""Argument checks of the ``hebbian`` family (``hebbian_update``, ``hebbian_loss``, the layers).

As in ``_validation.py``: a bad input raises a ``TypeError`` (wrong type or dtype) or a
``ValueError`` (wrong shape, value or device) naming the argument, before any kernel runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import torch
from torch import Tensor

from ._validation import check_tensor

HEBBIAN_RULES = ("hebb", "instar", "oja")


def check_rule(rule: object) -> str:
    if not isinstance(rule, str) or rule not in HEBBIAN_RULES:
        raise ValueError(f"rule must be one of {', '.join(map(repr, HEBBIAN_RULES))}, got {rule!r}")
    return rule


def pair(name: str, v: object, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each ``>= minimum``, as a pair (height, width)."""

    def one(e: object) -> int:
        if isinstance(e, bool) or not isinstance(e, Integral):
            raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
        if e < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
        return int(e)

    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
        return one(v[0]), one(v[1])
    e = one(v)
    return e, e


def conv_out_size(size: int, k: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


@dataclass
class HebbianArgs:
    """Normalised arguments of ``hebbian_update`` (conv parameters as pairs)."""

    rule: str
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @property
    def is_default_conv(self) -> bool:
        return (self.stride, self.padding, self.dilation, self.groups) == (
            (1, 1),
            (0, 0),
            (1, 1),
            1,
        )


def _same(name: str, t: Tensor, ref: Tensor) -> None:
    if t.dtype != ref.dtype:
        raise TypeError(f"{name} must have dtype {ref.dtype} (the dtype of w), got {t.dtype}")
    if t.device != ref.device:
        raise ValueError(f"{name} must be on {ref.device} (the device of w), got {t.device}")


def check_hebbian_args(w, x, y, *, rule, stride, padding, dilation, groups) -> HebbianArgs:
    rule = check_rule(rule)
    w = check_tensor("w", w)
    x = check_tensor("x", x)
    y = check_tensor("y", y)
    if not w.is_floating_point():
        raise TypeError(f"w must be a floating-point tensor, got {w.dtype}")
    _same("x", x, w)
    _same("y", y, w)
    a = HebbianArgs(
        rule,
        pair("stride", stride, 1),
        pair("padding", padding, 0),
        pair("dilation", dilation, 1),
        groups,
    )
    if isinstance(groups, bool) or not isinstance(groups, Integral):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    a.groups = int(groups)

    if w.dim() == 2:
        if not a.is_default_conv:
            raise ValueError(
                "stride, padding, dilation and groups only apply to a conv2d weight (4 dims); "
                f"w has shape {list(w.shape)} (a linear weight [N_out, D])"
            )
        N, D = w.shape
        if N < 1 or D < 1:
            raise ValueError(f"w must have at least one row and column, got {list(w.shape)}")
        if x.dim() != 2 or x.shape[1] != D or x.shape[0] < 1:
            raise ValueError(
                f"x must have shape [B, D] with D={D} (w's second dim) and B >= 1 for a linear "
                f"weight, got {list(x.shape)}"
            )
        B = x.shape[0]
        if tuple(y.shape) != (B, N):
            raise ValueError(f"y must have shape [B, N_out] = {[B, N]}, got {list(y.shape)}")
        return a

    if w.dim() != 4:
        raise ValueError(
            "w must be a linear weight [N_out, D] or a conv2d weight [C_out, C_in/groups, kh, kw], "
            f"got shape {list(w.shape)}"
        )
    C_out, C_in_g, kh, kw = w.shape
    if min(w.shape) < 1:
        raise ValueError(f"w must have no empty dimension, got {list(w.shape)}")
    if C_out % a.groups:
        raise ValueError(f"w's C_out={C_out} must be divisible by groups={a.groups}")
    C_in = C_in_g * a.groups
    if x.dim() != 4 or x.shape[1] != C_in or x.shape[0] < 1:
        raise ValueError(
            f"x must have shape [B, C_in, H, W] with C_in={C_in} (w.shape[1] * groups) and B >= 1, "
            f"got {list(x.shape)}"
        )
    B, _, H, W = x.shape
    Ho = conv_out_size(H, kh, a.stride[0], a.padding[0], a.dilation[0])
    Wo = conv_out_size(W, kw, a.stride[1], a.padding[1], a.dilation[1])
    if Ho < 1 or Wo < 1:
        raise ValueError(
            f"the convolution of x {list(x.shape)} with a {kh}x{kw} kernel (stride {a.stride}, "
            f"padding {a.padding}, dilation {a.dilation}) has no output position"
        )
    if tuple(y.shape) != (B, C_out, Ho, Wo):
        raise ValueError(
            f"y must have shape [B, C_out, H_out, W_out] = {[B, C_out, Ho, Wo]} (the conv output "
            f"for x {list(x.shape)}), got {list(y.shape)}"
        )
    return a


def check_hebbian_loss_args(u, y, w, rule) -> None:
    check_rule(rule)
    u = check_tensor("u", u)
    y = check_tensor("y", y)
    w = check_tensor("w", w)
    if not u.is_floating_point():
        raise TypeError(f"u must be a floating-point tensor, got {u.dtype}")
    if w.dim() not in (2, 4):
        raise ValueError(
            f"w must be a linear weight (2 dims) or a conv2d weight (4 dims), got {list(w.shape)}"
        )
    expected = 2 if w.dim() == 2 else 4
    if u.dim() != expected or u.shape[1] != w.shape[0]:
        raise ValueError(
            f"u must have {expected} dims with w.shape[0]={w.shape[0]} channels in dim 1, "
            f"got {list(u.shape)}"
        )
    if tuple(y.shape) != tuple(u.shape):
        raise ValueError(f"y must have u's shape {list(u.shape)}, got {list(y.shape)}")
    if y.device != u.device or w.device != u.device:
        raise ValueError("u, y and w must be on one device")
    if not y.is_floating_point() and y.dtype != torch.bool:
        raise TypeError(f"y must be a floating-point or bool tensor, got {y.dtype}")
