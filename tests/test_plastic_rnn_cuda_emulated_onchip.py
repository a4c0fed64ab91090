"""The placements of the working set on chip (issue 13 item 1), run through the CUDA emulation.

The forward kernel has three instantiations, chosen at launch from the placement
(plastic_rnn_block.h, `fwd_where`): kWhere 2 keeps the sample's state AND its w and alpha in
shared memory for the whole sequence (loaded once per block), kWhere 1 the state only, kWhere 0
chooses at run time (the state in global memory). The backward of shared parameters has a kParams
instantiation that keeps w and alpha in shared memory next to its vectors and adjoint (a
population's backward reads its per-sample w and alpha from global memory). These tests check
(1) the chooser at its boundaries: the largest N each placement covers per device budget, dtype,
alpha kind and rule, and the exact byte budget where it switches; (2) each instantiation against
the CPU kernels and the eager reference (every rule, alpha kind, fan-out, clamp mask, odd N,
B = 1) at budgets that select it, in reverse execution order too; the population suite
(test_plastic_rnn_population_cuda_emulated.py) runs the forward's kWhere 2 with per-sample w and
alpha.
"""

from __future__ import annotations

import pytest
import torch
from helpers import (
    ALPHA_KINDS,
    MODULATED_RULES,
    RULES,
    clone_inputs,
    fused_args,
    make_inputs,
)
from test_plastic_rnn_cuda_emulated import (
    BWD_NAMES,
    FWD_NAMES,
    SHAPES,
    assert_close_outputs,
    assert_emulation_matches_reference,
    backward_args,
    case_id,
    detached,
    emulated_bwd,
    emulated_fwd,
    rule_cases,
)

from benchmarks import perf_model as pm

ops = torch.ops.hebbkern

# Shared memory one block may opt into (cudaDevAttrMaxSharedMemoryPerBlockOptin).
BUDGET = {"sm_80": 163 * 1024, "sm_90": 227 * 1024}


def place(N, elig, params, budget, elem=4, threads=512, K=10, backward=False):
    """(vec_in_smem, state_in_smem, smem_bytes, scratch_per_sample, params_in_smem) of the
    forward (or backward), from the C++ function the launch uses; params: elements of w and
    alpha."""
    return tuple(ops._plastic_rnn_placement(N, K, elig, backward, threads, budget, elem, params))


def param_elems(N, alpha_kind):
    return N * N + (N * N if alpha_kind == "per_connection" else N)


def largest(budget, elig, alpha_kind, elem, which):
    """The largest N whose forward keeps the state (which = 1) or the state, w and alpha
    (which = 4) in shared memory."""
    return max(
        n for n in range(1, 400) if place(n, elig, param_elems(n, alpha_kind), budget, elem)[which]
    )


# (arch, dtype bytes, eligibility trace, alpha kind) -> the largest N whose forward keeps w and
# alpha in shared memory next to the state (512 threads). The README's table of on-chip sizes.
PARAMS_ON_CHIP = {
    ("sm_90", 4, False, "per_connection"): 137,
    ("sm_90", 4, False, "per_neuron"): 168,
    ("sm_90", 4, True, "per_connection"): 119,
    ("sm_90", 4, True, "per_neuron"): 137,
    ("sm_90", 8, False, "per_connection"): 96,
    ("sm_90", 8, True, "per_connection"): 83,
    ("sm_80", 4, False, "per_connection"): 116,
    ("sm_80", 4, True, "per_connection"): 100,
    ("sm_80", 8, False, "per_connection"): 81,
}


@pytest.mark.parametrize("key", list(PARAMS_ON_CHIP), ids=lambda k: "-".join(map(str, k)))
def test_largest_n_with_params_on_chip(key):
    arch, elem, elig, alpha_kind = key
    n = largest(BUDGET[arch], elig, alpha_kind, elem, 4)
    assert n == PARAMS_ON_CHIP[key]
    # Past it the state alone stays on chip (up to the limits of test_cuda_build.py's ON_CHIP).
    st = place(n + 1, elig, param_elems(n + 1, alpha_kind), BUDGET[arch], elem)
    assert st[1] and not st[4]


def test_perf_model_mirrors_the_placement():
    """benchmarks/perf_model.fwd_placement decides as place() does (sm_90, float32)."""
    for elig in (False, True):
        for alpha_kind in ("per_connection", "per_neuron"):
            full = alpha_kind == "per_connection"
            for n in range(1, 260):
                got = place(n, elig, param_elems(n, alpha_kind), BUDGET["sm_90"])
                want = "params" if got[4] else "state" if got[1] else "global"
                assert pm.fwd_placement(n, elig, full) == want, (n, elig, alpha_kind)


# (arch, eligibility trace) -> the largest N whose backward keeps the shared w and alpha in
# shared memory next to its vectors and adjoint (float32, per-connection alpha, 512 threads).
BWD_PARAMS_ON_CHIP = {("sm_90", False): 130, ("sm_90", True): 113, ("sm_80", False): 108,
                      ("sm_80", True): 95}  # fmt: skip


@pytest.mark.parametrize("key", list(BWD_PARAMS_ON_CHIP), ids=lambda k: f"{k[0]}-elig{int(k[1])}")
def test_largest_n_with_params_on_chip_backward(key):
    arch, elig = key
    n = max(
        n
        for n in range(1, 300)
        if place(n, elig, param_elems(n, "per_connection"), BUDGET[arch], backward=True)[4]
    )
    assert n == BWD_PARAMS_ON_CHIP[key]
    if arch == "sm_90":
        assert pm.bwd_params_on_chip(n, elig) and not pm.bwd_params_on_chip(n + 1, elig)


def test_chooser_switches_at_the_exact_budget():
    """params_in_smem needs the vectors, the state, w and alpha to fit, byte for byte."""
    N, params = 50, param_elems(50, "per_connection")
    need = place(N, False, params, 1 << 30)[2]
    assert need == (4 * N + 10 * N + 32 + 3 * N * N) * 4  # G = 512 // 50 = 10 row groups
    assert place(N, False, params, need)[4]
    below = place(N, False, params, need - 1)
    assert below[1] and not below[4] and below[2] == need - params * 4
    need_b = place(N, False, params, 1 << 30, backward=True)[2]
    assert need_b == (8 * N + 3 * 16 * N + 16 + 32 + 3 * N * N) * 4  # bwd_vec_elems, 16 warps
    assert place(N, False, params, need_b, backward=True)[4]
    assert not place(N, False, params, need_b - 1, backward=True)[4]


def budgets(kw, threads, backward=False):
    """Shared-memory budgets (bytes) that select the forward's (or the backward's) placements
    for these inputs: state + w/alpha, state only, vectors only."""
    N = kw["u"].shape[2]
    elem = kw["u"].element_size()
    elig = kw["rule"] == "retro"
    alpha = kw["alpha"]
    full = alpha.dim() >= 2 and alpha.shape[-1] == N and alpha.shape[-2] == N
    params = N * N + (N * N if full else N)
    big = place(N, elig, params, 1 << 30, elem, threads, backward=backward)
    assert big[4]
    allin = big[2]
    state = place(N, elig, params, allin - 1, elem, threads, backward=backward)
    assert state[1] and not state[4]
    vec = place(N, elig, params, state[2] - 1, elem, threads, backward=backward)
    assert vec[0] and not vec[1]
    return {"params": allin, "state": state[2], "vectors": vec[2]}


# test_plastic_rnn_cuda_emulated's first two shapes, then odd N up to 51 with B = 1.
CASES = rule_cases(
    SHAPES[:2] + [("scalar", True, True, 4, 1, 1, 1), ("per_connection", False, True, 7, 1, 51, 4)]
)


@pytest.mark.parametrize("where", ["params", "state"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_instantiations_match_cpu_kernels(case, where):
    """float64: every forward output (checkpoints included) equals the CPU kernel's to
    rounding, and the backward run after it too, at the budget that selects the instantiation."""
    rule, ak, fan, clamp, T, B, N, ckpt = case
    fan = fan and rule in MODULATED_RULES
    kw = detached(make_inputs(rule, ak, fan, clamp, T=T, B=B, N=N, seed=N + T + 1))
    args = fused_args(kw, ckpt)
    threads = 64 if N < 50 else 512
    smem = budgets(kw, threads)[where]
    want = ops.plastic_rnn_fwd(*args)
    got = emulated_fwd(args, threads, smem)
    assert_close_outputs(got, want, FWD_NAMES, 1e-12)
    rev = emulated_fwd(args, threads, smem, reverse=True)
    for name, a, b in zip(FWD_NAMES, got, rev, strict=True):
        assert torch.equal(a, b), f"forward {name} depends on the execution order"
    bargs = backward_args(kw, want, ckpt)
    smem_b = budgets(kw, threads, backward=True)[where]
    got_b = emulated_bwd(bargs, threads, smem_b)
    assert_close_outputs(got_b, ops.plastic_rnn_bwd(*bargs), BWD_NAMES, 1e-11)
    rev_b = emulated_bwd(bargs, threads, smem_b, reverse=True)
    for name, a, b in zip(BWD_NAMES, got_b, rev_b, strict=True):
        assert torch.equal(a, b), f"backward {name} depends on the execution order"


@pytest.mark.parametrize("where", ["params", "state", "vectors"])
def test_instantiations_give_the_same_bits(where):
    """float32: the instantiations compute the same arithmetic in the same order, so their
    outputs and gradients are bit-identical (only where w, alpha and the state are read from
    differs)."""
    kw = detached(make_inputs("neuromod", "per_connection", True, True, T=6, B=2, N=41,
                              dtype=torch.float32, seed=2))  # fmt: skip
    args = fused_args(kw, 2)
    got = emulated_fwd(args, 128, budgets(kw, 128)[where])
    base = emulated_fwd(args, 128, 0)  # everything in global memory
    for name, x, y in zip(FWD_NAMES, got, base, strict=True):
        assert torch.equal(x, y), name
    bargs = backward_args(kw, base, 2)
    got_b = emulated_bwd(bargs, 128, budgets(kw, 128, backward=True)[where])
    base_b = emulated_bwd(bargs, 128, 0)
    for name, x, y in zip(BWD_NAMES, got_b, base_b, strict=True):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("alpha_kind", ALPHA_KINDS)
@pytest.mark.parametrize("rule", RULES)
def test_params_on_chip_against_reference(rule, alpha_kind, dtype, tol):
    """End to end against the eager reference with w and alpha in shared memory in the forward
    and the backward: outputs and the gradient of every input (odd N, clamp mask, fan-out where
    the rule has one, B = 1)."""
    kw = make_inputs(rule, alpha_kind, rule in MODULATED_RULES, True, T=9, B=1, N=31, seed=8)
    d = detached(clone_inputs(kw, dtype))  # a budget where both passes keep w and alpha on chip
    smem = max(budgets(d, 64)["params"], budgets(d, 64, backward=True)["params"])
    assert_emulation_matches_reference(kw, dtype, tol, 64, smem)
