"""``hebbkern.nn.DHPSoftmax`` (SPEC.md section 3) against the loop form of the class-mean update,
and the drop-in proof: an MLP with a DHP Softmax head trained across two tasks with EWC on the
slow weights matches a paper-style eager implementation step by step."""

from __future__ import annotations

import io

import pytest
import torch
from helpers import rel_err
from torch import nn

from hebbkern.consolidation import EWC
from hebbkern.nn import DHPSoftmax
from hebbkern.reference.dhp_softmax import dhp_softmax_logits, dhp_trace_update


def test_loop_form_by_hand():
    """Two classes present (one twice), one absent: the absent column does not decay."""
    hebb = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    h = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    y = torch.tensor([2, 2, 0])
    new = dhp_trace_update(hebb, h, y, 0.5)
    # class 2: mean [2, 1]: 0.5 * [3, 6] + 0.5 * [2, 1]; class 0: 0.5 * [1, 4] + 0.5 * [5, 5].
    assert torch.equal(new, torch.tensor([[3.0, 2.0, 2.5], [4.5, 5.0, 3.5]]))


@pytest.mark.parametrize("B, M, K", [(1, 3, 4), (7, 5, 3), (33, 16, 10)])
def test_module_matches_loop_reference(B, M, K):
    torch.manual_seed(B)
    layer = DHPSoftmax(M, K, dtype=torch.float64)
    with torch.no_grad():
        layer.hebb.copy_(torch.randn(M, K, dtype=torch.float64))
        layer.eta.fill_(0.3)
    hebb0 = layer.hebb.clone()
    h = torch.randn(B, M, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, K - 1, (B,))  # class K - 1 is always absent
    z = layer(h, y)
    ref_hebb = dhp_trace_update(hebb0, h, y, layer.eta)
    z_ref = dhp_softmax_logits(h, layer.theta, layer.alpha, ref_hebb)
    assert rel_err(z, z_ref) < 1e-12
    assert rel_err(layer.hebb, ref_hebb) < 1e-12
    assert torch.equal(layer.hebb[:, K - 1], hebb0[:, K - 1])
    assert not layer.hebb.requires_grad
    w = torch.randn(B, K, dtype=torch.float64)
    params = [h, layer.theta, layer.alpha, layer.eta]
    g = torch.autograd.grad((z * w).sum(), params)
    g_ref = torch.autograd.grad((z_ref * w).sum(), params)
    for a, b in zip(g, g_ref, strict=True):
        assert b.norm() > 0 and rel_err(a, b) < 1e-12


def test_eval_and_no_target_leave_the_trace():
    layer = DHPSoftmax(4, 3)
    h, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    layer(h, y)
    before = layer.hebb.clone()
    assert before.abs().sum() > 0
    layer(h)  # training, no target
    assert torch.equal(layer.hebb, before)
    layer.eval()
    z = layer(h, y)
    assert torch.equal(layer.hebb, before)
    assert torch.allclose(z, h @ (layer.theta + layer.alpha * before))
    layer.reset_trace()
    assert layer.hebb.abs().sum() == 0


def test_graph_does_not_grow_across_batches():
    layer = DHPSoftmax(4, 3)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    for _ in range(3):  # backward of each batch alone works: the trace was detached in between
        opt.zero_grad()
        loss = nn.functional.cross_entropy(layer(torch.randn(6, 4), torch.randint(0, 3, (6,))),
                                           torch.randint(0, 3, (6,)))  # fmt: skip
        loss.backward()
        assert layer.eta.grad is not None and layer.eta.grad != 0
        opt.step()
        assert layer.hebb.grad_fn is None


def test_state_dict_round_trip_and_repr():
    a = DHPSoftmax(5, 4)
    a(torch.randn(3, 5), torch.tensor([0, 1, 1]))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = DHPSoftmax(5, 4)
    b.load_state_dict(torch.load(buf))
    assert set(a.state_dict()) == {"theta", "alpha", "eta", "hebb"}
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    assert repr(a) == "DHPSoftmax(in_features=5, num_classes=4)"
    assert ((a.alpha >= 0) & (a.alpha < 0.01)).all()
    d = DHPSoftmax(5, 4, dtype=torch.float64)
    assert d.hebb.dtype == torch.float64 and d.theta.dtype == torch.float64


def test_errors():
    layer = DHPSoftmax(4, 3)
    with pytest.raises(ValueError, match="in_features"):
        DHPSoftmax(0, 3)
    with pytest.raises(TypeError, match="h must be a torch.Tensor"):
        layer([1.0])
    with pytest.raises(ValueError, match=r"h must have shape \[B, 4\]"):
        layer(torch.randn(2, 5))
    with pytest.raises(TypeError, match="h must have dtype"):
        layer(torch.randn(2, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="target must be an int64"):
        layer(torch.randn(2, 4), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="target must have shape"):
        layer(torch.randn(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="class indices"):
        layer(torch.randn(2, 4), torch.tensor([0, 3]))


class PaperDHPNet(nn.Module):
    """An MLP with a DHP Softmax head in the style of the paper's code: the Hebbian trace is a
    plain tensor attribute updated by a loop over the classes of the batch."""

    def __init__(self, d_in, d_hid, n_cls):
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hid)
        self.w = nn.Parameter(torch.empty(d_hid, n_cls))
        self.alpha = nn.Parameter(torch.empty(d_hid, n_cls))
        self.eta = nn.Parameter(0.001 * torch.ones(1))
        self.hebb = torch.zeros(d_hid, n_cls)

    def forward(self, x, y=None):
        h = torch.relu(self.fc1(x))
        hebb = self.hebb
        if self.training and y is not None:
            hebb = self.hebb.clone()
            for c in torch.unique(y):
                mask = y == c
                hebb[:, c] = (1 - self.eta) * self.hebb[:, c] + self.eta * h[mask].mean(0)
        out = h.mm(self.w + self.alpha * hebb)
        self.hebb = hebb.detach()
        return out


class OurNet(nn.Module):
    def __init__(self, d_in, d_hid, n_cls):
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hid)
        self.head = DHPSoftmax(d_hid, n_cls)

    def forward(self, x, y=None):
        return self.head(torch.relu(self.fc1(x)), y)


def paper_fisher(model, xs, ys, params):
    """Diagonal empirical Fisher of the EWC paper: squared per-sample gradients, averaged."""
    fisher = [torch.zeros_like(p) for p in params]
    model.eval()
    for x, y in zip(xs, ys, strict=True):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[None]), y[None]).backward()
        for f, p in zip(fisher, params, strict=True):
            f += p.grad.detach() ** 2
    model.train()
    return [f / len(xs) for f in fisher]


def test_mlp_with_dhp_head_two_tasks_with_ewc():
    torch.manual_seed(0)
    D, Hd, K, lam = 6, 8, 4, 5.0
    paper, ours = PaperDHPNet(D, Hd, K), OurNet(D, Hd, K)
    ours.head.eta.data.fill_(0.001)
    with torch.no_grad():
        ours.fc1.load_state_dict(paper.fc1.state_dict())
        paper.w.copy_(ours.head.theta)
        paper.alpha.copy_(ours.head.alpha)
    slow_p = [paper.fc1.weight, paper.fc1.bias, paper.w]  # the slow weights only
    ewc = EWC([("fc1.weight", ours.fc1.weight), ("fc1.bias", ours.fc1.bias),
               ("theta", ours.head.theta)], strength=lam)  # fmt: skip
    opt_p = torch.optim.SGD(paper.parameters(), lr=0.2)
    opt_o = torch.optim.SGD(ours.parameters(), lr=0.2)
    tasks = [(0, 1), (2, 3)]
    old = None
    for task, classes in enumerate(tasks):
        xs = torch.randn(40, D) + 2.0 * task
        ys = torch.tensor(classes)[torch.randint(0, 2, (40,))]
        for step in range(8):
            x, y = xs[step * 5 : (step + 1) * 5], ys[step * 5 : (step + 1) * 5]
            opt_p.zero_grad()
            opt_o.zero_grad()
            loss_p = nn.functional.cross_entropy(paper(x, y), y)
            if old is not None:
                fisher, anchor = old
                loss_p = loss_p + lam * sum(
                    (f * (p - a) ** 2).sum() for f, p, a in zip(fisher, slow_p, anchor, strict=True)
                )
            loss_o = nn.functional.cross_entropy(ours(x, y), y) + ewc()
            assert abs(loss_o.item() - loss_p.item()) < 1e-5, (task, step)
            loss_p.backward()
            loss_o.backward()
            pairs = [(paper.fc1.weight, ours.fc1.weight), (paper.w, ours.head.theta),
                     (paper.alpha, ours.head.alpha), (paper.eta, ours.head.eta)]  # fmt: skip
            for a, b in pairs:
                assert rel_err(b.grad.reshape(a.shape), a.grad) < 1e-4, (task, step)
            opt_p.step()
            opt_o.step()
            assert rel_err(ours.head.hebb, paper.hebb) < 1e-5
        # End of the task: importance of the slow weights, anchored at their current values.
        fisher = paper_fisher(paper, xs[:10], ys[:10], slow_p)
        old = (fisher, [p.detach().clone() for p in slow_p])
        ours.eval()
        closures = [
            (lambda x=x, y=y: nn.functional.cross_entropy(ours(x[None]), y[None]))
            for x, y in zip(xs[:10], ys[:10], strict=True)
        ]
        imp = ewc.consolidate(closures)
        ours.train()
        for f, name in zip(fisher, ("fc1.weight", "fc1.bias", "theta"), strict=True):
            assert rel_err(imp[name], f) < 1e-5
    assert ewc() > 0
