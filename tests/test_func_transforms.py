"""torch.func transforms through every hebbkern op with an autograd formula (hebbkern/_func.py).

``torch.library.register_autograd``'s generated autograd.Function has no ``setup_context``, so
functorch refused every op (pytorch/pytorch#168393); hebbkern/_func.py builds a Function from the
same formula and the public functions use it while a transform is active. Here, on the CPU
kernels in float64: ``torch.func.grad``, ``grad_and_value`` and ``vjp`` equal
``torch.autograd.grad``, ``jacrev`` equals ``torch.autograd.functional.jacobian``, ``vmap(grad)``
over a batch of parameters equals a loop; the nn modules through ``functional_call``; a second
derivative still raises where eager raises; the eager, compiled and C++-node paths are untouched.
The Triton backend's ops run the same checks under the interpreter
(interpret_func_transforms_triton.py, a process of its own).
"""

from __future__ import annotations

import pytest
import torch
from func_checks import (
    TOL,
    check_grad_and_vjp,
    check_jacrev,
    check_vmap_grad,
    detached,
    linear_case,
    lstm_case,
    rnn_case,
    step_case,
    tensors,
)
from helpers_step import step_inputs
from triton_env import needs_triton, run_interpreter_suite

import hebbkern
from hebbkern import _func

pytestmark = [
    pytest.mark.skipif(not hebbkern.extension_available(), reason="needs the extension"),
    # vmap batches the ops by PyTorch's per-sample fallback, which warns once per op.
    pytest.mark.filterwarnings("ignore:There is a performance drop because we have not yet"),
]

D = torch.float64


def chain_case():
    """Two steps of one layer: the parameters' gradients accumulate over the steps."""
    call, params = step_case("neuromod", "per_neuron", fanout=True, clamp=True)
    kw = step_inputs("neuromod", "per_neuron", True, True, B=2, N=5, requires_grad=False)

    def two_steps(**p):
        h, hebb = call(**p)
        u2 = torch.tanh(p["u"] + 0.5)
        return tensors(
            hebbkern.plastic_step(
                u2, h, hebb, p["w"], p["alpha"], rule="neuromod", mod_w=p["mod_w"],
                mod_b=p["mod_b"], fanout_w=p["fanout_w"], fanout_b=p["fanout_b"],
                clamp_mask=kw["clamp_mask"], clip=kw["clip"], backend="cpu",
            )
        )  # fmt: skip

    return two_steps, params


def trace_case(rule, shared):
    g = torch.Generator().manual_seed(3)
    B, M, K = 2, 4, 3
    params = {
        "trace": 0.3 * torch.randn((M, K) if shared else (B, M, K), generator=g, dtype=D),
        "pre": torch.randn(B, M, generator=g, dtype=D),
        "post": torch.randn(B, K, generator=g, dtype=D),
        # rule hebb on a shared trace takes a scalar eta; else one per sample and post neuron.
        "eta": 0.1 + 0.3 * torch.rand(() if rule == "hebb" else (B, K), generator=g, dtype=D),
    }
    clip = 0.3 if rule == "clip" else None
    return lambda **p: (hebbkern.trace_update(**p, rule=rule, clip=clip, backend="cpu"),), params


def hebbian_case(kind, rule):
    g = torch.Generator().manual_seed(5)
    if kind == "linear":
        params = {
            "w": 0.5 * torch.randn(3, 4, generator=g, dtype=D),
            "x": torch.randn(2, 4, generator=g, dtype=D),
            "y": torch.randn(2, 3, generator=g, dtype=D),
        }
        conv = {}
    else:
        params = {
            "w": 0.5 * torch.randn(4, 2, 3, 3, generator=g, dtype=D),
            "x": torch.randn(2, 2, 6, 6, generator=g, dtype=D),
            "y": torch.randn(2, 4, 3, 3, generator=g, dtype=D),
        }
        conv = {"stride": 2, "padding": 1}
    return lambda **p: (hebbkern.hebbian_update(**p, rule=rule, backend="cpu", **conv),), params


# (case, the parameter vmap(grad) and jacrev batch over)
CASES = {
    "step-hebb-clamp": (lambda: step_case("hebb", clamp=True), "w"),
    "step-oja-per_sample": (lambda: step_case("oja", "per_sample"), "alpha"),
    "step-neuromod-fanout": (lambda: step_case("neuromod", "per_neuron", fanout=True), "mod_w"),
    "step-retro": (lambda: step_case("retro", "scalar", clamp=True), "w"),
    "step-clip-post_pre": (lambda: step_case("clip", layout="post_pre"), "w"),
    "step-retro-post_pre": (lambda: step_case("retro", layout="post_pre"), "alpha"),
    "step-chain": (chain_case, "w"),
    "step-neuromod-variants": (
        lambda: step_case("neuromod", activation="relu", soft_clip=True, n_modulated=3),
        "w",
    ),
    "rnn-hebb-clamp": (lambda: rnn_case("hebb", clamp=True), "w"),
    "rnn-retro-fanout": (lambda: rnn_case("retro", "per_neuron", fanout=True), "alpha"),
    "rnn-neuromod-post_pre": (lambda: rnn_case("neuromod", layout="post_pre"), "w"),
    "lstm-neuromod": (lambda: lstm_case("neuromod"), "wh"),
    "lstm-retro-drive": (lambda: lstm_case("retro", post="drive"), "alpha"),
    "trace-hebb-per_sample": (lambda: trace_case("hebb", shared=False), "trace"),
    "trace-clip-shared": (lambda: trace_case("clip", shared=True), "eta"),
    "linear-per_sample": (lambda: linear_case("pre_post", shared=False), "w"),
    "linear-shared-post_pre": (lambda: linear_case("post_pre", shared=True), "hebb"),
    "hebbian-linear-oja": (lambda: hebbian_case("linear", "oja"), "w"),
    "hebbian-conv2d-instar": (lambda: hebbian_case("conv2d", "instar"), "x"),
    "hebbian-conv2d-hebb": (lambda: hebbian_case("conv2d", "hebb"), "y"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_grad_vjp_match_autograd(case):
    call, params = CASES[case][0]()
    check_grad_and_vjp(call, params)


@pytest.mark.parametrize("case", sorted(CASES))
def test_jacrev_matches_jacobian(case):
    call, params = CASES[case][0]()
    check_jacrev(call, params, CASES[case][1])


@pytest.mark.parametrize("case", sorted(CASES))
def test_vmap_of_grad_matches_loop(case):
    call, params = CASES[case][0]()
    check_vmap_grad(call, params, CASES[case][1])


# ---------------------------------------------------------------------------------------------
# The modules, through torch.func.functional_call (a MAML-style inner loop's view of them).


def module_case(name):
    torch.manual_seed(6)
    T, B, I, N = 3, 2, 3, 4
    if name == "PlasticRNN":
        model = hebbkern.nn.PlasticRNN(I, N, rule="neuromod", fanout=True, dtype=D)
        x = torch.randn(T, B, I, dtype=D)
    elif name == "PlasticRNNCell":
        model = hebbkern.nn.PlasticRNNCell(I, N, rule="retro", dtype=D)
        x = torch.randn(B, I, dtype=D)
    else:
        model = hebbkern.nn.PlasticLSTM(I, N, num_layers=2, dtype=D)
        x = torch.randn(T, B, I, dtype=D)
    params = detached(dict(model.named_parameters()))

    def call(**p):
        return tensors(torch.func.functional_call(model, p, (x,)))

    return call, params


MODULES = ("PlasticLSTM", "PlasticRNN", "PlasticRNNCell")


@pytest.mark.parametrize("name", MODULES)
def test_module_functional_call(name):
    call, params = module_case(name)
    check_grad_and_vjp(call, params)
    vname = next(k for k in params if k.endswith("w") or "weight_hh" in k)
    check_vmap_grad(call, params, vname)


def test_maml_inner_loop_per_task():
    """A MAML-style inner step per task under vmap: fast weights ``p - lr * grad`` for a batch of
    tasks, then the query loss; equals the same steps by autograd, task by task."""
    call, params = module_case("PlasticRNNCell")
    g = torch.Generator().manual_seed(7)
    targets = torch.randn(3, 2, 4, generator=g, dtype=D)  # 3 tasks

    def task_loss(p, target):
        return (call(**p)[0] - target).square().sum()

    def adapted_loss(target):
        grads = torch.func.grad(task_loss)(params, target)
        fast = {k: v - 0.1 * grads[k] for k, v in params.items()}
        return task_loss(fast, target)

    got = torch.func.vmap(adapted_loss)(targets)
    ref = []
    for target in targets:
        leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
        grads = torch.autograd.grad(task_loss(leaves, target), list(leaves.values()))
        fast = {k: v.detach() - 0.1 * gr for (k, v), gr in zip(leaves.items(), grads, strict=True)}
        ref.append(task_loss(fast, target))
    torch.testing.assert_close(got, torch.stack(ref), **TOL)


# ---------------------------------------------------------------------------------------------
# Second derivatives: as in eager (tests/test_double_backward.py), through the fused backward ops
# they raise (hebbkern/_func.py's node names the forward op).


@pytest.mark.parametrize(
    "case, op",
    [
        ("step-hebb-clamp", "plastic_step_fwd"),
        ("step-clip-post_pre", "plastic_step_fwd_post_pre"),
        ("rnn-hebb-clamp", "plastic_rnn_fwd"),
        ("lstm-neuromod", "plastic_lstm_fwd"),
        ("trace-hebb-per_sample", "trace_update_fwd"),
        ("linear-per_sample", "plastic_linear_fwd"),
    ],
)
def test_second_derivative_raises(case, op):
    call, params = CASES[case][0]()
    name = CASES[case][1]

    def loss(x):
        return sum(o.square().sum() for o in call(**{**params, name: x}))

    x = params[name]
    assert torch.isfinite(torch.func.grad(loss)(x)).all()
    message = f"derivative for the backward of hebbkern::{op} is not implemented"
    with pytest.raises(RuntimeError, match=message):
        torch.func.grad(lambda x: torch.func.grad(loss)(x).sum())(x)
    with pytest.raises(RuntimeError, match=message):
        torch.func.jacrev(torch.func.jacrev(loss))(x)
    # Forward mode (jvp, jacfwd, hessian's forward-over-reverse): no formula, a clear error.
    with pytest.raises(RuntimeError, match="must implement the jvp function"):
        torch.func.hessian(loss)(x)


def test_hebbian_second_derivative_matches_eager():
    """The hebbian ops' backward is made of differentiable ATen ops: a second derivative exists
    in eager and torch.func gives the same."""
    call, params = hebbian_case("conv2d", "oja")

    def loss(w):
        return call(**{**params, "w": w})[0].square().sum()

    w = params["w"]
    got = torch.func.grad(lambda w: torch.func.grad(loss)(w).square().sum())(w)
    leaf = w.clone().requires_grad_()
    (gw,) = torch.autograd.grad(loss(leaf), leaf, create_graph=True)
    (ref,) = torch.autograd.grad(gw.square().sum(), leaf)
    torch.testing.assert_close(got, ref, **TOL)


# ---------------------------------------------------------------------------------------------
# The other paths are untouched.


def test_every_registered_formula_has_a_function():
    """Each forward op with autograd has its Function (the triton ops' register on import)."""
    names = {
        "hebbkern::plastic_step_fwd", "hebbkern::plastic_step_fwd_post_pre",
        "hebbkern::plastic_rnn_fwd", "hebbkern::plastic_lstm_fwd", "hebbkern::plastic_linear_fwd",
        "hebbkern::trace_update_fwd", "hebbkern::hebbian_update_linear",
        "hebbkern::hebbian_update_conv2d",
    }  # fmt: skip
    assert names <= _func._FUNCTIONS.keys()
    for name in names:
        fn = _func._FUNCTIONS[name].function
        assert torch.autograd.function._is_setup_context_defined(fn.setup_context), name


def test_eager_paths_do_not_use_the_function(monkeypatch):
    """Outside transforms no call reaches hebbkern/_func.py: eager autograd keeps plastic_step's
    C++ node and the other ops' registered formula, and torch.compile(fullgraph=True) traces."""

    def refuse(fwd):
        raise AssertionError(f"{fwd} routed through _func outside a transform")

    monkeypatch.setattr(_func, "transformable", refuse)
    for case in ("step-hebb-clamp", "step-clip-post_pre", "rnn-hebb-clamp", "lstm-neuromod",
                 "trace-hebb-per_sample", "linear-per_sample", "hebbian-conv2d-instar"):  # fmt: skip
        call, params = CASES[case][0]()
        leaves = {k: v.requires_grad_() for k, v in detached(params).items()}
        outs = call(**leaves)
        node = type(outs[0].grad_fn).__name__
        if case.startswith("step"):
            assert node == "CppFunction", node  # csrc/cpu/plastic_step_autograd.cpp
        else:
            assert node.startswith("GeneratedBackwardFor_hebbkern_"), node
        sum(o.sum() for o in outs).backward()
    for case in ("step-hebb-clamp", "linear-per_sample"):
        call, params = CASES[case][0]()
        leaves = {k: v.requires_grad_() for k, v in detached(params).items()}
        torch.compile(lambda p, call=call: call(**p)[0].sum(), fullgraph=True)(leaves).backward()


def test_keyword_only_arguments():
    """An op with a keyword-only argument: setup_context receives it as keyword_only_inputs and
    the backward sees needs_input_grad for the positional arguments (register_autograd's
    convention), under torch.func and in eager alike."""
    seen = []

    @torch.library.custom_op("hebbkern_func_test::scale", mutates_args=())
    def scale(x: torch.Tensor, y: torch.Tensor, *, k: float) -> torch.Tensor:
        return x * y * k

    @scale.register_fake
    def _(x, y, *, k):
        return torch.empty_like(x)

    def setup_context(ctx, inputs, keyword_only_inputs, output):
        ctx.save_for_backward(*inputs)
        ctx.k = keyword_only_inputs["k"]

    def backward(ctx, grad):
        seen.append(tuple(ctx.needs_input_grad))
        x, y = ctx.saved_tensors
        return grad * y * ctx.k, grad * x * ctx.k

    _func.register_autograd(scale, backward, setup_context)
    x, y = torch.randn(3, dtype=D), torch.randn(3, dtype=D)
    fwd = _func.transformable(scale)
    gx = torch.func.grad(lambda x: fwd(x, y, k=2.5).sum())(x)
    torch.testing.assert_close(gx, 2.5 * y)
    assert seen[-1] == (True, False)
    leaf = x.clone().requires_grad_()
    scale(leaf, y, k=2.5).sum().backward()
    torch.testing.assert_close(leaf.grad, 2.5 * y)
    assert seen[-1] == (True, False)
    gy = torch.func.vmap(torch.func.grad(lambda y, x: fwd(x, y, k=2.0).sum()))(
        torch.randn(4, 3, dtype=D), torch.randn(4, 3, dtype=D)
    )
    assert gy.shape == (4, 3)


@needs_triton
def test_triton_interpreter_suite():
    """interpret_func_transforms_triton.py in its own pytest process (TRITON_INTERPRET=1)."""
    run_interpreter_suite("interpret_func_transforms_triton.py", timeout=600)
