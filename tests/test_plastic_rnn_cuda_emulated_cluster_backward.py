"""The cluster backward of plastic_rnn (issue 13 item 2, second part), run through the CUDA
emulation: c thread blocks per sample, each owning a slice of the sample's columns (adjoint state,
recomputed traces, column vectors), exchanging the row sums of the adjoints of h through distributed
shared memory (``plastic_rnn_cluster_backward.h``).

``_plastic_rnn_emulated_bwd_cluster`` runs the launch's own grid and clusters on the CPU, the c
blocks of a cluster as host threads with NaN-poisoned shared memory. The tests force c and the
shared-memory budget (which picks where a block keeps its adjoint state and recomputed traces) so
that every layout runs: every gradient against the CPU kernels' backward (float64, to rounding) for
every rule, alpha kind, fan-out and clamp mask, odd N (c not dividing N, N < c, N = 1025), B = 1 to
3, populations; end to end (cluster forward and cluster backward under autograd) against the eager
reference in float64 and float32; the same bits in reverse execution order and run after run; and
the launch rule at its boundaries, against its mirror in benchmarks/perf_model_launch.py.
"""

from __future__ import annotations

import pytest
import torch
from helpers import MODULATED_RULES, RULES, fused_args, make_inputs
from test_plastic_rnn_cuda_emulated import (
    BIG,
    BWD_NAMES,
    assert_close_outputs,
    assert_run_matches_reference,
    backward_args,
    detached,
    emulated_bwd,
)
from test_plastic_rnn_cuda_emulated_cluster import (
    _ClusterEmulated,
    assert_population_matches_oracle,
    population_inputs,
)
from test_plastic_rnn_population_cuda_emulated import canonical, raw_bwd_args

import hebbkern
from benchmarks import perf_model_launch as pml
from hebbkern.ops.plastic_rnn import checkpoint_interval

ops = torch.ops.hebbkern
SM90 = 227 * 1024
WHERE = {"traces": pml.BWD_TRACES, "state": pml.BWD_STATE, "global": pml.BWD_GLOBAL}


def cluster_bwd(bargs, threads, smem, c, reverse=False, sm_count=132, cluster_max=16):
    return ops._plastic_rnn_emulated_bwd_cluster(*bargs, threads, smem, reverse, c, sm_count,
                                                 cluster_max)  # fmt: skip


def budget_for(where, N, K, c, elig, threads, elem):
    """The smallest shared-memory budget whose cluster backward placement is ``where``."""
    full = pml.cluster_bwd_placement(N, K, elig, c, threads, BIG, elem)
    state = (2 if elig else 1) * N * pml.cluster_cols(N, c) * elem
    if where == "traces":
        return full.smem_bytes
    if where == "state":
        return full.smem_bytes - K * state
    return full.smem_bytes - (K + 1) * state


def check_backward(args, bargs_of, c, where, K, elig, threads=128, tol=1e-11):
    """The CPU kernels' forward, then their backward against the cluster backward on the same
    checkpoints (float64)."""
    N = args[0].shape[2]
    smem = budget_for(where, N, K, c, elig, threads, 8)
    assert pml.cluster_bwd_placement(N, K, elig, c, threads, smem, 8).where == WHERE[where]
    out = ops.plastic_rnn_fwd(*args)
    want = ops.plastic_rnn_bwd(*bargs_of(out))
    got = cluster_bwd(bargs_of(out), threads, smem, c)
    assert_close_outputs(got, want, BWD_NAMES, tol)


# (alpha kind, fan-out, clamp, T, B, N, ckpt, c, where): odd N, c not dividing N, N < c (N = 1
# and 7 with c = 16: blocks that own no column), B = 1, 2, 3, chunks of 1 to 3 steps (T not a
# multiple), every placement of a block's working set, segments of 1 to 32 lanes.
SHAPES = [
    ("per_connection", True, True, 7, 3, 33, 3, 4, "traces"),
    ("per_neuron", False, False, 5, 1, 7, 2, 16, "traces"),
    ("scalar", True, False, 3, 1, 1, 1, 2, "traces"),
    ("per_connection", False, True, 6, 3, 51, 2, 2, "state"),
    ("per_neuron", True, True, 4, 1, 51, 3, 4, "global"),
    ("scalar", False, True, 5, 3, 33, 2, 16, "state"),
    ("per_connection", True, True, 5, 2, 64, 2, 8, "traces"),  # c dividing N
    ("per_connection", False, False, 4, 2, 70, 3, 2, "global"),  # 35 columns: segments of 32
]
CASES = [(rule, *s) for rule in RULES for s in SHAPES]


def case_id(case):
    rule, ak, fan, clamp, T, B, N, ckpt, c, where = case
    return f"{rule}-{ak}-fan{int(fan)}-clamp{int(clamp)}-T{T}B{B}N{N}K{ckpt}-c{c}-{where}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cluster_backward_matches_cpu_kernels(case):
    rule, ak, fan, clamp, T, B, N, ckpt, c, where = case
    fan = fan and rule in MODULATED_RULES
    kw = detached(make_inputs(rule, ak, fan, clamp, T=T, B=B, N=N, seed=N + T + c))
    args = fused_args(kw, ckpt)
    check_backward(args, lambda out: backward_args(kw, out, ckpt), c, where, ckpt,
                   rule == "retro")  # fmt: skip


@pytest.mark.parametrize("rule, N", [("hebb", 1025), ("neuromod", 1025), ("oja", 1100)])
def test_cluster_backward_large_odd_n(rule, N):
    """N = 1025 and 1100 over 16 blocks (64 to 69 columns), state and traces in global scratch."""
    kw = detached(make_inputs(rule, "per_connection", rule in MODULATED_RULES, True, T=3, B=1,
                              N=N, seed=1))  # fmt: skip
    args = fused_args(kw, 2)
    check_backward(args, lambda out: backward_args(kw, out, 2), 16, "global", 2, False,
                   threads=256, tol=1e-10)  # fmt: skip


POP_CASES = [
    # rule, alpha kind, T, B, N, ckpt, c, where
    ("neuromod", "per_sample_connection", 6, 3, 33, 2, 4, "traces"),
    ("retro", "per_sample_neuron", 5, 2, 7, 2, 16, "state"),
    ("hebb", "per_sample_scalar", 4, 1, 51, 3, 2, "global"),
    ("oja", "per_sample_connection", 5, 3, 33, 2, 16, "traces"),
    ("clip", "shared", 4, 2, 33, 3, 4, "state"),
]


@pytest.mark.parametrize("case", POP_CASES, ids=lambda c: "-".join(map(str, c)))
def test_cluster_backward_population_matches_cpu_kernels(case):
    """Per-sample w, alpha and eta (a population), float64."""
    rule, kind, T, B, N, ckpt, c, where = case
    a, args = population_inputs(rule, kind, T, B, N, ckpt)
    check_backward(args, lambda out: raw_bwd_args(a, rule, ckpt, out), c, where, ckpt,
                   rule == "retro")  # fmt: skip


class _ClusterBothEmulated(_ClusterEmulated):
    """plastic_rnn as a training step on sm_90 with clusters runs it: the cluster forward and the
    cluster backward (both emulated), the backward with its own c."""

    @staticmethod
    def forward(ctx, geometry, smem, rule, clip, ckpt, clamp, *tensors):
        # geometry: (threads, c_fwd, c_bwd[, device]), device as _ClusterEmulated's.
        threads, c_fwd, ctx.c_bwd, *device = geometry
        return _ClusterEmulated.forward(ctx, (threads, c_fwd, *device), smem, rule, clip, ckpt,
                                        clamp, *tensors)  # fmt: skip

    @staticmethod
    def backward(ctx, gh, gH, gE):
        u, w, alpha, h0, h, ck_h, ck_e, mod, eta, mod_w, mod_b, fan_w, fan_b = ctx.saved_tensors
        threads, smem, rule, clip, ckpt, clamp = ctx.cfg
        g = ops._plastic_rnn_emulated_bwd_cluster(
            gh, gH, gE if rule == "retro" else None, u, w, alpha, h0, h, ck_h, ck_e, mod, clamp,
            eta, mod_w, mod_b, fan_w, fan_b, rule, clip, ckpt, threads, smem, False, ctx.c_bwd,
            *ctx.emu_device,
        )  # fmt: skip
        return _ClusterEmulated.input_grads(ctx, g)


def run_cluster_both(kw, c_fwd, c_bwd, smem=BIG, threads=128, device=(132, 16, False)):
    """A training step over clusters (``device``: sm_count, cluster_max, global_sync)."""
    a = canonical(kw)
    tensors = [a.u, a.w, a.alpha, a.h0, a.hebb0, a.elig0, a.eta, a.mod_w, a.mod_b, a.fanout_w,
               a.fanout_b]  # fmt: skip
    ckpt = checkpoint_interval(a.u.shape[0])
    h, hebb, elig = _ClusterBothEmulated.apply((threads, c_fwd, c_bwd, device), smem, a.rule,
                                               a.clip, ckpt, a.clamp_mask, *tensors)  # fmt: skip
    return h, hebbkern.PlasticState(h[-1], hebb, elig if a.rule == "retro" else None)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize(
    "rule, alpha_kind, c_fwd, c_bwd",
    [("hebb", "per_connection", 4, 2), ("oja", "scalar", 16, 16), ("clip", "per_neuron", 2, 4),
     ("neuromod", "per_connection", 16, 8), ("retro", "per_neuron", 4, 16),
     ("gated", "per_connection", 2, 2), ("neuromod", "per_neuron", 8, 4)],
)  # fmt: skip
def test_cluster_training_step_against_reference(rule, alpha_kind, c_fwd, c_bwd, dtype, tol):
    """End to end, cluster forward and cluster backward: outputs and every gradient."""
    kw = make_inputs(rule, alpha_kind, rule in MODULATED_RULES, True, T=9, B=3, N=29, seed=5)
    assert_run_matches_reference(kw, dtype, tol, lambda k: run_cluster_both(k, c_fwd, c_bwd))


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_cluster_backward_population_against_oracle(dtype, tol):
    """Per-sample w, alpha, eta end to end against the reference run once per sample."""
    assert_population_matches_oracle(dtype, tol, lambda k: run_cluster_both(k, 4, 4))


@pytest.mark.parametrize("where", list(WHERE))
@pytest.mark.parametrize("rule", ["neuromod", "retro", "hebb"])
def test_cluster_backward_no_races_same_bits(rule, where):
    """Reverse execution order within each block, and repeated runs (the cluster's blocks are
    host threads, scheduled differently each time): the same bits."""
    kw = detached(make_inputs(rule, "per_connection", rule in MODULATED_RULES, True, T=8, B=2,
                              N=37, dtype=torch.float32, seed=11))  # fmt: skip
    args = fused_args(kw, 3)
    bargs = backward_args(kw, ops.plastic_rnn_fwd(*args), 3)
    smem = budget_for(where, 37, 3, 4, rule == "retro", 128, 4)
    runs = [cluster_bwd(bargs, 128, smem, 4), cluster_bwd(bargs, 128, smem, 4, reverse=True),
            cluster_bwd(bargs, 128, smem, 4), cluster_bwd(bargs, 128, smem, 4)]  # fmt: skip
    for other in runs[1:]:
        for name, a, b in zip(BWD_NAMES, runs[0], other, strict=True):
            assert torch.equal(a, b), f"backward {name} depends on the execution order"


def test_cluster_backward_of_one_is_the_one_block_backward():
    """c = 1 (forced, or chosen without clusters) runs today's one-block backward: the same
    bits."""
    kw = detached(make_inputs("neuromod", "per_connection", True, True, T=5, B=2, N=20, seed=2))
    args = fused_args(kw, 2)
    bargs = backward_args(kw, ops.plastic_rnn_fwd(*args), 2)
    base = emulated_bwd(bargs, 128, BIG)
    for got in (cluster_bwd(bargs, 128, BIG, 1), cluster_bwd(bargs, 128, BIG, 0, cluster_max=1)):
        for name, a, b in zip(BWD_NAMES, base, got, strict=True):
            assert torch.equal(a, b), name


def test_cluster_backward_chosen_by_the_rule_runs_the_cluster():
    """cluster = 0: the launch rule's c gives the forced c's bits."""
    kw = detached(make_inputs("retro", "per_neuron", True, True, T=4, B=1, N=40, seed=4))
    args = fused_args(kw, 2)
    bargs = backward_args(kw, ops.plastic_rnn_fwd(*args), 2)
    c = plan(1, 40, 2, elig=True, elem=8, threads=128, cluster_threads=128)[0]
    assert c == 4
    auto, forced = cluster_bwd(bargs, 128, SM90, 0), cluster_bwd(bargs, 128, SM90, c)
    for name, a, b in zip(BWD_NAMES, auto, forced, strict=True):
        assert torch.equal(a, b), name


def test_cluster_backward_refuses_what_does_not_fit():
    kw = detached(make_inputs("hebb", T=2, B=1, N=40))
    args = fused_args(kw, 1)
    bargs = backward_args(kw, ops.plastic_rnn_fwd(*args), 1)
    with pytest.raises(ValueError, match="does not fit the shared-memory budget"):
        cluster_bwd(bargs, 128, 100, 4)
    with pytest.raises(ValueError, match="cluster must be in"):
        cluster_bwd(bargs, 128, BIG, 17)


def test_inbox_owner_of_every_row():
    """The row -> owning block map of the exchange (inbox_slot) is col_begin's inverse: through
    the kernels, a cluster of every size up to 16 over every N up to 40 gives the CPU kernels'
    gradients; here, the arithmetic itself."""
    for N in range(1, 80):
        for c in range(1, 17):
            begins = [N * r // c for r in range(c + 1)]
            for i in range(N):
                q = ((i + 1) * c - 1) // N
                assert begins[q] <= i < begins[q + 1], (N, c, i)


# ---------------------------------------------------------------------------------------------
# The launch rule (plan_cluster_bwd) at its boundaries, and its mirror in the performance model


def plan(B, N, K, elig=False, elem=4, budget=SM90, sm_count=132, cluster_max=16, threads=512,
         cluster_threads=256):  # fmt: skip
    """[c, where, smem bytes, scratch per block] from the C++ rule the launch uses (the CUDA
    launch's block sizes: 512 threads for one block per sample, 256 for a cluster's blocks)."""
    return tuple(ops._plastic_rnn_cluster_plan_bwd(B, N, K, elig, threads, cluster_threads, budget,
                                                   elem, sm_count, cluster_max))  # fmt: skip


def test_bwd_rule_issue_cases():
    """float32, H200: the issue case (B = 32, N = 128, T = 50: K = 8) gets 4 blocks a sample with
    the state and the chunk's traces on chip; B = 1 spreads to 16; N = 1025 streams from global
    scratch over 16 blocks."""
    assert plan(32, 128, 8)[:2] == (4, pml.BWD_TRACES)
    assert plan(1, 128, 10)[:2] == (16, pml.BWD_TRACES)
    assert plan(256, 128, 10)[:2] == (4, pml.BWD_TRACES)
    assert plan(8, 1025, 15)[:2] == (16, pml.BWD_GLOBAL)
    assert plan(1024, 32, 10)[:2] == (2, pml.BWD_TRACES)  # the population row


# float32, K = 10, a batch that fills the GPU: (N, elig) -> (c, where) at the boundaries where the
# smallest cluster keeping the traces (then the state) on chip grows; below N = 16 no block of a
# cluster would keep 8 columns, so one block per sample (its state on chip).
BWD_BOUNDARIES = {
    (15, False): (1, 1), (16, False): (2, 2), (100, False): (2, 2), (101, False): (4, 2),
    (141, False): (4, 2), (142, False): (8, 2), (200, False): (8, 2), (201, False): (16, 2),
    (283, False): (16, 2), (284, False): (2, 1), (645, False): (8, 1), (646, False): (16, 1),
    (906, False): (16, 1), (907, False): (16, 0), (1025, False): (16, 0),
    (15, True): (1, 1), (16, True): (2, 2), (196, True): (16, 2), (197, True): (2, 1),
    (652, True): (16, 1), (653, True): (16, 0),
}  # fmt: skip


@pytest.mark.parametrize("key", list(BWD_BOUNDARIES), ids=lambda k: f"N{k[0]}-elig{int(k[1])}")
def test_bwd_rule_boundaries(key):
    N, elig = key
    assert plan(10_000, N, 10, elig)[:2] == BWD_BOUNDARIES[key]


def test_bwd_rule_without_clusters_keeps_one_block():
    for N in (1, 128, 300, 1025):
        assert plan(1, N, 10, cluster_max=1)[0] == 1


@pytest.mark.parametrize("elem", [4, 8])
@pytest.mark.parametrize("elig", [False, True])
def test_perf_model_mirrors_the_bwd_rule(elig, elem):
    """plan_backward_cluster decides as plan_cluster_bwd does, bytes and scratch included."""
    for N in list(range(1, 40)) + list(range(100, 1100, 13)):
        for K in (1, 8, 15):
            for B, sms, cmax, budget in ((1, 132, 16, SM90), (40, 132, 8, SM90),
                                         (5000, 108, 1, 163 * 1024), (3, 132, 16, 48 * 1024)):  # fmt: skip
                want = plan(B, N, K, elig, elem, budget, sms, cmax)
                got = pml.plan_backward_cluster(B, N, K, elem, sms, budget, cmax, elig)
                assert (got.blocks_per_sample, got.where, got.smem_bytes, got.scratch) == want, (
                    N, K, B, cmax)  # fmt: skip
