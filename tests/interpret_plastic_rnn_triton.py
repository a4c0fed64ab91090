"""The Triton kernels on CPU tensors under the Triton interpreter, against the reference.

Run by test_plastic_rnn_triton.py::test_interpreter_suite in its own pytest process with
``TRITON_INTERPRET=1`` set before triton is imported (the name does not match ``test_*.py``, so
the main test run does not collect this file). By hand::

    cd tests && TRITON_INTERPRET=1 python -m pytest interpret_plastic_rnn_triton.py -q

float32 (and a few float64 cases; half inputs, which the public function casts to float32 before
the kernel), small sizes; the interpreter runs the kernels with row blocks
of 8, so N > 8 exercises several row blocks and a partial last one, and N <= 8 the resident
kernels (one tile is the whole sample); the resident tests below raise the row block to 64 so
that the resident kernels run at every width the GPU runs them (N <= 64).
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
from triton_checks import TOL, check_triton_against_reference, record_plastic_rnn_launches
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


# ---------------------------------------------------------------------------------------------
# The resident kernels (issue 13 item 4: w, alpha and the state in registers across steps).


@pytest.mark.parametrize(
    "N, max_bn, fwd, bwd",
    [(1, None, True, True), (7, None, True, True), (8, None, True, True),
     (9, None, False, False), (11, None, False, False), (27, 64, True, True),
     (32, 64, True, True), (33, 64, True, False), (64, 64, True, False), (65, 64, False, False)],
)  # fmt: skip
def test_resident_kernels_are_selected_where_one_tile_covers_the_sample(
    N, max_bn, fwd, bwd, monkeypatch
):
    """The forward runs with RESIDENT exactly where the interpreter's row block covers the padded
    sample (N <= 8; with the GPU's widths, N <= 64), the backward up to N = 32 (its register
    limit on the GPU); the tiled kernels elsewhere."""
    seen = record_plastic_rnn_launches(monkeypatch, max_bn)
    kw = make_inputs("retro", "per_connection", True, True, T=3, B=1, N=N, dtype=F32, seed=N)
    h, st = hebbkern.plastic_rnn(**kw, backend="triton")
    (h.sum() + st.hebb.sum()).backward()
    assert [(k, r) for k, _, r in seen] == [("fwd", fwd), ("bwd", bwd)]


def _resident_as_on_the_gpu(seen: list, N: int) -> None:
    """Both kernels ran, the forward resident, the backward resident where N <= 32."""
    assert [(k, r) for k, _, r in seen] == [("fwd", True), ("bwd", N <= 32)]


@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", list(all_cases()))
def test_resident_matches_reference(rule, alpha_kind, fanout, clamp, monkeypatch, nan_poison):
    """Every case of test_matches_reference through the resident kernels, at N = 27 (padded to
    32: 5 padded rows and columns) with T = 7 (K = 3: three chunks, the last ragged)."""
    seen = record_plastic_rnn_launches(monkeypatch, 64)
    kw = make_inputs(rule, alpha_kind, fanout, clamp, T=7, B=2, N=27, dtype=F32, seed=27)
    check_triton_against_reference(kw, CPU, TOL[F32])
    _resident_as_on_the_gpu(seen, 27)


@pytest.mark.parametrize("shape", [(5, 2, 1), (9, 1, 7), (4, 2, 32), (6, 3, 51), (17, 1, 64)],
                         ids=lambda s: "T{}-B{}-N{}".format(*s))  # fmt: skip
@pytest.mark.parametrize(
    "rule, alpha_kind, fanout, clamp",
    [pytest.param("clip", "per_connection", False, True, id="clip-perconn-clamp"),
     pytest.param("retro", "per_neuron", True, True, id="retro-perneuron-fanout-clamp"),
     pytest.param("oja", "scalar", False, False, id="oja-scalar")],
)  # fmt: skip
def test_resident_odd_sizes(shape, rule, alpha_kind, fanout, clamp, monkeypatch, nan_poison):
    """N = 1 and 7, a full tile (32), and the resident forward with the tiled backward (51, 64;
    T = 17: K = 5, a ragged last chunk)."""
    seen = record_plastic_rnn_launches(monkeypatch, 64)
    T, B, N = shape
    kw = make_inputs(rule, alpha_kind, fanout, clamp, T=T, B=B, N=N, dtype=F32, seed=T + N)
    check_triton_against_reference(kw, CPU, TOL[F32], require_nonzero=False)
    _resident_as_on_the_gpu(seen, N)


@pytest.mark.parametrize("rule", ["neuromod", "retro"])
def test_resident_float64_and_variants(rule, monkeypatch, nan_poison):
    """float64 at the tight tolerance, and the section 1.1 variants (soft clip, activation,
    squashing, unmodulated neurons) through the resident kernels."""
    seen = record_plastic_rnn_launches(monkeypatch, 64)
    kw = make_inputs(rule, "per_connection", True, True, T=6, B=2, N=20, seed=3)
    check_triton_against_reference(kw, CPU, TOL[torch.float64])
    kw = make_inputs(rule, "per_neuron", True, True, T=6, B=2, N=20, dtype=F32, seed=4)
    kw.update(soft_clip=True, activation="relu", mod_squash="sigmoid")
    if rule == "neuromod":  # the unmodulated neurons learn at rate eta
        kw.update(n_modulated=12, eta=0.3)
    check_triton_against_reference(kw, CPU, TOL[F32])
    assert seen and all(r for _, _, r in seen)


def test_resident_and_tiled_kernels_agree(monkeypatch):
    """The same inputs through the tiled kernels (row blocks of 8) and the resident ones: the same
    values to rounding (float64; sums over row blocks are added in another order). N = 27: both
    kernels resident."""
    kw = make_inputs("retro", "per_connection", True, True, T=9, B=2, N=27, seed=5)
    outs = []
    for max_bn in (8, 64):
        seen = record_plastic_rnn_launches(monkeypatch, max_bn)
        o, g = run(clone_inputs(kw), "triton")
        assert [r for _, _, r in seen] == [max_bn == 64] * 2
        outs.append((o, g))
    (o8, g8), (o64, g64) = outs
    for k in o8:
        torch.testing.assert_close(o64[k], o8[k], rtol=1e-12, atol=1e-13)
    for k in g8:
        torch.testing.assert_close(g64[k], g8[k], rtol=1e-12, atol=1e-13)
