"""torch.func transforms through the Triton ops (hebbkern/_func.py) on CPU tensors under the Triton
interpreter: the checks of test_func_transforms.py with ``backend="triton"``.

Run by test_func_transforms.py::test_triton_interpreter_suite in its own pytest process with
``TRITON_INTERPRET=1`` set before triton is imported (the name does not match ``test_*.py``). By
hand::

    cd tests && TRITON_INTERPRET=1 python -m pytest interpret_func_transforms_triton.py -q
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs TRITON_INTERPRET=1 set before triton is imported", allow_module_level=True)

from func_checks import (  # noqa: E402
    check_grad_and_vjp,
    check_jacrev,
    check_vmap_grad,
    linear_case,
    lstm_case,
    rnn_case,
    step_case,
)

# vmap batches the ops by PyTorch's per-sample fallback, which warns once per op.
pytestmark = pytest.mark.filterwarnings(
    "ignore:There is a performance drop because we have not yet"
)

T = "triton"
# (case, the parameter vmap(grad) batches over): one or two rules per family, kept small (the
# interpreter runs each kernel per sample under vmap).
CASES = {
    "step-neuromod-fanout": (lambda: step_case("neuromod", "per_neuron", True, backend=T), "mod_w"),
    "step-retro-post_pre": (lambda: step_case("retro", layout="post_pre", backend=T), "w"),
    "rnn-hebb-clamp": (lambda: rnn_case("hebb", clamp=True, backend=T), "w"),
    "rnn-retro": (lambda: rnn_case("retro", "per_neuron", backend=T), "alpha"),
    "lstm-neuromod": (lambda: lstm_case("neuromod", backend=T), "wh"),
    "linear-per_sample": (lambda: linear_case("pre_post", shared=False, backend=T), "w"),
}
MODULES = {
    "step": "hebbkern.triton.plastic_step_ops",
    "rnn": "hebbkern.triton.plastic_rnn_ops",
    "lstm": "hebbkern.triton.plastic_lstm_ops",
    "linear": "hebbkern.triton.plastic_linear_ops",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_grad_vjp_match_autograd(case):
    call, params = CASES[case][0]()
    check_grad_and_vjp(call, params)
    assert MODULES[case.split("-")[0]] in sys.modules  # the Triton op ran


@pytest.mark.parametrize("case", sorted(CASES))
def test_vmap_of_grad_matches_loop(case):
    call, params = CASES[case][0]()
    check_vmap_grad(call, params, CASES[case][1], n=2)


@pytest.mark.parametrize("case", ["step-neuromod-fanout", "linear-per_sample"])
def test_jacrev_matches_jacobian(case):
    call, params = CASES[case][0]()
    check_jacrev(call, params, CASES[case][1])


def test_second_derivative_raises():
    """The Triton backward op has no derivative: a second derivative raises, as in eager."""
    call, params = CASES["linear-per_sample"][0]()

    def loss(w):
        return call(**{**params, "w": w})[0].square().sum()

    w = params["w"]
    message = (
        "derivative for the backward of hebbkern::plastic_linear_triton_fwd is not implemented"
    )
    with pytest.raises(RuntimeError, match=message):
        torch.func.grad(lambda w: torch.func.grad(loss)(w).sum())(w)
    # Eager: PyTorch's error for a custom op without autograd (the Triton backward op).
    leaf = w.clone().requires_grad_()
    (gw,) = torch.autograd.grad(loss(leaf), leaf, create_graph=True)
    with pytest.raises(RuntimeError, match="plastic_linear_triton_bwd.* no autograd formula"):
        torch.autograd.grad(gw.sum(), leaf)
