"""The Triton kernels on CPU tensors under the Triton interpreter, against the reference.

Run by test_plastic_rnn_triton.py::test_interpreter_suite in its own pytest process with
``TRITON_INTERPRET=1`` set before triton is imported (the name does not match ``test_*.py``, so
the main test run does not collect this file). By hand::

    cd tests && TRITON_INTERPRET=1 python -m pytest interpret_plastic_rnn_triton.py -q

float32 (and a few float64 cases; half inputs, which the public function casts to float32 before
the kernel), small sizes; the interpreter runs the kernels with row blocks
of 8, so N > 8 exercises several row blocks and a partial last one.
"""

from __future__ import annotations

import pytest
import torch
from helpers import (
    EDGE_SHAPES,
    ETA_RULES,
    MODULATED_RULES,
    RULES,
    all_cases,
    assert_low_precision_rule,
    assert_raw_outputs_match,
    clone_inputs,
    make_inputs,
    run,
)
from triton_checks import TOL, check_triton_against_reference
from triton_env import needs_interpreter

import hebbkern
from hebbkern.ops.plastic_rnn import checkpoint_interval

pytestmark = needs_interpreter

CPU = torch.device("cpu")
F32 = torch.float32


@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", list(all_cases()))
def test_matches_reference(rule, alpha_kind, fanout, clamp, nan_poison):
    kw = make_inputs(rule, alpha_kind, fanout, clamp, T=5, B=2, N=11, dtype=F32, seed=11)
    check_triton_against_reference(kw, CPU, TOL[F32])


@pytest.mark.parametrize(
    "rule, alpha_kind, fanout",
    [("oja", "per_connection", False), ("retro", "per_neuron", True),
     ("neuromod", "scalar", True)],
)  # fmt: skip
def test_float64_tight(rule, alpha_kind, fanout, nan_poison):
    """The kernels are dtype-generic: in float64 they match the reference to 1e-8."""
    kw = make_inputs(rule, alpha_kind, fanout, True, T=6, B=2, N=10, seed=3)
    check_triton_against_reference(kw, CPU, TOL[torch.float64])


# Smaller than test_plastic_rnn.py's own sizes: the interpreter is slow.
ODD_SHAPES = EDGE_SHAPES + [(3, 2, 33), (2, 1, 100), (2, 1, 129), (17, 1, 5)]  # K = 5 at T = 17


@pytest.mark.parametrize("shape", ODD_SHAPES, ids=lambda s: "T{}-B{}-N{}".format(*s))
@pytest.mark.parametrize(
    "rule, alpha_kind, fanout, clamp",
    [
        pytest.param("clip", "per_connection", False, True, id="clip-perconn-clamp"),
        pytest.param("retro", "per_neuron", True, True, id="retro-perneuron-fanout-clamp"),
    ],
)
def test_odd_sizes(shape, rule, alpha_kind, fanout, clamp, nan_poison):
    T, B, N = shape
    kw = make_inputs(rule, alpha_kind, fanout, clamp, T=T, B=B, N=N, dtype=F32, seed=T + N)
    check_triton_against_reference(kw, CPU, TOL[F32], require_nonzero=False)


@pytest.mark.parametrize(
    "rule, loss_on",
    [("hebb", ("h",)), ("oja", ("hebb",)), ("neuromod", ("state_h",)), ("retro", ("elig",)),
     ("retro", ("h", "hebb"))],
)  # fmt: skip
def test_partial_outputs(rule, loss_on, nan_poison):
    """The backward with some output gradients absent (None)."""
    kw = make_inputs(rule, "per_connection", rule in MODULATED_RULES, True, T=6, B=2, N=7,
                     dtype=F32, seed=5)  # fmt: skip
    check_triton_against_reference(kw, CPU, TOL[F32], loss_on=loss_on, require_nonzero=False)


@pytest.mark.parametrize("rule", RULES)
def test_optional_inputs_omitted(rule, nan_poison):
    """No h0/hebb0/elig0/mod_b: zeros are used, and only the given inputs get gradients."""
    kw = make_inputs(rule, "per_neuron", False, False, T=5, B=2, N=6, dtype=F32, seed=3)
    for k in ("h0", "hebb0", "elig0", "mod_b"):
        kw.pop(k, None)
    if rule in ETA_RULES:
        kw["eta"] = 0.3
    check_triton_against_reference(kw, CPU, TOL[F32])


def test_non_contiguous_inputs(nan_poison):
    kw = make_inputs("retro", "per_connection", True, True, T=5, B=3, N=8, dtype=F32, seed=9)
    nc = clone_inputs(kw)
    for k in ("u", "h0"):
        nc[k] = kw[k].detach().transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
    for k in ("w", "alpha", "hebb0", "elig0"):
        nc[k] = kw[k].detach().transpose(-1, -2).contiguous().transpose(-1, -2).requires_grad_()
    nc["clamp_mask"] = kw["clamp_mask"].transpose(0, 1).contiguous().transpose(0, 1)
    assert not nc["u"].is_contiguous() and not nc["hebb0"].is_contiguous()
    h_nc, s_nc = hebbkern.plastic_rnn(**nc, backend="triton")
    h_c, s_c = hebbkern.plastic_rnn(**clone_inputs(kw), backend="triton")
    assert torch.equal(h_nc, h_c) and torch.equal(s_nc.hebb, s_c.hebb)
    (h_nc.sum() + s_nc.elig.sum()).backward()
    check_triton_against_reference(kw, CPU, TOL[F32])


@pytest.mark.parametrize("ckpt_every", [1, 3, 10, 13])
@pytest.mark.parametrize("rule", ["hebb", "retro"])
def test_raw_op_any_checkpoint_interval(rule, ckpt_every, nan_poison):
    """The op is correct for every checkpoint interval, not only ceil(sqrt(T)); T = 10."""
    from hebbkern.triton.plastic_rnn_ops import plastic_rnn_triton_fwd

    T = 10
    kw = make_inputs(rule, "per_connection", rule == "retro", True, T=T, B=2, N=5, seed=2)
    kc, kr = clone_inputs(kw), clone_inputs(kw)
    h, hebb, elig, hebb_ckpt, _, _ = plastic_rnn_triton_fwd(
        kc["u"], kc["w"], kc["alpha"], kc["h0"], kc["hebb0"], kc.get("elig0"), kc["clamp_mask"],
        kc["eta"], kc.get("mod_w"), kc.get("mod_b"), kc.get("fanout_w"), kc.get("fanout_b"),
        rule, float(kw["clip"]), ckpt_every,
    )  # fmt: skip
    assert hebb_ckpt.shape == (-(-T // ckpt_every), 2, 5, 5)
    assert_raw_outputs_match(h, hebb, elig, kc, kr)


@pytest.mark.parametrize("rule", ["hebb", "neuromod", "retro"])
def test_opcheck(rule):
    """Schema, autograd registration and fake tensors. Not test_aot_dispatch_dynamic: it traces the
    op's body, and the interpreter's kernels cannot be traced (the CUDA tests run the full
    opcheck)."""
    from hebbkern.triton.plastic_rnn_ops import plastic_rnn_triton_fwd  # noqa: F401

    kw = make_inputs(rule, "per_connection", rule in MODULATED_RULES, True, T=4, B=2, N=3, seed=8)
    mod_b = kw.get("mod_b")
    args = (
        kw["u"], kw["w"], kw["alpha"], kw["h0"], kw["hebb0"], kw.get("elig0"), kw["clamp_mask"],
        kw.get("eta"), kw.get("mod_w"), mod_b, kw.get("fanout_w"), kw.get("fanout_b"), rule,
        float(kw["clip"]), checkpoint_interval(4),
    )  # fmt: skip
    torch.library.opcheck(
        torch.ops.hebbkern.plastic_rnn_triton_fwd.default,
        args,
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("rule", ["clip", "retro"])
def test_low_precision_inputs(rule, dtype):
    """Half inputs run with float32 state and accumulation (cast before the kernel, so the
    interpreter's half arithmetic is not involved): against a float64 reference, the error is at
    most twice that of the reference run in the same low precision (flash-attention's rule)."""
    kw = make_inputs(rule, "per_neuron", rule == "retro", True, T=7, B=2, N=12, seed=17,
                     dtype=dtype)  # fmt: skip
    o_k, g_k = run(clone_inputs(kw), "triton")
    o_lp, g_lp = run(clone_inputs(kw), "reference")
    o_64, g_64 = run(clone_inputs(kw, torch.float64), "reference")
    assert_low_precision_rule((o_k, g_k), (o_lp, g_lp), (o_64, g_64), dtype)


@pytest.mark.parametrize("rule", ["clip", "retro"])
def test_float64_case_of_the_gpu_test(rule):
    """The inputs of test_plastic_rnn_triton.py::test_cuda_float64, which failed on the H200 only at
    its device comparison (cuda:0 vs cuda) before any value was compared: the same kernels, run by
    the interpreter in float64, meet the float64 tolerance."""
    kw = make_inputs(rule, "per_connection", rule == "retro", True, T=12, B=2, N=20, seed=4)
    check_triton_against_reference(kw, CPU, TOL[torch.float64])
