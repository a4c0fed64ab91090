"""hebbkern.nn.ANML and hebbkern.meta: gating, the sequential inner loop against hand-written
SGD, gradients through the inner loop into the NM network, and one meta-step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hebbkern.meta import inner_loop, meta_step, reset_rows
from hebbkern.nn.anml import ANML


def test_anml_gate_and_ungated():
    torch.manual_seed(0)
    m = ANML(6, 4, hidden=(5,), nm_hidden=(3,))
    x = torch.randn(2, 6)
    g = m.gate(x)
    assert g.shape == (2, 5) and ((g > 0) & (g < 1)).all()
    torch.testing.assert_close(m(x), m.classifier(m.pln(x) * g))
    u = ANML(6, 4, hidden=(5,), gated=False)
    assert u.nm is None
    torch.testing.assert_close(u(x), u.classifier(u.pln(x)))
    assert all(not n.startswith("nm.") for n in m.pln_names())
    assert len(m.pln_names()) == 4


def test_anml_bad_input():
    with pytest.raises(ValueError, match="in_features"):
        ANML(0, 3)
    with pytest.raises(ValueError, match="hidden"):
        ANML(3, 3, hidden=())
    with pytest.raises(ValueError, match="x must"):
        ANML(3, 3)(torch.zeros(2, 4))


def test_inner_loop_matches_manual_sgd():
    torch.manual_seed(0)
    m = ANML(6, 4, hidden=(5,), nm_hidden=(3,)).double()
    xs = [torch.randn(1, 6, dtype=torch.float64) for _ in range(3)]
    ys = [torch.tensor([k]) for k in (0, 2, 1)]
    names = m.pln_names()
    fast = inner_loop(m, dict(m.named_parameters()), xs, ys, 0.1, names)
    ref = ANML(6, 4, hidden=(5,), nm_hidden=(3,)).double()
    ref.load_state_dict(m.state_dict())
    opt = torch.optim.SGD([p for n, p in ref.named_parameters() if n in names], lr=0.1)
    for x, y in zip(xs, ys, strict=True):
        opt.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        opt.step()
    for n, p in ref.named_parameters():
        torch.testing.assert_close(fast[n], p.detach() if n in names else m.get_parameter(n))


def test_meta_gradient_reaches_nm_and_matches_finite_difference():
    torch.manual_seed(0)
    m = ANML(4, 3, hidden=(5,), nm_hidden=(3,)).double()
    xs = [torch.randn(1, 4, dtype=torch.float64) for _ in range(2)]
    ys = [torch.tensor([0]), torch.tensor([1])]
    q = torch.randn(5, 4, dtype=torch.float64)
    qy = torch.tensor([0, 1, 2, 0, 1])
    names = m.pln_names()
    nm_w = m.nm[-1].weight

    def meta_loss(w):
        params = dict(m.named_parameters())
        params["nm.2.weight"] = w
        fast = inner_loop(m, params, xs, ys, 0.5, names)
        return F.cross_entropy(torch.func.functional_call(m, fast, (q,)), qy)

    assert torch.autograd.gradcheck(meta_loss, (nm_w.detach().clone().requires_grad_(),))
    (g,) = torch.autograd.grad(meta_loss(nm_w), [nm_w])
    assert g.abs().sum() > 0  # the NM network learns only through the inner loop's effect


def test_inner_loop_bad_input():
    m = ANML(4, 3, hidden=(5,))
    params = dict(m.named_parameters())
    with pytest.raises(ValueError, match="same length"):
        inner_loop(m, params, [torch.zeros(1, 4)], [], 0.1, m.pln_names())
    with pytest.raises(ValueError, match="lr"):
        inner_loop(m, params, [], [], 0.0, m.pln_names())
    with pytest.raises(ValueError, match="trainable"):
        inner_loop(m, params, [], [], 0.1, ["nope"])


def test_reset_rows():
    torch.manual_seed(0)
    m = ANML(8, 4, hidden=(16,), nm_hidden=(8,))
    w = m.classifier.weight.detach().clone()
    reset_rows(m.classifier, torch.tensor([1]))
    assert torch.equal(m.classifier.weight[0], w[0])
    assert not torch.equal(m.classifier.weight[1], w[1])
    assert m.classifier.bias[1] == 0


def test_meta_step_descends_the_meta_loss():
    """A small outer SGD step lowers the meta-loss of the same episode (the meta-gradient
    points downhill) and changes the NM network."""
    torch.manual_seed(0)
    m = ANML(8, 4, hidden=(16,), nm_hidden=(8,)).double()
    g = torch.Generator().manual_seed(0)
    tx, ty = torch.randn(3, 8, generator=g, dtype=torch.float64), torch.tensor([2, 2, 2])
    rx, ry = torch.randn(4, 8, generator=g, dtype=torch.float64), torch.tensor([0, 1, 3, 0])
    opt = torch.optim.SGD(m.parameters(), lr=1e-2)
    nm_before = m.nm[-1].weight.detach().clone()
    first, _ = meta_step(m, opt, tx, ty, rx, ry, 0.1, m.pln_names())
    second, _ = meta_step(m, opt, tx, ty, rx, ry, 0.1, m.pln_names())
    assert second < first
    assert not torch.equal(m.nm[-1].weight, nm_before)
