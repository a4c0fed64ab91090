"""torch.export and torch.compile of every module (issue 21, items 3 and 4 of the defects and
item 4 of the work): export with a dynamic batch and sequence length, ``torch.export.save`` /
``load`` round trip, outputs equal to eager on shapes other than the example's; modules and ops
compiled with ``fullgraph=True`` in training mode (forward and backward equal to eager)."""

from __future__ import annotations

import io

import pytest
import torch
from torch.export import Dim

import hebbkern
from hebbkern.nn import (
    DHPSoftmax,
    HebbianConv2d,
    HebbianLinear,
    PlasticLSTM,
    PlasticRNN,
    PlasticRNNCell,
)

pytestmark = pytest.mark.skipif(
    not hebbkern.extension_available(), reason="the compiled extension is not built"
)

T_, B_ = Dim("T", min=2, max=64), Dim("B", min=2, max=64)


def _leaves(x):
    return [t for t in torch.utils._pytree.tree_leaves(x) if isinstance(t, torch.Tensor)]


def _assert_equal_outputs(got, want, rtol=1e-6, atol=1e-6):
    g, w = _leaves(got), _leaves(want)
    assert len(g) == len(w)
    for a, b in zip(g, w, strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def _round_trip(ep):
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    buf.seek(0)
    return torch.export.load(buf)


# (name, module factory, example args, dynamic shapes, other args to compare on)
def _export_cases():
    torch.manual_seed(0)
    yield (
        "rnn-hebb", lambda: PlasticRNN(3, 5), (torch.randn(4, 3, 3),),
        ({0: T_, 1: B_},), (torch.randn(7, 5, 3),),
    )  # fmt: skip
    yield (
        "rnn-retro-fanout", lambda: PlasticRNN(3, 5, rule="retro", fanout=True),
        (torch.randn(4, 3, 3),), ({0: T_, 1: B_},), (torch.randn(9, 2, 3),),
    )  # fmt: skip
    yield (
        "cell-neuromod", lambda: PlasticRNNCell(3, 5, rule="neuromod"), (torch.randn(3, 3),),
        ({0: B_},), (torch.randn(6, 3),),
    )  # fmt: skip
    yield (
        "lstm", lambda: PlasticLSTM(3, 4, num_layers=2), (torch.randn(4, 3, 3),),
        ({0: T_, 1: B_},), (torch.randn(6, 5, 3),),
    )  # fmt: skip
    yield (
        "dhp-eval", lambda: DHPSoftmax(4, 3).eval(), (torch.randn(3, 4),), ({0: B_},),
        (torch.randn(7, 4),),
    )  # fmt: skip
    yield (
        "hebbian-linear", lambda: HebbianLinear(4, 6), (torch.randn(3, 4),), ({0: B_},),
        (torch.randn(8, 4),),
    )  # fmt: skip
    yield (
        "hebbian-conv", lambda: HebbianConv2d(2, 4, 3, padding=1), (torch.randn(3, 2, 6, 6),),
        ({0: B_},), (torch.randn(5, 2, 6, 6),),
    )  # fmt: skip


EXPORT_CASES = list(_export_cases())


@pytest.mark.parametrize("case", EXPORT_CASES, ids=[c[0] for c in EXPORT_CASES])
def test_export_dynamic_save_load_equals_eager(case):
    name, make, example, dyn, other = case
    torch.manual_seed(1)
    module = make()
    ep = torch.export.export(module, example, dynamic_shapes=dyn)
    loaded = _round_trip(ep).module()
    for args in (example, other):
        _assert_equal_outputs(loaded(*args), module(*args))


def test_export_keeps_T_symbolic():
    """The issue's failure: 'You marked T as dynamic but your code specialized it'."""
    ep = torch.export.export(PlasticRNN(3, 5), (torch.randn(4, 3, 3),),
                             dynamic_shapes=({0: T_, 1: B_},))  # fmt: skip
    x = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == "x")
    T, B = x.meta["val"].shape[:2]
    assert isinstance(T, torch.SymInt) and isinstance(B, torch.SymInt)


def test_plastic_state_treespec_serialises():
    from torch.utils import _pytree as pytree

    st = hebbkern.PlasticState(torch.zeros(1), torch.zeros(1), None)
    spec = pytree.tree_flatten(st)[1]
    assert pytree.treespec_loads(pytree.treespec_dumps(spec)) == spec
    lst = hebbkern.PlasticLSTMState(torch.zeros(1), torch.zeros(1), torch.zeros(1), None)
    spec = pytree.tree_flatten(lst)[1]
    assert pytree.treespec_loads(pytree.treespec_dumps(spec)) == spec


# ---- torch.compile(fullgraph=True) in training mode ------------------------------------------


def _compile_train_case(make, args, backend, target=None):
    torch.manual_seed(2)
    eager = make().train()
    compiled_mod = make().train()
    compiled_mod.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_mod, fullgraph=True, backend=backend)
    extra = () if target is None else (target,)
    for _ in range(2):  # a second batch: stored traces (DHP) carry over
        want = eager(*args, *extra)
        got = compiled(*args, *extra)
        _assert_equal_outputs(got, want, rtol=1e-5, atol=1e-6)
        sum(t.sum() for t in _leaves(want)).backward()
        sum(t.sum() for t in _leaves(got)).backward()
    for (n, p), q in zip(eager.named_parameters(), compiled_mod.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=n)


TRAIN_CASES = {
    "rnn": (lambda: PlasticRNN(3, 5, rule="neuromod", fanout=True), (torch.randn(4, 2, 3),)),
    "cell": (lambda: PlasticRNNCell(3, 5, rule="retro"), (torch.randn(2, 3),)),
    "lstm": (lambda: PlasticLSTM(3, 4), (torch.randn(4, 2, 3),)),
    "hebbian-linear": (lambda: HebbianLinear(4, 6), (torch.randn(3, 4),)),
}


@pytest.mark.parametrize("name", list(TRAIN_CASES))
def test_modules_compile_fullgraph_training(name):
    make, args = TRAIN_CASES[name]
    _compile_train_case(make, args, "aot_eager")


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_dhp_softmax_compiles_fullgraph_in_training_mode(backend):
    """The issue's failure: the data-dependent target check broke the graph."""
    target = torch.tensor([0, 2, 2, 1, 0])
    _compile_train_case(lambda: DHPSoftmax(4, 3), (torch.randn(5, 4),), backend, target)


def test_dhp_softmax_compiled_still_refuses_bad_targets():
    head = torch.compile(DHPSoftmax(4, 3), fullgraph=True, backend="aot_eager")
    with pytest.raises(RuntimeError, match="target must hold class indices"):
        head(torch.randn(2, 4), torch.tensor([0, 3]))


def _r(*s):
    return (0.3 * torch.randn(s)).requires_grad_()


# name: (function of the tensors, tensors)
OP_CASES = {
    "plastic_rnn": (
        lambda u, w, a: hebbkern.plastic_rnn(u, w, a, eta=0.1),
        (3, 2, 4),
        (4, 4),
        (4, 4),
    ),
    "plastic_step": (
        lambda u, h, H, w, a, m: hebbkern.plastic_step(u, h, H, w, a, rule="neuromod", mod_w=m),
        (2, 4),
        (2, 4),
        (2, 4, 4),
        (4, 4),
        (4,),
        (4,),
    ),
    "trace_update": (
        lambda t, x, y, e: hebbkern.trace_update(t, x, y, rule="oja", eta=e),
        (3, 4),
        (2, 3),
        (2, 4),
        (2, 4),
    ),
    "plastic_linear": (hebbkern.plastic_linear, (2, 3), (3, 4), (4,), (2, 3, 4)),
    "plastic_lstm": (
        lambda u, wh, a, m: hebbkern.plastic_lstm(u, wh, a, mod_w=m),
        (3, 2, 8),
        (2, 8),
        (2, 2),
        (2,),
    ),
    "hebbian": (hebbkern.hebbian_update, (4, 3), (5, 3), (5, 4)),
}


@pytest.mark.parametrize("name", list(OP_CASES))
def test_ops_compile_fullgraph_with_grad(name):
    fn, *shapes = OP_CASES[name]
    torch.manual_seed(3)
    args = [_r(*s) for s in shapes]

    def loss(*t):
        return sum(o.square().sum() for o in _leaves(fn(*t)))

    want = loss(*args)
    gw = torch.autograd.grad(want, args)
    got = torch.compile(loss, fullgraph=True, backend="aot_eager")(*args)
    gg = torch.autograd.grad(got, args)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(gg, gw, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
