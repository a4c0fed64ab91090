"""The Triton kernels of ``plastic_step`` and ``plastic_linear`` on CPU tensors under the Triton
interpreter, against the reference.

Run by test_plastic_step_triton.py::test_interpreter_suite in its own pytest process with
``TRITON_INTERPRET=1`` set before triton is imported (the name does not match ``test_*.py``, so
the main test run does not collect this file). By hand::

    cd tests && TRITON_INTERPRET=1 python -m pytest interpret_plastic_step_triton.py -q

The interpreter runs the step's kernels with row blocks of 8 (the backward's batch sums too, in
groups of ceil(sqrt(B)) samples) and plastic_linear with 16-wide blocks (the smallest tl.dot
takes), so the odd sizes below cross block boundaries and end in partial blocks and groups.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs TRITON_INTERPRET=1 set before triton is imported", allow_module_level=True)

from helpers import MODULATED_RULES, RULES, clone_inputs, rel_err  # noqa: E402
from helpers_step import STEP_ALPHA_KINDS, step_inputs  # noqa: E402
from step_triton_checks import (  # noqa: E402
    TOL,
    check_linear_against_reference,
    check_step_against_reference,
    linear_inputs,
    run_step,
)
from variant_helpers import CASES, IDS, case_inputs, step_kw  # noqa: E402

import hebbkern  # noqa: E402

CPU = torch.device("cpu")
F32, F64 = torch.float32, torch.float64


def step_cases():
    """Every rule x alpha kind (per-sample included) x fan-out x clamp mask."""
    for rule in RULES:
        for ak in STEP_ALPHA_KINDS:
            for fanout in (False, True) if rule in MODULATED_RULES else (False,):
                for clamp in (False, True):
                    cid = f"{rule}-{ak}-{'fan' if fanout else 'nofan'}-"
                    yield pytest.param(
                        rule, ak, fanout, clamp, id=cid + ("clamp" if clamp else "free")
                    )


@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", list(step_cases()))
def test_step_matches_reference(rule, alpha_kind, fanout, clamp, nan_poison):
    kw = step_inputs(rule, alpha_kind, fanout, clamp, B=3, N=11, dtype=F32, seed=11)
    check_step_against_reference(kw, CPU, TOL[F32])
    assert "hebbkern.triton.plastic_step_ops" in sys.modules  # the triton path ran


@pytest.mark.parametrize("rule", ["hebb", "retro"])
def test_step_post_pre_layout_matches_reference(rule):
    """``layout="post_pre"`` with the Triton backend on CPU tensors: the op transposes at the
    boundary, as on CUDA tensors. (Until session 5 only CUDA tensors were transposed, so the
    interpreter ran the pre_post kernels on post_pre tensors: h off by 1.6 at B=2, N=4.)"""
    kw = step_inputs(rule, "per_connection", True, True, B=3, N=11, dtype=F64, seed=5)
    kw["layout"] = "post_pre"
    with torch.no_grad():
        ref = hebbkern.plastic_step(**kw, backend="reference")
        tri = hebbkern.plastic_step(**kw, backend="triton")
    for name, t, r in zip(("h", "hebb", "elig"), tri, ref, strict=True):
        assert (t is None) == (r is None), name
        if r is not None:
            assert rel_err(t, r) < 1e-12, name


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_step_variants_match_reference(case, dtype, nan_poison):
    """The variants of docs/SPEC.md section 1.1 (variant_helpers' cases: activations, modulator
    squashing, soft clip, rule gated, a modulated fraction, combined) against the reference."""
    kw, opts = case_inputs(case, T=1, B=3, N=11, dtype=dtype, seed=13)
    # With no neuron modulated the modulator's parameters get no gradient.
    check_step_against_reference({**step_kw(kw), **opts}, CPU, TOL[dtype],
                                 require_nonzero=case[0] != "none_modulated")  # fmt: skip


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("alpha_kind", ["per_sample", "per_connection", "per_neuron"])
def test_step_per_sample_weights(rule, alpha_kind, nan_poison):
    """w [B, N, N]: a population of independent networks (no batch sum of dw)."""
    kw = step_inputs(rule, alpha_kind, rule in MODULATED_RULES, True, B=4, N=9,
                     per_sample_w=True, dtype=F32, seed=3)  # fmt: skip
    check_step_against_reference(kw, CPU, TOL[F32])


@pytest.mark.parametrize(
    "rule, alpha_kind, fanout",
    [("oja", "per_connection", False), ("retro", "per_sample", True), ("neuromod", "scalar", True),
     ("clip", "per_neuron", False), ("hebb", "per_sample", False)],
)  # fmt: skip
def test_step_float64_tight(rule, alpha_kind, fanout, nan_poison):
    """The kernels are dtype-generic: in float64 they match the reference to 1e-8."""
    kw = step_inputs(rule, alpha_kind, fanout, True, B=2, N=10, seed=3)
    check_step_against_reference(kw, CPU, TOL[F64])


STEP_ODD = [(1, 1), (1, 7), (3, 1), (2, 33), (2, 100), (1, 129)]


@pytest.mark.parametrize("shape", STEP_ODD, ids=lambda s: "B{}-N{}".format(*s))
@pytest.mark.parametrize(
    "rule, alpha_kind, fanout, clamp",
    [pytest.param("oja", "per_connection", False, False, id="oja"),
     pytest.param("clip", "scalar", False, True, id="clip-scalar-clamp"),
     pytest.param("retro", "per_sample", True, True, id="retro-persample-fanout-clamp"),
     pytest.param("neuromod", "per_neuron", False, False, id="neuromod-perneuron")],
)  # fmt: skip
def test_step_odd_sizes(shape, rule, alpha_kind, fanout, clamp, nan_poison):
    B, N = shape
    kw = step_inputs(rule, alpha_kind, fanout, clamp, B=B, N=N, dtype=F32, seed=B * 100 + N)
    check_step_against_reference(kw, CPU, TOL[F32], require_nonzero=False)


@pytest.mark.parametrize("rule", RULES)
def test_step_empty_batch(rule, nan_poison):
    """B = 0: empty outputs, and the shared parameters' gradients are zeros (written by the op,
    which launches no program, not left as NaN-poisoned memory)."""
    kw = step_inputs(rule, "per_neuron", rule in MODULATED_RULES, True, B=0, N=6, dtype=F32)
    ot, gt = run_step(clone_inputs(kw), "triton")
    orf, gr = run_step(clone_inputs(kw), "reference")
    for k in orf:
        assert ot[k].shape == orf[k].shape, k
    for k, g in gr.items():
        got = gt[k]
        ref = torch.zeros_like(kw[k]) if g is None else g
        assert got is not None and got.shape == ref.shape and torch.equal(got, ref), k


def partial_cases():
    for rule in RULES:
        subsets = [("h",), ("hebb",)] + ([("elig",), ("h", "elig")] if rule == "retro" else [])
        for sub in subsets:
            yield pytest.param(rule, sub, id=f"{rule}-{'+'.join(sub)}")


@pytest.mark.parametrize("rule, loss_on", list(partial_cases()))
def test_step_partial_outputs(rule, loss_on, nan_poison):
    """Only some outputs used: the backward receives None for the others."""
    kw = step_inputs(rule, "per_connection", rule in MODULATED_RULES, True, B=2, N=7, dtype=F32,
                     seed=5)  # fmt: skip
    check_step_against_reference(kw, CPU, TOL[F32], loss_on=loss_on, require_nonzero=False)


@pytest.mark.parametrize("rule", RULES)
def test_step_optional_inputs_omitted(rule, nan_poison):
    """No elig (zeros), no mod_b (0), eta as a Python float: only given inputs get gradients."""
    kw = step_inputs(rule, "per_neuron", False, False, B=2, N=6, dtype=F32, seed=3)
    kw.pop("elig", None)
    kw.pop("mod_b", None)
    if "eta" in kw:
        kw["eta"] = 0.3
    check_step_against_reference(kw, CPU, TOL[F32], require_nonzero=False)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_step_low_precision_runs_in_float32(dtype):
    kw = step_inputs("neuromod", "per_neuron", True, True, B=2, N=9, requires_grad=False)
    lp = {k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
          for k, v in kw.items()}  # fmt: skip
    out = hebbkern.plastic_step(**lp, backend="triton")
    ref = hebbkern.plastic_step(**kw, backend="reference")
    assert out.h.dtype == dtype and out.hebb.dtype == dtype
    assert rel_err(out.h, ref.h) < 2e-2 and rel_err(out.hebb, ref.hebb) < 2e-2


@pytest.mark.parametrize("B", [5, 10])
def test_step_is_deterministic(B):
    """Two runs give bitwise equal outputs and gradients (atomics on the ticket counters only), and
    the backward leaves its counters at 0 for the next launch. B = 10: groups of 4, 4 and 2."""
    from hebbkern.triton.plastic_step_ops import _COUNTERS, batch_groups

    assert batch_groups(B) == ((3, 2) if B == 5 else (4, 3))
    kw = step_inputs("retro", "per_connection", True, True, B=B, N=19, dtype=F32, seed=2)
    a = run_step(clone_inputs(kw), "triton")
    b = run_step(clone_inputs(kw), "triton")
    for x, y in zip(a, b, strict=True):
        for k in x:
            assert torch.equal(x[k], y[k]), k
    assert _COUNTERS and all(not c.any() for c in _COUNTERS.values())
    check_step_against_reference(kw, CPU, TOL[F32])


def test_cell_chained_matches_reference():
    """nn.PlasticRNNCell on the triton backend, chained 4 steps, against the reference."""
    torch.manual_seed(0)
    cell = hebbkern.nn.PlasticRNNCell(5, 12, rule="neuromod", alpha="per_neuron", fanout=True)
    x = torch.randn(4, 3, 5)

    def run(backend):
        cell.zero_grad()
        state = None
        with hebbkern.use_backend(backend):
            for t in range(4):
                state = cell(x[t], state)
        loss = state.h.square().sum() + state.hebb.sum()
        loss.backward()
        return state, {n: p.grad.clone() for n, p in cell.named_parameters()}

    st, gt = run("triton")
    sr, gr = run("reference")
    assert rel_err(st.h, sr.h) < 1e-4 and rel_err(st.hebb, sr.hebb) < 1e-4
    for n in gr:
        assert rel_err(gt[n], gr[n]) < 1e-4, n


# ---- plastic_linear

LINEAR_SIZES = [(19, 37, 21), (1, 5, 3), (3, 16, 40), (40, 17, 10)]


@pytest.mark.parametrize("size", LINEAR_SIZES, ids=lambda s: "B{}-M{}-K{}".format(*s))
@pytest.mark.parametrize("per_sample", [False, True], ids=["shared", "per_sample"])
@pytest.mark.parametrize("alpha_kind", ["per_connection", "per_neuron", "scalar"])
def test_linear_matches_reference(size, per_sample, alpha_kind, nan_poison):
    B, M, K = size
    kw = linear_inputs(B, M, K, alpha_kind, per_sample, dtype=F32, seed=B + M + K)
    check_linear_against_reference(kw, CPU, TOL[F32])


@pytest.mark.parametrize("per_sample", [False, True], ids=["shared", "per_sample"])
@pytest.mark.parametrize("alpha_kind", ["per_connection", "scalar"])
def test_linear_float64_tight(per_sample, alpha_kind, nan_poison):
    kw = linear_inputs(18, 33, 17, alpha_kind, per_sample, dtype=F64, seed=4)
    check_linear_against_reference(kw, CPU, TOL[F64])


@pytest.mark.parametrize("per_sample", [False, True], ids=["shared", "per_sample"])
def test_linear_empty_batch(per_sample, nan_poison):
    kw = linear_inputs(0, 9, 5, "per_neuron", per_sample, dtype=F32)
    from step_triton_checks import run_linear

    ot, gt = run_linear(clone_inputs(kw), "triton")
    orf, gr = run_linear(clone_inputs(kw), "reference")
    assert ot["z"].shape == orf["z"].shape == (0, 5)
    for k, g in gr.items():
        ref = torch.zeros_like(kw[k]) if g is None else g
        assert gt[k].shape == ref.shape and torch.equal(gt[k], ref), k


# ---- opcheck (schema, autograd registration, fake tensors; not test_aot_dispatch_dynamic, which
# traces the op's body: the interpreter's kernels cannot be traced, the CUDA tests run it all)

OPCHECK_UTILS = ("test_schema", "test_autograd_registration", "test_faketensor")


# (inputs made for, rule run, variant code of hebbkern/_variants.py): gated with selu and sigmoid
# squashing (2 + 8 * 1); clip with relu and the soft clip (1 + 32).
OPCHECK_STEP_CASES = [("hebb", "hebb", 0), ("neuromod", "neuromod", 0), ("retro", "retro", 0),
                      ("neuromod", "gated", 10), ("clip", "clip", 33)]  # fmt: skip


@pytest.mark.parametrize("made_for, rule, variant", OPCHECK_STEP_CASES)
@pytest.mark.parametrize("alpha_kind", ["per_connection", "per_sample"])
def test_step_opcheck(made_for, rule, variant, alpha_kind):
    from hebbkern.triton.plastic_step_ops import plastic_step_triton_fwd  # noqa: F401

    kw = step_inputs(made_for, alpha_kind, made_for in MODULATED_RULES, True, B=2, N=3, seed=8)
    args = (
        kw["u"], kw["h"], kw["hebb"], kw.get("elig"), kw["w"], kw["alpha"], kw["clamp_mask"],
        kw.get("eta"), kw.get("mod_w"), kw.get("mod_b"), kw.get("fanout_w"), kw.get("fanout_b"),
        rule, float(kw["clip"]), variant,
    )  # fmt: skip
    torch.library.opcheck(
        torch.ops.hebbkern.plastic_step_triton_fwd.default, args, test_utils=OPCHECK_UTILS
    )


@pytest.mark.parametrize("alpha_kind", ["per_connection", "per_neuron", "scalar"])
@pytest.mark.parametrize("per_sample", [False, True], ids=["shared", "per_sample"])
def test_linear_opcheck(alpha_kind, per_sample):
    from hebbkern.triton.plastic_linear_ops import plastic_linear_triton_fwd  # noqa: F401

    args = tuple(linear_inputs(3, 5, 6, alpha_kind, per_sample).values())
    torch.library.opcheck(
        torch.ops.hebbkern.plastic_linear_triton_fwd.default, args, test_utils=OPCHECK_UTILS
    )


# ---- gradcheck in float64 (the backward kernels against finite differences of the forward's)


@pytest.mark.parametrize(
    "rule, alpha_kind, fanout, per_sample_w",
    [("hebb", "per_sample", False, True), ("neuromod", "per_neuron", True, False),
     ("retro", "scalar", True, False), ("oja", "per_connection", False, False)],
)  # fmt: skip
def test_step_gradcheck(rule, alpha_kind, fanout, per_sample_w):
    kw = step_inputs(rule, alpha_kind, fanout, True, B=2, N=3, per_sample_w=per_sample_w, seed=6)
    names = [k for k, v in kw.items() if isinstance(v, torch.Tensor) and v.requires_grad]
    fixed = {k: v for k, v in kw.items() if k not in names}

    def f(*leaves):
        st = hebbkern.plastic_step(**dict(zip(names, leaves, strict=True)), **fixed,
                                   backend="triton")  # fmt: skip
        return tuple(t for t in st if t is not None)

    assert torch.autograd.gradcheck(f, [kw[k] for k in names], atol=1e-6)


@pytest.mark.parametrize("alpha_kind", ["per_connection", "per_neuron", "scalar"])
@pytest.mark.parametrize("per_sample", [False, True], ids=["shared", "per_sample"])
def test_linear_gradcheck(alpha_kind, per_sample):
    kw = linear_inputs(3, 4, 5, alpha_kind, per_sample, seed=2)

    def f(x, w, alpha, hebb):
        return hebbkern.plastic_linear(x, w, alpha, hebb, backend="triton")

    assert torch.autograd.gradcheck(f, tuple(kw.values()), atol=1e-6)
