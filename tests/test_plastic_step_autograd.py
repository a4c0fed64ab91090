"""The C++ autograd node of the eager CPU ``plastic_step`` (csrc/cpu/plastic_step_autograd.cpp,
reached through ``torch.ops.hebbkern._plastic_step_eager``) against the eager reference and
against the op's registered torch.library autograd (the route of torch.compile, opcheck and
functorch): same kernels, so the same bits, for every rule, layout, alpha kind, per-sample w,
clamp mask, fan-out and subset of inputs requiring a gradient."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers import (
    MODULATED_RULES,
    RULES,
    assert_grads_close,
    assert_low_precision_rule,
    assert_outputs_close,
    clone_inputs,
    grad_names,
)
from helpers_step import (
    STEP_ALPHA_KINDS,
    assert_identical_runs,
    run_step,
    step_inputs,
    step_outputs,
)

import hebbkern
from hebbkern import _extension

pytestmark = pytest.mark.skipif(not _extension.available(), reason="needs the C++ extension")

NODE = "PlasticStepEager"  # the C++ Function's name, part of its node's name()
TOL = {torch.float64: 1e-8, torch.float32: 1e-4}
LAYOUTS = ("pre_post", "post_pre")


def _node_name(kw: dict) -> str | None:
    st = hebbkern.plastic_step(**clone_inputs(kw), backend="cpu")
    return None if st.h.grad_fn is None else st.h.grad_fn.name()


def _registered(monkeypatch) -> None:
    """From now on plastic_step takes torch.compile's route: the op with its registered autograd."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)


def _run_both(monkeypatch, kw: dict, loss_on=("h", "hebb", "elig")):
    """(node outputs, node grads), (registered outputs, registered grads) on copies of ``kw``."""
    node = run_step(clone_inputs(kw), "cpu", loss_on)
    with monkeypatch.context() as m:
        _registered(m)
        assert NODE not in (_node_name(kw) or "")
        reg = run_step(clone_inputs(kw), "cpu", loss_on)
    return node, reg


def _assert_matches_reference(kw: dict, node, tol: float, loss_on=("h", "hebb", "elig")) -> None:
    on, gn = node
    kr = clone_inputs(kw, torch.float64)
    orf, gr = run_step(kr, "reference", loss_on)
    assert_outputs_close(on, orf, kw["u"].dtype, tol)
    assert_grads_close(gn, gr, kw, kr, grad_names(kw), tol, "cpu", False)


def _cases():
    """Every rule with every alpha kind; fan-out, clamp mask and per-sample w spread over them."""
    for i, rule in enumerate(RULES):
        for j, ak in enumerate(STEP_ALPHA_KINDS):
            fan = rule in MODULATED_RULES and (i + j) % 2 == 0
            clamp = (i + j) % 2 == 1
            per_sample_w = j % 2 == 0
            cid = f"{rule}-{ak}{'-fan' if fan else ''}{'-clamp' if clamp else ''}"
            yield pytest.param(rule, ak, fan, clamp, per_sample_w, id=cid + ("-ws" * per_sample_w))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp, per_sample_w", list(_cases()))
def test_node_matches_registered_and_reference(
    monkeypatch, nan_poison, layout, rule, alpha_kind, fanout, clamp, per_sample_w
):
    kw = step_inputs(rule, alpha_kind, fanout, clamp, B=3, N=9, per_sample_w=per_sample_w, seed=7)
    kw["layout"] = layout
    assert NODE in _node_name(kw)
    node, reg = _run_both(monkeypatch, kw)
    assert_identical_runs(node, reg)
    _assert_matches_reference(kw, node, TOL[torch.float64])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("rule", ["hebb", "neuromod", "retro"])
def test_float32(monkeypatch, nan_poison, layout, rule):
    kw = step_inputs(rule, "per_neuron", rule != "hebb", True, B=4, N=13, dtype=torch.float32)
    kw["layout"] = layout
    node, reg = _run_both(monkeypatch, kw)
    assert_identical_runs(node, reg)
    _assert_matches_reference(kw, node, TOL[torch.float32])


# Which inputs require a gradient: each alone, a few mixes, and the trace inputs only.
SUBSETS = [("u",), ("h",), ("hebb",), ("w",), ("alpha",), ("eta",), ("mod_w",), ("mod_b",),
           ("fanout_w", "fanout_b"), ("elig",), ("u", "w"), ("hebb", "elig", "alpha"),
           ("w", "alpha", "mod_w", "mod_b")]  # fmt: skip


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("rule", ["neuromod", "retro"])
@pytest.mark.parametrize("subset", SUBSETS, ids=lambda s: "+".join(s))
def test_requires_grad_subsets(monkeypatch, layout, rule, subset):
    kw = step_inputs(rule, "per_connection", True, False, B=2, N=6, seed=3)
    kw["layout"] = layout
    keep = [k for k in subset if k in kw]
    if not keep:
        pytest.skip(f"rule {rule} takes none of {subset}")
    for k, v in kw.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            kw[k] = v.detach().requires_grad_(k in keep)
    assert NODE in _node_name(kw)
    node, reg = _run_both(monkeypatch, kw)
    assert set(node[1]) == set(keep)
    assert_identical_runs(node, reg)
    _assert_matches_reference(kw, node, TOL[torch.float64])


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("loss_on", [("h",), ("hebb",), ("elig",)], ids=lambda s: s[0])
def test_partial_losses(monkeypatch, rule, loss_on):
    """A loss on one output only: the node gets zeros for the others (materialised, as before)."""
    if loss_on == ("elig",) and rule != "retro":
        pytest.skip("elig only for retro")
    kw = step_inputs(rule, "per_neuron", rule in MODULATED_RULES, True, B=2, N=7, seed=5)
    node, reg = _run_both(monkeypatch, kw, loss_on)
    assert_identical_runs(node, reg)


def test_no_node_without_grad():
    kw = step_inputs("neuromod", "per_connection", True, False, requires_grad=False)
    assert _node_name(kw) is None  # nothing requires grad: outputs without grad_fn
    kw = step_inputs("neuromod", "per_connection", True, False)
    with torch.no_grad():
        st = hebbkern.plastic_step(**kw, backend="cpu")
    assert st.h.grad_fn is None and not st.h.requires_grad


def test_low_precision(monkeypatch):
    """bfloat16 inputs: computed in float32 through the node; same bits as the registered path,
    and flash-attention's rule against the float64 reference."""
    kw = step_inputs("neuromod", "per_neuron", True, True, B=3, N=10, dtype=torch.float32, seed=2)
    low = clone_inputs(kw, torch.bfloat16)
    node, reg = _run_both(monkeypatch, low)
    assert_identical_runs(node, reg)
    ref_low = run_step(clone_inputs(kw, torch.bfloat16), "reference")
    exact = run_step(clone_inputs(kw, torch.float64), "reference")
    assert_low_precision_rule(node, ref_low, exact, torch.bfloat16)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("rule, alpha_kind", [("hebb", "per_connection"), ("oja", "scalar"),
                                              ("clip", "per_neuron"), ("neuromod", "per_sample"),
                                              ("retro", "per_neuron")])  # fmt: skip
def test_gradcheck(layout, rule, alpha_kind):
    kw = step_inputs(rule, alpha_kind, rule in MODULATED_RULES, rule == "clip", B=2, N=4, seed=9)
    names = grad_names(kw)
    rest = {k: v for k, v in kw.items() if k not in names}
    seen = set()

    def f(*xs):
        st = hebbkern.plastic_step(
            **dict(zip(names, xs, strict=True)), **rest, backend="cpu", layout=layout
        )
        if st.h.grad_fn is not None:
            seen.add(st.h.grad_fn.name())
        return tuple(step_outputs(st).values())

    assert torch.autograd.gradcheck(f, tuple(kw[k] for k in names))
    assert seen and all(NODE in s for s in seen), seen


def test_saved_input_modified_in_place_raises():
    """The node saves its inputs as SavedVariables: changing one before the backward is caught."""
    kw = step_inputs("hebb", "per_connection")
    st = hebbkern.plastic_step(**kw, backend="cpu")
    with torch.no_grad():
        kw["hebb"].add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        st.h.sum().backward()


@pytest.mark.parametrize("path", ["node", "registered"])
def test_double_backward_raises(monkeypatch, path):
    """Neither path has a formula for the second derivative: a create_graph backward works (first
    order, same values on both paths), and backpropagating through its result raises (the backward
    ops' Autograd kernel, csrc/ops.cpp), where PyTorch's default fallback warned and returned a
    silently zero second derivative."""
    kw = step_inputs("hebb", "per_connection", B=2, N=5)
    kw0 = clone_inputs(kw)
    (g_ref,) = torch.autograd.grad(
        hebbkern.plastic_step(**kw0, backend="cpu").h.pow(2).sum(), kw0["w"]
    )
    if path == "registered":
        _registered(monkeypatch)
    kw = clone_inputs(kw)
    st = hebbkern.plastic_step(**kw, backend="cpu")
    (gw,) = torch.autograd.grad(st.h.pow(2).sum(), kw["w"], create_graph=True)
    assert torch.equal(gw.detach(), g_ref)
    with pytest.raises(RuntimeError, match="derivative for hebbkern::plastic_step_bwd is not"):
        torch.autograd.grad(gw.sum(), kw["w"])


def test_functorch_uses_registered_autograd():
    """torch.func.vmap with an input requiring grad outside it: the C++ node refuses functorch
    transforms, so this passing (values and gradients equal to a loop of eager calls, which use
    the node) shows the registered autograd was used inside the transform."""
    kw = step_inputs("neuromod", "per_neuron", True, True, B=2, N=6, seed=4)
    kw["layout"] = "post_pre"
    us = torch.randn(
        3, *kw["u"].shape, dtype=kw["u"].dtype, generator=torch.Generator().manual_seed(0)
    )

    def f(u):
        return hebbkern.plastic_step(**{**kw, "u": u}, backend="cpu").h

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the vmap fallback's "performance drop" warning
        out = torch.func.vmap(f)(us)
    loop = torch.stack([f(u) for u in us])
    assert torch.equal(out.detach(), loop.detach())
    (g,) = torch.autograd.grad(out.sum(), kw["w"])
    (g_loop,) = torch.autograd.grad(loop.sum(), kw["w"])
    torch.testing.assert_close(g, g_loop, rtol=1e-12, atol=1e-14)


def test_compile_uses_registered_ops():
    """torch.compile(fullgraph=True) traces the registered forward op, never the eager node's op."""
    kw = step_inputs("retro", "per_connection", True, False, B=2, N=5)
    seen: set[str] = set()

    def backend(gm, example_inputs):
        for node in gm.graph.nodes:
            if node.op == "call_function":
                seen.add(str(node.target))
        return gm.forward

    names = grad_names(kw)
    rest = {k: v for k, v in kw.items() if k not in names}

    def f(*xs):
        st = hebbkern.plastic_step(**dict(zip(names, xs, strict=True)), **rest, backend="cpu")
        return st.h.sum() + st.hebb.sum() + st.elig.sum()

    torch._dynamo.reset()
    xs = [kw[k] for k in names]
    out = torch.compile(f, backend=backend, fullgraph=True)(*xs)
    grads = torch.autograd.grad(out, xs)
    assert any("plastic_step_fwd" in s for s in seen), seen
    assert not any("_plastic_step_eager" in s for s in seen), seen
    ys = [x.detach().requires_grad_() for x in xs]
    expect = torch.autograd.grad(f(*ys), ys)  # eager: the C++ node
    for a, b in zip(grads, expect, strict=True):
        assert torch.equal(a, b)
