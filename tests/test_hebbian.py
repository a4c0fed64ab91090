"""The fused ``cpu`` backend of ``hebbkern.hebbian_update`` against the ``unfold`` reference, and
the loss form ``hebbkern.hebbian_loss`` against the update (SPEC.md section 4).

The reference (hebbkern/reference/hebbian.py) is the oracle: ``dw`` and its gradients with
respect to ``w``, ``x`` and ``y`` are compared on fresh random inputs for every rule, linear and
conv2d weights, strides, paddings, dilations, groups and odd sizes, in float64 and float32.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import rel_err

import hebbkern
from hebbkern._validation import HEBBIAN_RULES

TOL = {torch.float64: 1e-8, torch.float32: 1e-4}
DTYPE_IDS = {torch.float64: "f64", torch.float32: "f32"}

# (B, N_out, D)
LINEAR = [(1, 1, 1), (7, 33, 100), (33, 7, 129), (5, 100, 7), (4, 129, 33)]
# (B, C_in, C_out, H, W, kh, kw, stride, padding, dilation, groups)
CONV = [
    (2, 3, 4, 7, 7, 3, 3, 1, 0, 1, 1),
    (1, 1, 1, 5, 5, 1, 1, 1, 0, 1, 1),
    (3, 4, 6, 9, 8, 3, 2, 2, 1, 1, 2),
    (2, 6, 9, 11, 10, 3, 3, (2, 1), (1, 2), (2, 1), 3),
    (2, 5, 7, 33, 7, 5, 3, 3, 2, 2, 1),
    (1, 8, 8, 12, 12, 3, 3, 1, 1, 1, 8),
    (2, 7, 33, 10, 9, 1, 3, 1, (0, 1), 1, 1),
]


def conv_id(c):
    B, Ci, Co, H, W, kh, kw, s, p, d, g = c
    return f"B{B}-{Ci}to{Co}-{H}x{W}-k{kh}x{kw}-s{s}-p{p}-d{d}-g{g}".replace(" ", "")


def make_linear(B, N, D, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(N, D, generator=g, dtype=torch.float64) / D**0.5
    x = torch.randn(B, D, generator=g, dtype=torch.float64)
    y = torch.randn(B, N, generator=g, dtype=torch.float64)
    return (w.to(dtype), x.to(dtype), y.to(dtype)), {}


def make_conv(case, dtype=torch.float64, seed=0, sparse=False):
    """Random conv inputs; ``sparse``: about 4% of y nonzero (at least one), like a k-WTA output,
    which sends the cpu kernel down its sparse path (density <= 1/16)."""
    B, Ci, Co, H, W, kh, kw, s, p, d, groups = case
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(Co, Ci // groups, kh, kw, generator=g, dtype=torch.float64)
    x = torch.randn(B, Ci, H, W, generator=g, dtype=torch.float64)
    conv = dict(stride=s, padding=p, dilation=d, groups=groups)
    y = torch.randn_like(F.conv2d(x, w, **conv)).normal_(generator=g)
    if sparse:
        keep = torch.zeros(y.numel(), dtype=torch.bool)
        keep[torch.randperm(y.numel(), generator=g)[: max(1, y.numel() // 25)]] = True
        keep = keep.reshape(y.shape)
        y = y * keep
        assert 0 < keep.sum() <= y.numel() / 16
    return (w.to(dtype), x.to(dtype), y.to(dtype)), conv


ALL_CASES = (
    [pytest.param("linear", c, id="linear-B{}-N{}-D{}".format(*c)) for c in LINEAR]
    + [pytest.param("conv", c, id=conv_id(c)) for c in CONV]
    + [pytest.param("sparse", c, id="sparse-y-" + conv_id(c)) for c in CONV]
)


def make(kind, case, dtype=torch.float64, seed=0):
    if kind == "linear":
        return make_linear(*case, dtype, seed)
    return make_conv(case, dtype, seed, sparse=kind == "sparse")


def leaves(tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def update_and_grads(tensors, conv, rule, backend, seed=1):
    """``dw`` and the gradients of a random-weighted sum of it with respect to ``w``, ``x``, ``y``."""
    w, x, y = leaves(tensors)
    dw = hebbkern.hebbian_update(w, x, y, rule=rule, backend=backend, **conv)
    g = torch.Generator().manual_seed(seed)
    weights = torch.randn(dw.shape, generator=g, dtype=torch.float64).to(dw.dtype)
    (dw * weights).sum().backward()
    return dw.detach(), {"w": w.grad, "x": x.grad, "y": y.grad}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=DTYPE_IDS.get)
@pytest.mark.parametrize("rule", HEBBIAN_RULES)
@pytest.mark.parametrize("kind, case", ALL_CASES)
def test_matches_reference(kind, case, rule, dtype, nan_poison):
    tensors, conv = make(kind, case, dtype, seed=3)
    dw, grads = update_and_grads(tensors, conv, rule, "cpu")
    ref_dw, ref_grads = update_and_grads([t.double() for t in tensors], conv, rule, "reference")
    assert dw.dtype == dtype and dw.shape == tensors[0].shape
    assert torch.isfinite(dw).all()
    assert rel_err(dw, ref_dw) < TOL[dtype]
    for name, ref in ref_grads.items():
        got = grads[name]
        if name == "w" and rule == "hebb":  # the plain term does not depend on w
            assert got is None or got.abs().max() == 0
            continue
        assert ref.norm() > 0, f"reference gradient of {name} is zero: the test is vacuous"
        assert got is not None and got.dtype == dtype, name
        assert rel_err(got, ref) < TOL[dtype], f"gradient of {name}"


@pytest.mark.parametrize("rule", HEBBIAN_RULES)
def test_plain_term_is_the_conv_weight_gradient(rule):
    """SPEC: the plain term is the convolution's weight gradient with y as output gradient, and
    the corrections are w[n] * sum y (instar) and w[n] * sum y^2 (Oja)."""
    (w, x, y), conv = make_conv(CONV[3])
    w = w.requires_grad_()
    (gw,) = torch.autograd.grad(F.conv2d(x, w, **conv), w, y)
    s = {"hebb": 0.0, "instar": y.sum((0, 2, 3)), "oja": y.square().sum((0, 2, 3))}[rule]
    expected = gw - w.detach() * (s.reshape(-1, 1, 1, 1) if rule != "hebb" else 0.0)
    for backend in ("cpu", "reference"):
        dw = hebbkern.hebbian_update(w.detach(), x, y, rule=rule, backend=backend, **conv)
        assert rel_err(dw, expected) < 1e-10, backend


def test_linear_rule_table():
    """The linear rule exactly as SPEC.md's table, one sample at a time."""
    (w, x, y), _ = make_linear(3, 4, 5)
    for rule in HEBBIAN_RULES:
        expected = torch.zeros_like(w)
        for b in range(3):
            for n in range(4):
                shrink = {"hebb": 0.0, "instar": w[n], "oja": y[b, n] * w[n]}[rule]
                expected[n] += y[b, n] * (x[b] - shrink)
        got = hebbkern.hebbian_update(w, x, y, rule=rule, backend="cpu")
        assert rel_err(got, expected) < 1e-12, rule


def test_non_contiguous_inputs(nan_poison):
    (w, x, y), conv = make_conv(CONV[2], seed=4)
    # Same values, other memory layouts: transposed storage and channels-last.
    wt = w.transpose(2, 3).contiguous().transpose(2, 3)
    xs = torch.cat([x, x], dim=3)[..., ::2]
    assert not wt.is_contiguous() and not xs.is_contiguous()
    xs.copy_(x)
    yc = y.contiguous(memory_format=torch.channels_last)
    for rule in HEBBIAN_RULES:
        ref = hebbkern.hebbian_update(w, x, y, rule=rule, backend="reference", **conv)
        got = hebbkern.hebbian_update(wt, xs, yc, rule=rule, backend="cpu", **conv)
        assert rel_err(got, ref) < 1e-10, rule
    (w, x, y), _ = make_linear(6, 9, 11, seed=4)
    for rule in HEBBIAN_RULES:
        ref = hebbkern.hebbian_update(w, x, y, rule=rule, backend="reference")
        got = hebbkern.hebbian_update(
            w.t().contiguous().t(), x.t().contiguous().t(), y[:, :].t().contiguous().t(),
            rule=rule, backend="cpu",
        )  # fmt: skip
        assert rel_err(got, ref) < 1e-10, rule


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_low_precision_runs_in_float32(dtype):
    (w, x, y), conv = make_conv(CONV[0], torch.float32, seed=6)
    lw, lx, ly = w.to(dtype), x.to(dtype), y.to(dtype)
    got = hebbkern.hebbian_update(lw, lx, ly, rule="oja", backend="cpu", **conv)
    assert got.dtype == dtype
    ref = hebbkern.hebbian_update(lw.float(), lx.float(), ly.float(), rule="oja", **conv)
    assert torch.equal(got, ref.to(dtype))


def test_default_backend_is_cpu(monkeypatch):
    (w, x, y), conv = make_conv(CONV[0])
    calls = []
    real = hebbkern.reference.hebbian_update
    monkeypatch.setattr(hebbkern.reference, "hebbian_update", lambda *a, **k: calls.append(1))
    hebbkern.hebbian_update(w, x, y, **conv)
    assert calls == []
    with hebbkern.use_backend("reference"):
        hebbkern.hebbian_update(w, x, y, **conv)
    assert calls == [1]
    monkeypatch.setattr(hebbkern.reference, "hebbian_update", real)


# ---------------------------------------------------------------------------------------------
# The loss form: its gradient with respect to w is minus the update.


def kwta(u, k=2):
    """A k-winners-take-all across channels (dim 1), binarised: y is a non-smooth function of u."""
    top = u.topk(k, dim=1).indices
    return torch.zeros_like(u).scatter_(1, top, 1.0)


@pytest.mark.parametrize("rule", HEBBIAN_RULES)
@pytest.mark.parametrize("output", ["identity", "kwta"])
@pytest.mark.parametrize("kind, case", [ALL_CASES[1], ALL_CASES[2], ALL_CASES[8], ALL_CASES[9]])
def test_loss_form_gradient_is_minus_update(kind, case, rule, output):
    (w, x, _), conv = make(kind, case, seed=7)
    w = w.requires_grad_()
    u = x @ w.t() if kind == "linear" else F.conv2d(x, w, **conv)
    y = u.detach().clone() if output == "identity" else kwta(u.detach(), min(2, u.shape[1]))
    loss = hebbkern.hebbian_loss(u, y, w, rule)
    (gw,) = torch.autograd.grad(loss, w)
    dw = hebbkern.hebbian_update(w.detach(), x, y, rule=rule, **conv)
    assert dw.norm() > 0
    assert rel_err(-gw, dw) < 1e-10


def test_loss_form_with_an_optimiser_applies_the_rule():
    """SGD on the loss moves w by lr * dw: the two forms give one trajectory."""
    (w0, x, _), conv = make_conv(CONV[2], seed=8)
    lr = 1e-3
    w_loss = torch.nn.Parameter(w0.clone())
    opt = torch.optim.SGD([w_loss], lr=lr)
    w_upd = w0.clone()
    for _ in range(3):
        u = F.conv2d(x, w_loss, **conv)
        y = kwta(u.detach())
        opt.zero_grad()
        hebbkern.hebbian_loss(u, y, w_loss, "oja").backward()
        opt.step()
        y2 = kwta(F.conv2d(x, w_upd, **conv))
        assert torch.equal(y, y2)
        w_upd += lr * hebbkern.hebbian_update(w_upd, x, y2, rule="oja", **conv)
    assert rel_err(w_loss.detach(), w_upd) < 1e-10


# ---------------------------------------------------------------------------------------------
# gradcheck, opcheck, torch.compile.


# Small shapes: gradcheck's cost grows with (inputs x outputs).
GRADCHECK_CASES = [
    pytest.param("linear", (3, 4, 5), id="linear-B3-N4-D5"),
    pytest.param(
        "conv", (2, 4, 4, 6, 5, 2, 2, (2, 1), (1, 0), (1, 2), 2), id="conv-s21-p10-d12-g2"
    ),
    pytest.param("conv", (1, 2, 3, 4, 4, 3, 3, 1, 1, 1, 1), id="conv-k3-p1"),
]


@pytest.mark.parametrize("rule", HEBBIAN_RULES)
@pytest.mark.parametrize("kind, case", GRADCHECK_CASES)
def test_gradcheck(kind, case, rule):
    tensors, conv = make(kind, case, seed=9)
    args = leaves(tensors)

    def f(w, x, y):
        return hebbkern.hebbian_update(w, x, y, rule=rule, backend="cpu", **conv)

    assert torch.autograd.gradcheck(f, tuple(args), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("rule", HEBBIAN_RULES)
def test_opcheck(rule):
    (w, x, y), _ = make_linear(3, 4, 5, seed=10)
    torch.library.opcheck(
        torch.ops.hebbkern.hebbian_update_linear.default, (*leaves((w, x, y)), rule)
    )
    (w, x, y), conv = make_conv(CONV[3], seed=10)
    args = (*leaves((w, x, y)), rule, [2, 1], [1, 2], [2, 1], conv["groups"])
    torch.library.opcheck(torch.ops.hebbkern.hebbian_update_conv2d.default, args)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph(backend):
    (w, x, y), conv = make_conv(CONV[2], torch.float32, seed=11)

    def step(w, x, y):
        return w + 0.01 * hebbkern.hebbian_update(w, x, y, rule="oja", backend="cpu", **conv)

    compiled = torch.compile(step, backend=backend, fullgraph=True)
    assert rel_err(compiled(w, x, y), step(w, x, y)) < 1e-6
