"""The eager autograd path of the CPU ``plastic_step`` (the C++ node of
csrc/cpu/plastic_step_autograd.cpp, which skips torch.library's per-call Python wrapper) against
the op's registered autograd, which torch.compile and opcheck use: same kernels, so the same bits, for every rule and both layouts."""

from __future__ import annotations

import pytest
import torch
from helpers_step import assert_identical_runs, run_step, step_inputs

from hebbkern import _extension

pytestmark = pytest.mark.skipif(not _extension.available(), reason="needs the C++ extension")

EAGER_NODE = "PlasticStepEager"  # part of the C++ node's name()


def _grad_fn_name(kw: dict) -> str:
    import hebbkern

    st = hebbkern.plastic_step(**kw, backend="cpu")
    return st.h.grad_fn.name()


@pytest.mark.parametrize("layout", ["pre_post", "post_pre"])
@pytest.mark.parametrize(
    "rule,alpha_kind,fanout,clamp",
    [
        ("hebb", "per_connection", False, False),
        ("oja", "per_neuron", False, True),
        ("neuromod", "per_connection", True, False),
        ("retro", "scalar", True, True),
        ("gated", "per_sample", False, False),
    ],
)
def test_eager_path_equals_registered_autograd(
    monkeypatch, layout, rule, alpha_kind, fanout, clamp
):
    kw = step_inputs(rule, alpha_kind, fanout, clamp, B=3, N=9)
    kw["layout"] = layout
    eager_out, eager_grads = run_step(kw, "cpu")
    assert EAGER_NODE in _grad_fn_name(kw)
    # torch.compile's route: plastic_step then calls the op with its registered autograd.
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert EAGER_NODE not in _grad_fn_name(kw)
    assert_identical_runs((eager_out, eager_grads), run_step(kw, "cpu"))


def test_eager_path_not_used_without_grad():
    kw = step_inputs("hebb", requires_grad=False)
    with torch.no_grad():
        import hebbkern

        st = hebbkern.plastic_step(**kw, backend="cpu")
    assert st.h.grad_fn is None
