"""``hebbkern.nn.HebbianConv2d`` and ``HebbianLinear``: the forward, the plastic output (k-WTA,
binarisation, thresholds), each option of the step against an eager re-computation, the
optimiser form, serialisation, dtype/device handling and bad arguments."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from helpers import rel_err

import hebbkern
from hebbkern.nn import HebbianConv2d, HebbianLinear


def conv_layer(**kw):
    torch.manual_seed(0)
    opts = dict(rule="oja", k=2, homeostasis=3.0, prune=0.3)
    opts.update(kw)
    return HebbianConv2d(4, 6, 3, stride=1, padding=1, dtype=torch.float64, **opts)


def test_conv_forward_is_the_convolution_or_its_triangle():
    m = conv_layer(triangle=False)
    x = torch.randn(3, 4, 7, 7, dtype=torch.float64)
    u = F.conv2d(x, m.weight * m.mask, padding=1)
    assert rel_err(m(x), u) < 1e-12
    m.triangle = True
    assert rel_err(m(x), F.relu(u - u.mean(1, keepdim=True))) < 1e-12


def test_plastic_output_kwta():
    m = conv_layer(k=2, binarize=True)
    with torch.no_grad():
        m.thresholds.copy_(torch.randn(6, dtype=torch.float64))
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    m(x)
    _, y = m.last_activity()
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert (y.sum(1) == 2).all()
    v = F.conv2d(x, m.effective_weight(), padding=1) - m.thresholds.reshape(1, -1, 1, 1)
    # The winners are the two largest of u - thresholds at each position.
    assert torch.equal(y.bool(), v >= v.topk(2, dim=1).values[:, -1:])
    m.binarize = False
    m(x)
    assert torch.equal(m.last_activity()[1], torch.where(y.bool(), v, 0.0))
    m.k = None
    m(x)
    assert rel_err(m.last_activity()[1], v) < 1e-12


@pytest.mark.parametrize("rule", ["hebb", "instar", "oja"])
def test_step_matches_eager_recomputation(rule):
    m = conv_layer(rule=rule)
    w0, thr0, mask = m.weight.detach().clone(), m.thresholds.clone(), m.mask.clone()
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64)
    m(x)
    y = m.last_activity()[1]
    lr = 0.05
    m.hebbian_step(lr)
    dw = hebbkern.reference.hebbian_update(w0 * mask, x, y, rule=rule, padding=1)
    w = (w0 + lr * dw * mask) * mask
    w = w / w.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
    assert rel_err(m.weight.detach(), w) < 1e-12
    assert torch.allclose(m.weight.flatten(1).norm(dim=1), torch.ones(6, dtype=torch.float64))
    assert (m.weight.detach()[mask == 0] == 0).all()
    rate = (y != 0).double().mean((0, 2, 3))
    assert rel_err(m.thresholds, thr0 + 3.0 * (rate - 2 / 6)) < 1e-12


def test_optimiser_form_equals_step():
    a, b = conv_layer(), conv_layer()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    opt = torch.optim.SGD(b.parameters(), lr=0.1)
    for _ in range(3):
        a(x)
        a.hebbian_step(0.1)
        b(x)
        opt.zero_grad()
        b.hebbian_backward()
        opt.step()
        b.post_step()
    assert rel_err(b.weight.detach(), a.weight.detach()) < 1e-12
    assert rel_err(b.thresholds, a.thresholds) < 1e-12


def test_homeostasis_moves_rates_toward_k_over_n():
    """With a learning rate of zero only the thresholds move: each channel's firing rate ends
    near k / N."""
    torch.manual_seed(1)
    m = HebbianConv2d(3, 8, 3, k=1, homeostasis=0.5, dtype=torch.float64)
    x = torch.randn(16, 3, 8, 8, dtype=torch.float64)
    for _ in range(200):
        m(x)
        m.hebbian_step(0.0)
    rate = (m.last_activity()[1] != 0).double().mean((0, 2, 3))
    assert (rate - 1 / 8).abs().max() < 0.06


def test_linear_layer():
    torch.manual_seed(0)
    m = HebbianLinear(7, 5, rule="instar", k=1, binarize=False, dtype=torch.float64)
    x = torch.randn(4, 7, dtype=torch.float64)
    w0 = m.weight.detach().clone()
    assert rel_err(m(x), x @ w0.t()) < 1e-12
    _, y = m.last_activity()
    m.hebbian_step(0.1)
    w = w0 + 0.1 * hebbkern.reference.hebbian_update(w0, x, y, rule="instar")
    assert rel_err(m.weight.detach(), w / w.norm(dim=1, keepdim=True)) < 1e-12
    assert m(x[0]).shape == (5,)  # unbatched


def test_learns_the_dominant_direction():
    """Oja's rule, one unit, no competition, no renormalisation: the weight converges to the
    first principal direction of its input."""
    torch.manual_seed(0)
    c = torch.tensor([[3.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    x = torch.randn(4000, 2, dtype=torch.float64) @ torch.linalg.cholesky(c).t()
    m = HebbianLinear(2, 1, rule="oja", k=None, homeostasis=0.0, normalize=False,
                      dtype=torch.float64)  # fmt: skip
    for i in range(0, 4000, 50):
        y = m(x[i : i + 50])
        m._last = (x[i : i + 50], y.detach())
        m.hebbian_step(0.002)
    pc = torch.linalg.eigh(c).eigenvectors[:, -1]
    w = m.weight.detach()[0]
    assert abs(w.norm().item() - 1) < 0.05
    assert abs(torch.dot(w / w.norm(), pc).abs().item() - 1) < 1e-3


def test_state_dict_round_trip_and_repr():
    a = conv_layer()
    b = conv_layer(prune=0.3)
    torch.manual_seed(5)
    b.reset_parameters()
    assert not torch.equal(a.mask, b.mask)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf))
    for name in ("weight", "thresholds", "mask"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert set(a.state_dict()) == {"weight", "thresholds", "mask"}
    assert set(conv_layer(prune=0.0).state_dict()) == {"weight", "thresholds"}
    r = repr(a)
    assert "HebbianConv2d(4, 6, kernel_size=(3, 3)" in r and "rule='oja'" in r and "prune=0.3" in r


def test_dtype_device_and_eval_mode():
    m = HebbianConv2d(2, 4, 3, dtype=torch.float32)
    assert m.weight.dtype == m.thresholds.dtype == torch.float32
    m = m.double()
    assert m.thresholds.dtype == torch.float64
    m.eval()
    m(torch.randn(1, 2, 5, 5, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="no activity recorded"):
        m.hebbian_step(0.1)
    m.to("meta")
    assert m.weight.device.type == "meta" and m.thresholds.device.type == "meta"


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        (dict(rule="bcm"), ValueError, r"^rule must be one of"),
        (dict(k=0), ValueError, r"^k must be None or an int in \[1, 6\]"),
        (dict(k=7), ValueError, r"^k must be None or an int"),
        (dict(k=None, homeostasis=3.0), ValueError, r"needs k"),
        (dict(homeostasis=-1.0), ValueError, r"^homeostasis must be a finite rate"),
        (dict(prune=1.0), ValueError, r"^prune must be a fraction"),
        (dict(triangle=1), TypeError, r"^triangle must be a bool"),
    ],
)
def test_bad_options(kw, exc, match):
    with pytest.raises(exc, match=match):
        HebbianConv2d(4, 6, 3, **kw)


def test_bad_input_and_constructor_arguments():
    m = HebbianConv2d(4, 6, 3)
    with pytest.raises(ValueError, match=r"^input must have shape \[B, 4, H, W\]"):
        m(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="divisible by groups"):
        HebbianConv2d(4, 6, 3, groups=4)
    with pytest.raises(ValueError, match="^in_channels must be a positive int"):
        HebbianConv2d(0, 6, 3)
    with pytest.raises(ValueError, match=r"^input must have shape \[B, 3\]"):
        HebbianLinear(3, 2)(torch.randn(2, 4))
