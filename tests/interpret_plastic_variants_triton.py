"""The Triton kernels of plastic_rnn with the variants of SPEC.md section 1.1, on CPU tensors under
the Triton interpreter, against the reference (forward, final states, every gradient; float64
tight, float32 within the suite's tolerance; odd sizes: N = 11 and 37 span several row blocks of
the interpreter's 8 and a partial one).

Run by test_plastic_variants.py::test_triton_interpreter_suite in its own process with
``TRITON_INTERPRET=1`` set before triton is imported. By hand::

    cd tests && TRITON_INTERPRET=1 python -m pytest interpret_plastic_variants_triton.py -q
"""

from __future__ import annotations

import pytest
from triton_env import needs_interpreter
from variant_helpers import (
    CASES,
    IDS,
    assert_float32_rule,
    assert_matches_reference,
    case_inputs,
    rnn_outputs_and_grads,
)

pytestmark = needs_interpreter


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float64_matches_reference(case, nan_poison):
    kw, opts = case_inputs(case, T=5, B=2, N=11, seed=6)
    assert_matches_reference(rnn_outputs_and_grads, kw, opts, "triton", 1e-10)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float32_odd_size(case):
    kw64, opts = case_inputs(case, T=4, B=1, N=37, seed=7)
    # The low-precision rule: the kernel's error against the float64 reference within a small
    # multiple of the float32 reference's own (some cases, relu's, are ill-conditioned).
    assert_float32_rule(kw64, opts, "triton", 4, 1e-6)
