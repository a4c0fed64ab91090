"""The fused C++ ``cpu`` backend of ``hebbkern.plastic_step`` against the eager ``reference``, and
``plastic_step`` chained over T steps against ``plastic_rnn``.

The reference (hebbkern/reference/plastic_step.py) is the oracle: the new activity, trace and
eligibility and the gradient of every input are compared on fresh random inputs.
"""

from __future__ import annotations

import functools

import pytest
import torch
from helpers import (
    MODULATED_RULES,
    RULES,
    all_cases,
    check_cpu_against_reference,
    clone_inputs,
    grad_names,
    isa_rules,
    make_inputs,
    odd_size_rules,
    outputs_dict,
    rel_err,
    run,
)
from helpers_step import STEP_ALPHA_KINDS, partial_cases, run_step, step_inputs, step_outputs

import hebbkern

TOL = {torch.float64: 1e-8, torch.float32: 1e-4}


def all_step_cases():
    return all_cases(STEP_ALPHA_KINDS, ("fan", "nofan"), ("clamp", "free"))


check_against_reference = functools.partial(
    check_cpu_against_reference, runner=run_step, loss_on=("h", "hebb", "elig")
)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", list(all_step_cases()))
def test_matches_reference(rule, alpha_kind, fanout, clamp, dtype, nan_poison):
    kw = step_inputs(rule, alpha_kind, fanout, clamp, B=3, N=9, dtype=dtype, seed=11)
    check_against_reference(kw, TOL[dtype])


@pytest.mark.parametrize("rule", ["hebb", "neuromod", "retro"])
@pytest.mark.parametrize("alpha_kind", ["per_sample", "per_neuron"])
def test_per_sample_weights(rule, alpha_kind, nan_poison):
    """w [B, N, N] (with alpha per sample or shared): a population of independent networks."""
    kw = step_inputs(rule, alpha_kind, rule != "hebb", True, B=4, N=7, per_sample_w=True, seed=3)
    check_against_reference(kw, TOL[torch.float64])


def test_per_sample_weights_are_independent_networks():
    """Sample b of a per-sample population equals a batch-of-one step with network b."""
    kw = step_inputs("neuromod", "per_sample", True, False, B=3, N=6, per_sample_w=True, seed=4,
                     requires_grad=False)  # fmt: skip
    out = hebbkern.plastic_step(**kw, backend="cpu")
    for b in range(3):
        one = dict(kw)
        for k in ("u", "h", "hebb", "w", "alpha"):
            one[k] = kw[k][b : b + 1]
        one["w"], one["alpha"] = kw["w"][b], kw["alpha"][b]
        ob = hebbkern.plastic_step(**one, backend="cpu")
        assert rel_err(out.h[b], ob.h[0]) < 1e-14
        assert rel_err(out.hebb[b], ob.hebb[0]) < 1e-14


@pytest.mark.parametrize("isa", ["default", "avx2", "avx512"])
@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", isa_rules("per_sample"))
def test_every_instruction_set(rule, alpha_kind, fanout, clamp, isa, monkeypatch, nan_poison):
    monkeypatch.setenv("HEBBKERN_CPU_ISA", isa)
    kw = step_inputs(rule, alpha_kind, fanout, clamp, B=3, N=21, dtype=torch.float32, seed=5)
    check_against_reference(kw, TOL[torch.float32])


# The post_pre mat-vec sums each row in vector lanes (csrc/cpu/lanes.h: full groups, the leftovers
# as an overlapping masked group, a short loop below one vector): N below, at and around the lane
# counts of every instruction set (float32: 4, 8, 16 lanes; float64: 2, 4, 8).
@pytest.mark.parametrize("isa", ["default", "avx2", "avx512"])
@pytest.mark.parametrize("N", [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_post_pre_row_sums_every_instruction_set(isa, N, dtype, monkeypatch, nan_poison):
    monkeypatch.setenv("HEBBKERN_CPU_ISA", isa)
    kw = step_inputs("neuromod", "per_connection", True, True, B=2, N=N, dtype=dtype, seed=N)
    kw["layout"] = "post_pre"
    check_against_reference(kw, TOL[dtype])


@pytest.mark.parametrize("rule, loss_on", list(partial_cases()))
def test_partial_outputs(rule, loss_on, nan_poison):
    """Only some outputs used: the op's backward receives None for the others."""
    kw = step_inputs(rule, "per_connection", rule in MODULATED_RULES, True, B=2, N=7, seed=5)
    check_against_reference(kw, TOL[torch.float64], loss_on=loss_on, require_nonzero=False)


@pytest.mark.parametrize("rule", RULES)
def test_optional_inputs_omitted(rule, nan_poison):
    """No elig (zeros), no mod_b (0), eta as a Python float: only given inputs get gradients."""
    kw = step_inputs(rule, "per_neuron", False, False, B=2, N=6, seed=3)
    kw.pop("elig", None)
    kw.pop("mod_b", None)
    if "eta" in kw:
        kw["eta"] = 0.3
    check_against_reference(kw, TOL[torch.float64], require_nonzero=False)


ODD_SHAPES = [(1, 1), (1, 7), (3, 1), (2, 33), (2, 100), (1, 129)]


@pytest.mark.parametrize("shape", ODD_SHAPES, ids=lambda s: "B{}-N{}".format(*s))
@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", odd_size_rules("per_sample"))
def test_odd_sizes(shape, rule, alpha_kind, fanout, clamp, nan_poison):
    B, N = shape
    kw = step_inputs(rule, alpha_kind, fanout, clamp, B=B, N=N, seed=B * 100 + N)
    check_against_reference(kw, TOL[torch.float64], require_nonzero=False)


def _transposed(x, d0, d1):
    return x.detach().transpose(d0, d1).contiguous().transpose(d0, d1)


@pytest.mark.parametrize("rule, alpha_kind", [("hebb", "per_connection"), ("retro", "per_sample")])
def test_non_contiguous_inputs(rule, alpha_kind, nan_poison):
    kw = step_inputs(rule, alpha_kind, rule == "retro", True, B=3, N=8, seed=9)
    nc = dict(kw)
    for k, (d0, d1) in {"u": (0, 1), "h": (0, 1), "hebb": (1, 2), "w": (0, 1),
                        "alpha": (-1, -2), "elig": (0, 2)}.items():  # fmt: skip
        if k in kw:
            nc[k] = _transposed(kw[k], d0, d1)
            assert not nc[k].is_contiguous() and torch.equal(nc[k], kw[k]), k
    nc["clamp_mask"] = _transposed(kw["clamp_mask"], 0, 1)
    nc = {k: v.detach().requires_grad_() if isinstance(v, torch.Tensor) and v.is_floating_point()
          else v for k, v in nc.items()}  # fmt: skip
    o_nc, g_nc = run_step(nc, "cpu")
    o_r, g_r = run_step(clone_inputs(kw), "reference")
    for k in o_r:
        assert rel_err(o_nc[k], o_r[k]) < 1e-8, k
    for k in grad_names(kw):
        assert rel_err(g_nc[k], g_r[k]) < 1e-8, k


def test_low_precision_runs_in_float32():
    kw = step_inputs("clip", "per_neuron", B=2, N=5, dtype=torch.float64, requires_grad=False)
    lp = {k: v.to(torch.bfloat16) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
          for k, v in kw.items()}  # fmt: skip
    out = hebbkern.plastic_step(**lp, backend="cpu")
    ref = hebbkern.plastic_step(**kw, backend="reference")
    assert out.h.dtype == torch.bfloat16 and out.hebb.dtype == torch.bfloat16
    assert rel_err(out.h, ref.h) < 2e-2 and rel_err(out.hebb, ref.hebb) < 2e-2


# ---------------------------------------------------------------------------------------------
# Chained over T steps under autograd: the values and gradients of plastic_rnn.


def chain_cases():
    for rule in RULES:
        yield pytest.param(rule, "per_connection", rule in MODULATED_RULES, True, id=rule)
    yield pytest.param("neuromod", "per_neuron", False, False, id="neuromod-perneuron-nofan")
    yield pytest.param("oja", "scalar", False, False, id="oja-scalar")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", list(chain_cases()))
def test_chain_matches_plastic_rnn(rule, alpha_kind, fanout, clamp, dtype, nan_poison):
    T = 8
    kw = make_inputs(rule, alpha_kind, fanout, clamp, T=T, B=3, N=9, dtype=dtype, seed=21)
    o_rnn, g_rnn = run(clone_inputs(kw, torch.float64), "reference")

    k = clone_inputs(kw)
    h, hebb, elig = k["h0"], k["hebb0"], k.get("elig0")
    hs = []
    for t in range(T):
        h, hebb, elig = hebbkern.plastic_step(
            k["u"][t], h, hebb, k["w"], k["alpha"], rule=rule, eta=k.get("eta"),
            mod_w=k.get("mod_w"), mod_b=k.get("mod_b"), fanout_w=k.get("fanout_w"),
            fanout_b=k.get("fanout_b"), clip=k["clip"], elig=elig,
            clamp_mask=None if "clamp_mask" not in k else k["clamp_mask"][t], backend="cpu",
        )  # fmt: skip
        hs.append(h)
    outs = outputs_dict(torch.stack(hs), hebbkern.PlasticState(h, hebb, elig))
    from helpers import loss_weights

    wts = loss_weights(outs, 1)
    sum((outs[n] * wts[n].to(dtype)).sum() for n in outs).backward()
    for n, ref in o_rnn.items():
        assert rel_err(outs[n], ref) < TOL[dtype], n
    for n in grad_names(kw):
        assert rel_err(k[n].grad, g_rnn[n]) < TOL[dtype], n


# ---------------------------------------------------------------------------------------------
# gradcheck, opcheck, torch.compile.

GRADCHECK_CASES = [
    pytest.param(rule, ak, rule in MODULATED_RULES, True, id=f"{rule}-{ak}")
    for rule in RULES
    for ak in STEP_ALPHA_KINDS
]


@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", GRADCHECK_CASES)
def test_gradcheck(rule, alpha_kind, fanout, clamp):
    kw = step_inputs(rule, alpha_kind, fanout, clamp, B=2, N=4, seed=7, clip=0.6,
                     per_sample_w=alpha_kind == "per_sample")  # fmt: skip
    names = grad_names(kw)
    fixed = {k: v for k, v in kw.items() if k not in names}

    def f(*tensors):
        state = hebbkern.plastic_step(**dict(zip(names, tensors, strict=True)), **fixed,
                                      backend="cpu")  # fmt: skip
        return tuple(step_outputs(state).values())

    assert torch.autograd.gradcheck(f, tuple(kw[k] for k in names), eps=1e-6, atol=1e-7)


def raw_args(kw):
    mod_b = kw.get("mod_b")
    return (
        kw["u"], kw["h"], kw["hebb"], kw.get("elig"), kw["w"], kw["alpha"], kw.get("clamp_mask"),
        kw.get("eta"), kw.get("mod_w"), mod_b, kw.get("fanout_w"), kw.get("fanout_b"),
        kw["rule"], float(kw["clip"]),
    )  # fmt: skip


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("alpha_kind", ["per_connection", "per_sample", "scalar"])
def test_opcheck(rule, alpha_kind):
    kw = step_inputs(rule, alpha_kind, rule in MODULATED_RULES, True, B=2, N=4, seed=8,
                     per_sample_w=alpha_kind == "per_sample")  # fmt: skip
    torch.library.opcheck(torch.ops.hebbkern.plastic_step_fwd.default, raw_args(kw))


def test_opcheck_backward_op():
    kw = step_inputs("retro", "per_connection", True, True, B=2, N=4, seed=8, requires_grad=False)
    h_new, hebb_new, elig_new, mod = torch.ops.hebbkern.plastic_step_fwd(*raw_args(kw))
    g = torch.Generator().manual_seed(0)
    grads = tuple(torch.randn(x.shape, generator=g, dtype=x.dtype) for x in (h_new, hebb_new,
                                                                            elig_new))  # fmt: skip
    a = raw_args(kw)
    args = grads + a[:6] + (h_new, mod) + a[6:]
    torch.library.opcheck(torch.ops.hebbkern.plastic_step_bwd.default, args)


@pytest.mark.parametrize("rule", ["hebb", "retro"])
def test_torch_compile_fullgraph(rule):
    torch._dynamo.reset()
    kw = step_inputs(rule, "per_neuron", rule == "retro", False, B=2, N=5, seed=2)

    def two_steps(u, h, hebb, w, alpha, elig):
        extra = {k: kw[k] for k in ("eta", "mod_w", "mod_b", "fanout_w", "fanout_b") if k in kw}
        s = hebbkern.plastic_step(u, h, hebb, w, alpha, rule=rule, clip=0.5, elig=elig, **extra)
        s = hebbkern.plastic_step(u, s.h, s.hebb, w, alpha, rule=rule, clip=0.5, elig=s.elig,
                                  **extra)  # fmt: skip
        return s.h.sum() + s.hebb.square().sum()

    args = [kw[k] for k in ("u", "h", "hebb", "w", "alpha")] + [kw.get("elig")]
    compiled = torch.compile(two_steps, fullgraph=True, backend="aot_eager")
    got = compiled(*args)
    got_grads = torch.autograd.grad(got, args[:5])
    ref = two_steps(*args)
    ref_grads = torch.autograd.grad(ref, args[:5])
    assert rel_err(got, ref) < 1e-12
    for a, b in zip(got_grads, ref_grads, strict=True):
        assert rel_err(a, b) < 1e-12


@pytest.mark.parametrize("alpha_kind", ["per_connection", "per_neuron", "per_sample"])
def test_deterministic_and_thread_count_independent(alpha_kind, restore_threads):
    """B = 20 with shared per-connection alpha: d alpha is summed in groups of 3 samples; the
    groups never split between threads, so 1 and 2 threads give the same bits."""
    kw = step_inputs("retro", alpha_kind, True, True, B=20, N=129, dtype=torch.float32, seed=13)
    results = []
    for threads in (1, 2, 2):
        torch.set_num_threads(threads)
        results.append(run_step(clone_inputs(kw), "cpu"))
    for o, g in results[1:]:
        for k in o:
            assert torch.equal(o[k], results[0][0][k]), k
        for k in g:
            assert torch.equal(g[k], results[0][1][k]), k
    check_against_reference(kw, TOL[torch.float32])


@pytest.mark.parametrize("rule", ["neuromod", "retro", "hebb"])
def test_empty_batch_gives_zero_gradients_of_full_shape(rule):
    """B = 0: the batch sums of the shared parameters' gradients are zeros of their full shapes (a
    fuzz case found d mod_w of shape [0] when the sum over the batch was taken from numel / B)."""
    d, N = torch.float64, 3
    u = torch.zeros(0, N, dtype=d, requires_grad=True)
    h, hebb = torch.zeros(0, N, dtype=d), torch.zeros(0, N, N, dtype=d)
    w = torch.randn(N, N, dtype=d, requires_grad=True)
    alpha = torch.randn(N, N, dtype=d, requires_grad=True)
    kw = {"clip": 0.5}
    if rule in ("neuromod", "retro"):
        kw.update(mod_w=torch.randn(N, dtype=d, requires_grad=True),
                  mod_b=torch.tensor(0.1, dtype=d, requires_grad=True))  # fmt: skip
    if rule != "neuromod":
        kw["eta"] = torch.tensor(0.1, dtype=d, requires_grad=True)
    st = hebbkern.plastic_step(u, h, hebb, w, alpha, rule=rule, backend="cpu", **kw)
    leaves = [w, alpha, *(v for v in kw.values() if isinstance(v, torch.Tensor))]
    grads = torch.autograd.grad(st.h.sum() + st.hebb.sum(), leaves)
    for leaf, g in zip(leaves, grads, strict=True):
        assert g.shape == leaf.shape and not g.any()
