"""Bad arguments of ``hebbkern.hebbian_update`` / ``hebbian_loss``: each raises ``ValueError``
(shape, value, device) or ``TypeError`` (type, dtype) naming the argument, before any kernel runs,
on both backends; the raw C++ ops check shapes themselves."""

from __future__ import annotations

import pytest
import torch

import hebbkern

f64 = torch.float64
META = torch.device("meta")


def conv_base():
    return dict(
        w=torch.randn(6, 2, 3, 3, dtype=f64),
        x=torch.randn(2, 4, 8, 8, dtype=f64),
        y=torch.randn(2, 6, 4, 4, dtype=f64),
        stride=2,
        padding=1,
        dilation=1,
        groups=2,
        rule="oja",
    )


def linear_base():
    return dict(
        w=torch.randn(5, 3, dtype=f64), x=torch.randn(4, 3, dtype=f64),
        y=torch.randn(4, 5, dtype=f64), rule="instar",
    )  # fmt: skip


# (id, base, changes, exception, regex)
CASES = [
    (
        "rule",
        conv_base,
        dict(rule="ojas"),
        ValueError,
        r"^rule must be one of 'hebb', 'instar', 'oja'",
    ),
    ("rule-None", conv_base, dict(rule=None), ValueError, r"^rule must be one of"),
    ("w-None", conv_base, dict(w=None), TypeError, r"^w must be a torch.Tensor"),
    ("w-list", linear_base, dict(w=[[1.0]]), TypeError, r"^w must be a torch.Tensor"),
    (
        "w-int",
        linear_base,
        dict(w=torch.ones(5, 3, dtype=torch.int64)),
        TypeError,
        r"^w must be a floating",
    ),
    (
        "w-rank3",
        conv_base,
        dict(w=torch.randn(6, 2, 3, dtype=f64)),
        ValueError,
        r"^w must be a linear weight",
    ),
    (
        "w-empty",
        conv_base,
        dict(w=torch.randn(6, 2, 0, 3, dtype=f64)),
        ValueError,
        r"^w must have no empty",
    ),
    (
        "x-dtype",
        conv_base,
        dict(x=torch.randn(2, 4, 8, 8)),
        TypeError,
        r"^x must have dtype torch.float64",
    ),
    (
        "y-dtype",
        linear_base,
        dict(y=torch.randn(4, 5)),
        TypeError,
        r"^y must have dtype torch.float64",
    ),
    (
        "x-device",
        conv_base,
        dict(x=torch.randn(2, 4, 8, 8, dtype=f64, device=META)),
        ValueError,
        r"^x must be on cpu",
    ),
    (
        "x-channels",
        conv_base,
        dict(x=torch.randn(2, 3, 8, 8, dtype=f64)),
        ValueError,
        r"^x must have shape \[B, C_in, H, W\] with C_in=4",
    ),
    (
        "x-rank",
        conv_base,
        dict(x=torch.randn(4, 8, 8, dtype=f64)),
        ValueError,
        r"^x must have shape \[B, C_in, H, W\]",
    ),
    ("x-batch0", conv_base, dict(x=torch.randn(0, 4, 8, 8, dtype=f64)), ValueError, r"B >= 1"),
    (
        "y-shape",
        conv_base,
        dict(y=torch.randn(2, 6, 5, 5, dtype=f64)),
        ValueError,
        r"^y must have shape \[B, C_out, H_out, W_out\] = \[2, 6, 4, 4\]",
    ),
    (
        "y-batch",
        conv_base,
        dict(y=torch.randn(3, 6, 4, 4, dtype=f64)),
        ValueError,
        r"^y must have shape",
    ),
    (
        "no-output",
        conv_base,
        dict(x=torch.randn(2, 4, 1, 1, dtype=f64), padding=0),
        ValueError,
        r"has no output position",
    ),
    (
        "groups-divide",
        conv_base,
        dict(groups=4, w=torch.randn(6, 1, 3, 3, dtype=f64)),
        ValueError,
        r"C_out=6 must be divisible by groups=4",
    ),
    ("groups-0", conv_base, dict(groups=0), ValueError, r"^groups must be >= 1"),
    ("groups-float", conv_base, dict(groups=2.0), TypeError, r"^groups must be an int"),
    ("stride-0", conv_base, dict(stride=0), ValueError, r"^stride must be >= 1"),
    (
        "stride-triple",
        conv_base,
        dict(stride=(1, 1, 1)),
        ValueError,
        r"^stride must be an int or a pair",
    ),
    ("padding-neg", conv_base, dict(padding=-1), ValueError, r"^padding must be >= 0"),
    (
        "padding-str",
        conv_base,
        dict(padding="same"),
        TypeError,
        r"^padding must be an int or a pair",
    ),
    ("dilation-0", conv_base, dict(dilation=(1, 0)), ValueError, r"^dilation must be >= 1"),
    (
        "linear-x",
        linear_base,
        dict(x=torch.randn(4, 2, dtype=f64)),
        ValueError,
        r"^x must have shape \[B, D\] with D=3",
    ),
    (
        "linear-y",
        linear_base,
        dict(y=torch.randn(4, 4, dtype=f64)),
        ValueError,
        r"^y must have shape \[B, N_out\] = \[4, 5\]",
    ),
    ("linear-stride", linear_base, dict(stride=2), ValueError, r"only apply to a conv2d weight"),
]


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("name, base, changes, exc, match", CASES, ids=[c[0] for c in CASES])
def test_bad_arguments(name, base, changes, exc, match, backend):
    kw = base()
    kw.update(changes)
    w, x, y = kw.pop("w"), kw.pop("x"), kw.pop("y")
    with pytest.raises(exc, match=match):
        hebbkern.hebbian_update(w, x, y, backend=backend, **kw)


def test_bad_backend():
    kw = linear_base()
    with pytest.raises(ValueError, match="^backend must be None or one of"):
        hebbkern.hebbian_update(kw["w"], kw["x"], kw["y"], backend="gpu")


def test_raw_ops_check_shapes():
    """The C++ entry points refuse inconsistent shapes themselves (no out-of-bounds access)."""
    ops = torch.ops.hebbkern
    w, x, y = torch.randn(6, 2, 3, 3), torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 4)
    conv = ([2, 2], [1, 1], [1, 1], 2)
    ops.hebbian_update_conv2d(w, x, y, "oja", *conv)  # valid
    with pytest.raises(ValueError, match="y must be"):
        ops.hebbian_update_conv2d(w, x, torch.randn(2, 6, 5, 4), "oja", *conv)
    with pytest.raises(ValueError, match="x must be"):
        ops.hebbian_update_conv2d(w, torch.randn(2, 3, 8, 8), y, "oja", *conv)
    with pytest.raises(ValueError, match="groups"):
        ops.hebbian_update_conv2d(w, x, y, "oja", [2, 2], [1, 1], [1, 1], 4)
    with pytest.raises(ValueError, match="stride"):
        ops.hebbian_update_conv2d(w, x, y, "oja", [0, 2], [1, 1], [1, 1], 2)
    # A 3x3 kernel does not fit a 2x2 input at stride 2: no output position, not one.
    with pytest.raises(ValueError, match="no output position"):
        ops.hebbian_update_conv2d(
            w, x[..., :2, :2], y[..., :1, :1], "oja", [2, 2], [0, 0], [1, 1], 2
        )
    with pytest.raises(ValueError, match="unknown hebbian rule"):
        ops.hebbian_update_conv2d(w, x, y, "clip", *conv)
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.hebbian_update_conv2d(w.half(), x.half(), y.half(), "oja", *conv)
    with pytest.raises(TypeError, match="one dtype"):
        ops.hebbian_update_conv2d(w, x.double(), y, "oja", *conv)
    wl, xl, yl = torch.randn(5, 3), torch.randn(4, 3), torch.randn(4, 5)
    ops.hebbian_update_linear(wl, xl, yl, "hebb")
    with pytest.raises(ValueError, match="y must be"):
        ops.hebbian_update_linear(wl, xl, torch.randn(3, 5), "hebb")
    with pytest.raises(ValueError, match="x must be"):
        ops.hebbian_update_linear(wl, torch.randn(4, 2), yl, "hebb")


def test_loss_bad_arguments():
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    u = torch.randn(2, 6, 5, 5)
    with pytest.raises(ValueError, match="^rule must be one of"):
        hebbkern.hebbian_loss(u, u, w, "plain")
    with pytest.raises(ValueError, match="^y must have u's shape"):
        hebbkern.hebbian_loss(u, u[:, :, 1:], w, "oja")
    with pytest.raises(ValueError, match="^u must have 4 dims with w.shape"):
        hebbkern.hebbian_loss(u[:, 1:], u[:, 1:], w, "oja")
    with pytest.raises(ValueError, match="^w must be a linear weight"):
        hebbkern.hebbian_loss(u, u, w[0], "oja")
    with pytest.raises(TypeError, match="^u must be a torch.Tensor"):
        hebbkern.hebbian_loss(None, u, w, "oja")
