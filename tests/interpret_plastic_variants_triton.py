"""The Triton kernels of plastic_rnn with the variants of SPEC.md section 1.1, on CPU tensors under
the Triton interpreter, against the reference (forward, final states, every gradient; float64
tight, float32 within the suite's tolerance; odd sizes: N = 11 and 37 span several row blocks of
the interpreter's 8 and a partial one).

Run by test_plastic_variants.py::test_triton_interpreter_suite in its own process with
``TRITON_INTERPRET=1`` set before triton is imported. By hand::

    cd tests && TRITON_INTERPRET=1 python -m pytest interpret_plastic_variants_triton.py -q
"""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs TRITON_INTERPRET=1 set before triton is imported", allow_module_level=True)

from helpers import rel_err  # noqa: E402
from variant_helpers import CASES, IDS, assert_match, case_inputs, rnn_outputs_and_grads  # noqa: E402


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float64_matches_reference(case, nan_poison):
    kw, opts = case_inputs(case, T=5, B=2, N=11, seed=6)
    assert_match(
        rnn_outputs_and_grads(kw, opts, "triton"),
        rnn_outputs_and_grads(kw, opts, "reference"),
        1e-10,
    )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float32_odd_size(case):
    kw64, opts = case_inputs(case, T=4, B=1, N=37, seed=7)
    kw32 = {k: (v.detach().float().requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor)
                and v.is_floating_point() else v) for k, v in kw64.items()}  # fmt: skip
    got = rnn_outputs_and_grads(kw32, opts, "triton")
    want = rnn_outputs_and_grads(kw64, opts, "reference")
    ref32 = rnn_outputs_and_grads(kw32, opts, "reference")
    # The low-precision rule: the kernel's error against the float64 reference within a small
    # multiple of the float32 reference's own (some cases, relu's, are ill-conditioned).
    for i, kind in ((0, ""), (1, "d")):
        for k, b in want[i].items():
            if b is not None:
                base = max(rel_err(ref32[i][k].double(), b), 1e-6)
                assert rel_err(got[i][k].double(), b) <= 4 * base, f"{kind}{k}"


def test_step_and_lstm_triton_refuse_variants():
    """The Triton plastic_step and plastic_lstm kernels lack the variants: a clear error, never
    the default rule's math."""
    import hebbkern

    kw, opts = case_inputs(CASES[IDS.index("combined")], T=1, B=2, N=5, seed=1)
    step = {"u": kw["u"][0], "h": kw["h0"], "hebb": kw["hebb0"], "w": kw["w"],
            "alpha": kw["alpha"], "rule": "gated", "mod_w": kw["mod_w"], "mod_b": kw["mod_b"]}  # fmt: skip
    with pytest.raises(NotImplementedError, match="backend='reference'"):
        hebbkern.plastic_step(**step, mod_squash="sigmoid", backend="triton")
    with pytest.raises(NotImplementedError, match="backend='reference'"):
        hebbkern.plastic_step(**dict(step, rule="neuromod"), activation="relu", backend="triton")
    # plastic_lstm's Triton kernels run its variants: interpret_plastic_lstm_triton.py.
