"""``hebbkern.consolidation``: each penalty and importance estimate against a case computed by
hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hebbkern.consolidation import EWC, MAS, SI, OnlineEWC, fisher_diagonal, mas_importance


def linear_case():
    """w = [1, 2]; samples (x, y) = ([1, 0], 0) and ([1, 1], 1); nll = (w.x - y)^2 / 2 has
    gradients (w.x - y) x = [1, 0] and [2, 2]: Fisher = mean of squares = [2.5, 2]."""
    w = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    data = [(torch.tensor([1.0, 0.0], dtype=torch.float64), 0.0),
            (torch.tensor([1.0, 1.0], dtype=torch.float64), 1.0)]  # fmt: skip
    closures = [(lambda x=x, y=y: 0.5 * (w @ x - y) ** 2) for x, y in data]
    return w, closures


def test_fisher_by_hand():
    w, closures = linear_case()
    f = fisher_diagonal([("w", w)], closures)
    assert torch.allclose(f["w"], torch.tensor([2.5, 2.0], dtype=torch.float64))


def test_ewc_penalty_by_hand():
    w, closures = linear_case()
    ewc = EWC({"w": w}, strength=3.0)
    assert ewc().item() == 0.0  # nothing consolidated yet
    ewc.consolidate(closures)
    with torch.no_grad():
        w.copy_(torch.tensor([2.0, 0.0]))
    # 3 * (2.5 * (2 - 1)^2 + 2 * (0 - 2)^2) = 31.5
    assert ewc().item() == pytest.approx(31.5)
    (g,) = torch.autograd.grad(ewc(), [w])
    assert torch.allclose(g, torch.tensor([15.0, -24.0], dtype=torch.float64))  # 2 * 3 * F * d
    # A second task adds its own term, anchored at [2, 0] with Fisher of the new point:
    # gradients (2 - 0) [1, 0] = [2, 0] and (2 - 1) [1, 1] = [1, 1]: F2 = [2.5, 0.5].
    ewc.consolidate(closures)
    assert len(ewc.tasks) == 2
    with torch.no_grad():
        w.copy_(torch.tensor([3.0, 1.0]))
    first = 2.5 * 4 + 2.0 * 1
    second = 2.5 * 1 + 0.5 * 1
    assert ewc().item() == pytest.approx(3.0 * (first + second))


def test_online_ewc_by_hand():
    w, closures = linear_case()
    ewc = OnlineEWC([("w", w)], strength=1.0, gamma=0.5)
    ewc.consolidate(closures)
    with torch.no_grad():
        w.copy_(torch.tensor([2.0, 0.0]))
    omega = ewc.consolidate(closures)  # 0.5 * [2.5, 2] + [2.5, 0.5]
    assert torch.allclose(omega["w"], torch.tensor([3.75, 1.5], dtype=torch.float64))
    with torch.no_grad():
        w.copy_(torch.tensor([3.0, 1.0]))  # one anchor, the latest: [2, 0]
    assert ewc().item() == pytest.approx(3.75 * 1 + 1.5 * 1)


def test_si_by_hand():
    """L = p^2 from p = 1 with SGD lr 0.25: p goes 1 -> 0.5 -> 0.25 with gradients 2 and 1, so
    the path integral is 2 * 0.5 + 1 * 0.25 = 1.25 and Omega = 1.25 / ((0.25 - 1)^2 + 0.1)."""
    p = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    si = SI([("p", p)], strength=2.0, xi=0.1)
    opt = torch.optim.SGD([p], lr=0.25)
    for _ in range(2):
        opt.zero_grad()
        (p**2).sum().backward()
        si.before_step()
        opt.step()
        si.after_step()
    assert si.path["p"].item() == pytest.approx(1.25)
    omega = si.consolidate()
    assert omega["p"].item() == pytest.approx(1.25 / (0.5625 + 0.1))
    assert si.path["p"].item() == 0.0 and si.anchor["p"].item() == 0.25
    with torch.no_grad():
        p.fill_(1.25)
    assert si().item() == pytest.approx(2.0 * 1.25 / 0.6625 * 1.0)
    with pytest.raises(RuntimeError, match="before_step"):
        si.after_step()


def test_mas_by_hand():
    """F(x) = w x with w = 3: d ||F||^2 / dw = 2 w x^2 = 6 and 24 for x = 1, 2: mean 15."""
    w = nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
    closures = [(lambda x=x: w * x) for x in (1.0, 2.0)]
    assert mas_importance([w], closures)["0"].item() == pytest.approx(15.0)
    mas = MAS([("w", w)], strength=0.5)
    mas.consolidate(closures)
    with torch.no_grad():
        w.fill_(1.0)
    assert mas().item() == pytest.approx(0.5 * 15.0 * 4.0)
    omega = mas.consolidate(closures)  # accumulates: at w = 1, 2 x^2 = 2 and 8: + 5
    assert omega["w"].item() == pytest.approx(20.0)


def test_works_on_any_model_and_subset():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    ewc = EWC(model[2].named_parameters(), strength=1.0)
    x = torch.randn(5, 3)
    ewc.consolidate([lambda: model(x).logsumexp(1).mean()])
    assert set(ewc.omega) == {"weight", "bias"}
    with torch.no_grad():
        model[2].weight.add_(0.1)
        model[0].weight.add_(10.0)  # not in the chosen set: no penalty
    loss = ewc()
    loss.backward()
    assert loss > 0 and model[0].weight.grad is None


def test_errors():
    w = nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="at least one parameter"):
        EWC([], strength=1.0)
    with pytest.raises(TypeError, match="requires grad"):
        EWC([torch.zeros(2)])
    with pytest.raises(ValueError, match="strength"):
        EWC([w], strength=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        OnlineEWC([w], gamma=2.0)
    with pytest.raises(ValueError, match="xi"):
        SI([w], xi=0.0)
    with pytest.raises(ValueError, match="at least one closure"):
        EWC([w]).consolidate([])
    with pytest.raises(ValueError, match="scalar"):
        EWC([w]).consolidate([lambda: w * 2])
