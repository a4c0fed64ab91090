"""The fused C++ ``cpu`` backend of ``hebbkern.plastic_rnn`` against the eager ``reference``.

The reference (hebbkern/reference/plastic_rnn.py) is the oracle: forward output, final state and
the gradient of every input are compared on fresh random inputs, for every rule and option.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import (
    ALPHA_KINDS,
    EDGE_SHAPES,
    ETA_RULES,
    MODULATED_RULES,
    RULES,
    all_cases,
    assert_low_precision_rule,
    assert_raw_outputs_match,
    check_cpu_against_reference,
    clone_inputs,
    fused_args,
    grad_names,
    isa_rules,
    make_inputs,
    odd_size_rules,
    outputs_dict,
    rel_err,
    run,
    saved_bytes,
)

import hebbkern
from hebbkern.ops.plastic_rnn import checkpoint_interval

TESTS_DIR = Path(__file__).resolve().parent
TOL = {torch.float64: 1e-8, torch.float32: 1e-4}
DTYPE_IDS = {
    torch.float64: "f64",
    torch.float32: "f32",
    torch.float16: "f16",
    torch.bfloat16: "bf16",
}


check_against_reference = check_cpu_against_reference


# ---------------------------------------------------------------------------------------------
# Every rule x alpha kind x fan-out x clamp, float64 and float32, all outputs, all gradients.


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=DTYPE_IDS.get)
@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", list(all_cases()))
def test_matches_reference(rule, alpha_kind, fanout, clamp, dtype, nan_poison):
    kw = make_inputs(rule, alpha_kind, fanout, clamp, T=7, B=3, N=9, dtype=dtype, seed=11)
    check_against_reference(kw, TOL[dtype])


@pytest.mark.parametrize("isa", ["default", "avx2", "avx512"])
@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", isa_rules("per_connection"))
def test_every_instruction_set(rule, alpha_kind, fanout, clamp, isa, monkeypatch, nan_poison):
    """The kernels are built once per instruction set and chosen at run time; HEBBKERN_CPU_ISA caps
    the choice (read on every call), so each build is checked here (an ISA the CPU lacks falls back
    to the best one it has)."""
    monkeypatch.setenv("HEBBKERN_CPU_ISA", isa)
    if isa == "default":  # every x86-64 CPU has the baseline, so the cap must take effect
        assert hebbkern._C.cpu_isa() == "default"
    kw = make_inputs(rule, alpha_kind, fanout, clamp, T=9, B=3, N=21, dtype=torch.float64, seed=5)
    check_against_reference(kw, TOL[torch.float64])


def test_clip_actually_bites():
    """The inputs of make_inputs put part of the trace on the clip bound (else the clamp's gradient
    would go untested)."""
    for rule in ("clip", "neuromod", "retro"):
        kw = make_inputs(rule, fanout=rule != "clip", clamp=True, seed=11)
        _, state = hebbkern.plastic_rnn(**clone_inputs(kw), backend="reference")
        at_bound = (state.hebb.abs() == kw["clip"]).double().mean().item()
        assert 0.02 < at_bound < 0.9, f"{rule}: fraction of the trace on the clip bound {at_bound}"


# ---------------------------------------------------------------------------------------------
# Only part of the outputs used: the op's backward receives None for the others.


def partial_cases():
    for rule in RULES:
        subsets = [("h",), ("state_h",), ("hebb",), ("h", "hebb")]
        if rule == "retro":
            subsets += [("elig",), ("state_h", "elig")]
        for sub in subsets:
            yield pytest.param(rule, sub, id=f"{rule}-{'+'.join(sub)}")


@pytest.mark.parametrize("rule, loss_on", list(partial_cases()))
def test_partial_outputs(rule, loss_on, nan_poison):
    kw = make_inputs(rule, "per_connection", rule in MODULATED_RULES, True, T=6, B=2, N=7, seed=5)
    check_against_reference(kw, TOL[torch.float64], loss_on=loss_on, require_nonzero=False)


@pytest.mark.parametrize("rule", RULES)
def test_optional_inputs_omitted(rule, nan_poison):
    """No h0/hebb0/elig0/mod_b/fan-out: zeros are used and only the given inputs get gradients;
    eta given as a Python float (retro) or a shape-[1] tensor (the papers' Parameter(ones(1)))."""
    kw = make_inputs(rule, "per_neuron", False, False, T=5, B=2, N=6, seed=3)
    for k in ("h0", "hebb0", "elig0", "mod_b"):
        kw.pop(k, None)
    if rule == "retro":
        kw["eta"] = 0.3
    elif rule in ETA_RULES:
        kw["eta"] = kw["eta"].detach().reshape(1).requires_grad_()
    oc, gc = check_against_reference(kw, TOL[torch.float64])
    if rule in ETA_RULES and rule != "retro":
        assert gc["eta"].shape == (1,)


# ---------------------------------------------------------------------------------------------
# Odd sizes, and several checkpoint chunks with a ragged last chunk.

ODD_SHAPES = EDGE_SHAPES + [
    (4, 2, 33),
    (3, 2, 100),
    (3, 1, 129),
    (17, 2, 5),  # K = 5: chunks 5, 5, 5, 2
    (16, 2, 4),  # K = 4: four full chunks
    (3, 2, 3),  # K = 2: chunks 2, 1
]


@pytest.mark.parametrize("shape", ODD_SHAPES, ids=lambda s: "T{}-B{}-N{}".format(*s))
@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", odd_size_rules("per_neuron"))
def test_odd_sizes(shape, rule, alpha_kind, fanout, clamp, nan_poison):
    T, B, N = shape
    kw = make_inputs(rule, alpha_kind, fanout, clamp, T=T, B=B, N=N, seed=T * 100 + N)
    # At N = 1 with T = 1 some gradients are legitimately tiny but never all zero.
    check_against_reference(kw, TOL[torch.float64], require_nonzero=False)


def test_checkpoint_interval():
    assert [checkpoint_interval(T) for T in (1, 2, 3, 4, 5, 10, 16, 17, 50)] == [
        1, 2, 2, 2, 3, 4, 4, 5, 8,
    ]  # fmt: skip


def raw_op_matches_reference(rule, ckpt_every, T=10):
    """Calls torch.ops.hebbkern.plastic_rnn_fwd directly with ``ckpt_every`` and compares the
    outputs and every gradient with the reference (raises AssertionError on a mismatch)."""
    kw = make_inputs(rule, "per_connection", rule != "hebb", True, T=T, B=2, N=5, seed=ckpt_every)
    kc, kr = clone_inputs(kw), clone_inputs(kw)
    h, hebb, elig, hebb_ckpt, elig_ckpt, mod = torch.ops.hebbkern.plastic_rnn_fwd(
        *fused_args(kc, ckpt_every)
    )
    C = -(-T // ckpt_every)
    assert hebb_ckpt.shape == (C, 2, 5, 5)
    assert elig_ckpt.shape == ((C, 2, 5, 5) if rule == "retro" else (0,))
    assert_raw_outputs_match(h, hebb, elig, kc, kr)


@pytest.mark.parametrize("ckpt_every", [1, 2, 3, 4, 9, 10])
@pytest.mark.parametrize("rule", ["hebb", "neuromod", "retro"])
def test_raw_op_any_checkpoint_interval(rule, ckpt_every, nan_poison):
    """The op is correct for every checkpoint interval, not only ceil(sqrt(T)); T = 10."""
    raw_op_matches_reference(rule, ckpt_every)


@pytest.mark.parametrize("ckpt_every", [11, 13, 40])
@pytest.mark.parametrize("rule", ["hebb", "clip", "neuromod", "retro"])
def test_raw_op_checkpoint_interval_longer_than_sequence(rule, ckpt_every):
    """ckpt_every > T is accepted by the op (one chunk); the backward must stay in bounds. Run in a
    subprocess: heap corruption aborts the interpreter, which must fail this test, not the suite."""
    code = (
        f"import sys; sys.path.insert(0, {str(TESTS_DIR)!r}); import test_plastic_rnn as m; "
        f"m.raw_op_matches_reference({rule!r}, {ckpt_every})"
    )
    env = {**os.environ, "MALLOC_PERTURB_": "165"}
    # cwd: `python -c` puts the working folder first on sys.path; from the repository root that
    # would import the source tree instead of the installed package under test.
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=TESTS_DIR, timeout=120)  # fmt: skip
    assert proc.returncode == 0, f"exit code {proc.returncode}:\n{proc.stderr[-3000:]}"


# ---------------------------------------------------------------------------------------------
# Non-contiguous inputs.


def _transposed(x, d0, d1):
    """Same values, memory laid out with dims d0 and d1 swapped (non-contiguous)."""
    return x.detach().transpose(d0, d1).contiguous().transpose(d0, d1)


def _strided(x):
    """Same values, every other element of a twice-as-long last dim (non-contiguous)."""
    base = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype)
    base[..., ::2] = x.detach()
    return base[..., ::2]


@pytest.mark.parametrize(
    "rule, alpha_kind",
    [("hebb", "per_connection"), ("retro", "per_neuron"), ("neuromod", "scalar")],
)
def test_non_contiguous_inputs(rule, alpha_kind, nan_poison):
    kw = make_inputs(rule, alpha_kind, rule in MODULATED_RULES, True, T=6, B=3, N=8, seed=9)
    nc = dict(kw)
    nc["u"] = _transposed(kw["u"], 0, 1)
    nc["w"] = _transposed(kw["w"], 0, 1)
    if alpha_kind != "scalar":
        nc["alpha"] = _strided(kw["alpha"])
    nc["h0"] = _transposed(kw["h0"], 0, 1)
    nc["hebb0"] = _transposed(kw["hebb0"], 1, 2)
    nc["clamp_mask"] = _transposed(kw["clamp_mask"], 0, 1)
    for k in ("elig0",):
        if k in kw:
            nc[k] = _strided(kw[k])
    for k in ("mod_w", "fanout_w", "fanout_b"):
        if k in kw:
            nc[k] = _strided(kw[k])
    for k, v in nc.items():
        if isinstance(v, torch.Tensor) and v.dim() > 1 or k in ("mod_w", "fanout_w"):
            assert not v.is_contiguous(), k  # the test must really pass strided inputs
            assert torch.equal(v, kw[k]), k
    nc = {k: v.detach().requires_grad_() if isinstance(v, torch.Tensor) and v.is_floating_point()
          else v for k, v in nc.items()}  # fmt: skip
    assert not nc["u"].is_contiguous()

    o_nc, g_nc = run(nc, "cpu")
    o_c, g_c = run(clone_inputs(kw), "cpu")
    o_r, g_r = run(clone_inputs(kw), "reference")
    for k in o_r:
        assert rel_err(o_nc[k], o_c[k]) < 1e-13, k
        assert rel_err(o_nc[k], o_r[k]) < 1e-8, k
    for k in grad_names(kw):
        assert g_nc[k].shape == kw[k].shape, k
        assert rel_err(g_nc[k], g_c[k]) < 1e-13, k
        assert rel_err(g_nc[k], g_r[k]) < 1e-8, k


def test_expanded_inputs(nan_poison):
    """Stride-0 (expanded) inputs: one initial trace and activity broadcast over the batch."""
    T, B, N = 5, 3, 6
    kw = make_inputs("clip", "per_neuron", T=T, B=B, N=N, seed=4)
    g = torch.Generator().manual_seed(0)
    hebb_base = (0.3 * torch.randn(1, N, N, generator=g, dtype=torch.float64)).requires_grad_()
    h_base = (0.5 * torch.randn(N, generator=g, dtype=torch.float64)).requires_grad_()
    results = {}
    for backend in ("cpu", "reference"):
        k = clone_inputs(kw)
        hb, hh = (
            hebb_base.detach().clone().requires_grad_(),
            h_base.detach().clone().requires_grad_(),
        )
        k["hebb0"], k["h0"] = hb.expand(B, N, N), hh.expand(B, N)
        h, state = hebbkern.plastic_rnn(**k, backend=backend)
        (h.sin().sum() + state.hebb.square().sum()).backward()
        results[backend] = (h.detach(), state.hebb.detach(), hb.grad, hh.grad, k["u"].grad)
    for a, b in zip(results["cpu"], results["reference"], strict=True):
        assert rel_err(a, b) < 1e-8


# ---------------------------------------------------------------------------------------------
# NaN: finite inputs give finite outputs (checked everywhere above); a NaN stays in its sample.


@pytest.mark.parametrize("rule", ["hebb", "oja", "retro"])
def test_nan_stays_in_its_sample(rule):
    T, B, N, t0, b0, j0 = 6, 3, 8, 2, 1, 3
    kw = make_inputs(rule, "per_connection", rule == "retro", False, T=T, B=B, N=N, seed=21)
    bad = clone_inputs(kw)
    with torch.no_grad():
        bad["u"][t0, b0, j0] = float("nan")
    others = [b for b in range(B) if b != b0]

    o_clean, g_clean = run(clone_inputs(kw), "cpu")
    o_bad, g_bad = run(bad, "cpu")  # must not crash, forward or backward
    o_ref, g_ref = run(clone_inputs(bad), "reference")

    for outs in (o_bad, o_ref):
        h = outs["h"]
        assert torch.isfinite(h[:t0]).all()
        assert torch.isnan(h[t0, b0, j0])
        assert torch.isnan(h[t0 + 1 :, b0]).all()
        assert torch.isfinite(h[:, others]).all()
        assert torch.isnan(outs["hebb"][b0]).any()
        assert torch.isfinite(outs["hebb"][others]).all()
    # The other samples are exactly what they are without the NaN, and match the reference.
    assert torch.equal(o_bad["h"][:t0], o_clean["h"][:t0])
    for k in o_clean:
        sel = (slice(None), others) if k == "h" else (others,)
        assert torch.equal(o_bad[k][sel], o_clean[k][sel]), k
        assert rel_err(o_bad[k][sel], o_ref[k][sel]) < 1e-10, k
    # Gradients of the other samples' inputs are unaffected.
    du_bad, du_clean = g_bad["u"][:, others], g_clean["u"][:, others]
    assert torch.isfinite(du_bad).all()
    assert rel_err(du_bad, du_clean) < 1e-12
    assert rel_err(du_bad, g_ref["u"][:, others]) < 1e-8
    assert torch.isfinite(g_bad["hebb0"][others]).all()
    assert torch.isnan(g_bad["u"][:, b0]).any()


# ---------------------------------------------------------------------------------------------
# gradcheck and opcheck.

GRADCHECK_CASES = [
    pytest.param(rule, ak, rule in MODULATED_RULES, True, id=f"{rule}-{ak}")
    for rule in RULES
    for ak in ALPHA_KINDS
] + [pytest.param("neuromod", "per_connection", False, False, id="neuromod-nofan-noclamp")]


@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", GRADCHECK_CASES)
def test_gradcheck(rule, alpha_kind, fanout, clamp):
    kw = make_inputs(rule, alpha_kind, fanout, clamp, T=3, B=2, N=4, seed=7, clip=0.6)
    names = grad_names(kw)
    fixed = {k: v for k, v in kw.items() if k not in names}

    def f(*tensors):
        h, state = hebbkern.plastic_rnn(
            **dict(zip(names, tensors, strict=True)), **fixed, backend="cpu"
        )
        return tuple(outputs_dict(h, state).values())

    # check_undefined_grad (on by default) also runs the backward with some output grads None.
    assert torch.autograd.gradcheck(f, tuple(kw[k] for k in names), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("rule", RULES)
def test_opcheck(rule):
    kw = make_inputs(rule, "per_connection", rule in MODULATED_RULES, True, T=5, B=2, N=4, seed=8)
    args = fused_args(kw, checkpoint_interval(5))
    torch.library.opcheck(torch.ops.hebbkern.plastic_rnn_fwd.default, args)


def test_opcheck_without_optional_inputs():
    kw = make_inputs("retro", "scalar", False, False, T=4, B=2, N=3, seed=8)
    for k in ("h0", "hebb0", "elig0"):
        kw.pop(k)
    torch.library.opcheck(torch.ops.hebbkern.plastic_rnn_fwd.default, fused_args(kw, 2))


# ---------------------------------------------------------------------------------------------
# Determinism.


@pytest.mark.parametrize("rule", ["hebb", "neuromod", "retro"])
def test_deterministic_and_thread_count_independent(rule, restore_threads):
    kw = make_inputs(rule, "per_connection", rule != "hebb", True, T=10, B=5, N=33, seed=13,
                     dtype=torch.float32)  # fmt: skip
    torch.set_num_threads(2)
    o1, g1 = run(clone_inputs(kw), "cpu")
    o2, g2 = run(clone_inputs(kw), "cpu")
    torch.set_num_threads(1)
    o3, g3 = run(clone_inputs(kw), "cpu")
    for k in o1:
        assert torch.equal(o1[k], o2[k]) and torch.equal(o1[k], o3[k]), k
    for k in g1:
        assert torch.equal(g1[k], g2[k]), f"gradient of {k} differs between two runs"
        assert torch.equal(g1[k], g3[k]), f"gradient of {k} differs between 2 threads and 1"


# ---------------------------------------------------------------------------------------------
# Half precision inputs.


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=DTYPE_IDS.get)
@pytest.mark.parametrize(
    "rule, fanout", [("hebb", False), ("clip", False), ("neuromod", True), ("retro", True)]
)
def test_low_precision(rule, fanout, dtype):
    """flash-attention's rule: against a float64 reference, the kernel's error is at most twice the
    error of the reference itself run in the same low precision (the reference runs in float16 and
    bfloat16 on CPU: bmm supports both)."""
    kw = make_inputs(rule, "per_neuron", fanout, True, T=7, B=3, N=16, seed=17, dtype=dtype)
    o_k, g_k = run(clone_inputs(kw), "cpu")
    o_lp, g_lp = run(clone_inputs(kw), "reference")
    o_64, g_64 = run(clone_inputs(kw, torch.float64), "reference")
    assert_low_precision_rule((o_k, g_k), (o_lp, g_lp), (o_64, g_64), dtype)


# ---------------------------------------------------------------------------------------------
# Backend selection.


@pytest.fixture
def spies(monkeypatch):
    """Counts calls of the fused op and of the reference made by hebbkern.plastic_rnn."""
    calls = {"cpu": 0, "reference": 0}
    real_op = torch.ops.hebbkern.plastic_rnn_fwd
    real_ref = hebbkern.reference.plastic_rnn

    def op(*args, **kwargs):
        calls["cpu"] += 1
        return real_op(*args, **kwargs)

    def ref(*args, **kwargs):
        calls["reference"] += 1
        return real_ref(*args, **kwargs)

    monkeypatch.setattr(torch.ops.hebbkern, "plastic_rnn_fwd", op)
    monkeypatch.setattr(hebbkern.reference, "plastic_rnn", ref)
    return calls


def test_default_backend_on_cpu_is_the_kernel(spies):
    kw = make_inputs("hebb", requires_grad=False)
    hebbkern.plastic_rnn(**kw)
    assert spies == {"cpu": 1, "reference": 0}


def test_use_backend_context(spies):
    kw = make_inputs("neuromod", fanout=True, requires_grad=False)
    with hebbkern.use_backend("reference"):
        h_ctx, _ = hebbkern.plastic_rnn(**kw)
        assert spies == {"cpu": 0, "reference": 1}
        hebbkern.plastic_rnn(**kw, backend="cpu")  # an explicit argument wins
        assert spies == {"cpu": 1, "reference": 1}
        with hebbkern.use_backend("cpu"):
            hebbkern.plastic_rnn(**kw)
            assert spies == {"cpu": 2, "reference": 1}
        hebbkern.plastic_rnn(**kw)  # the outer context is restored
        assert spies == {"cpu": 2, "reference": 2}
    hebbkern.plastic_rnn(**kw)  # and the automatic default after the block
    assert spies == {"cpu": 3, "reference": 2}
    h_ref, _ = hebbkern.reference.plastic_rnn(**kw)
    assert torch.equal(h_ctx, h_ref)


def test_use_backend_restored_after_exception():
    kw = make_inputs("hebb", requires_grad=False)
    with pytest.raises(RuntimeError, match="boom"):
        with hebbkern.use_backend("reference"):
            raise RuntimeError("boom")
    from hebbkern import backends

    assert backends.resolve(None, torch.device("cpu")) == "cpu"
    hebbkern.plastic_rnn(**kw)


@pytest.mark.parametrize("name", ["cuda_fast", "CPU", ""])
def test_unknown_backend(name):
    kw = make_inputs("hebb", requires_grad=False)
    with pytest.raises(ValueError, match="backend"):
        hebbkern.plastic_rnn(**kw, backend=name)
    with pytest.raises(ValueError, match="backend"):
        with hebbkern.use_backend(name):
            pass


# ---------------------------------------------------------------------------------------------
# Memory saved for backward (a deterministic property, not a timing).


def test_saved_memory_is_an_eighth_of_the_reference():
    kw = make_inputs("neuromod", "per_connection", True, False, T=50, B=32, N=128,
                     dtype=torch.float32, seed=0)  # fmt: skip
    cpu = saved_bytes(hebbkern.plastic_rnn, clone_inputs(kw), "cpu")
    ref = saved_bytes(hebbkern.plastic_rnn, clone_inputs(kw), "reference")
    one_trace = 32 * 128 * 128 * 4
    assert cpu >= one_trace  # the checkpoints are saved, and counted
    assert cpu <= ref / 8, (
        f"cpu backend saves {cpu / 2**20:.1f} MiB, reference {ref / 2**20:.1f} MiB"
    )
