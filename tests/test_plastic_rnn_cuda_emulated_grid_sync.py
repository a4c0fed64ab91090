"""The cluster kernels of plastic_rnn with their blocks synchronised through global memory (issue 13
item 2, the sm_80 part; simt.h ``CudaGridCluster``), run through the CUDA emulation.

Below sm_90 there is no distributed shared memory: what a block writes into another block's
shared memory goes into that block's mailbox in global memory, and every cluster barrier (a counter
in global memory) ends with each block copying its mailbox over the "window" of shared memory the
mailbox stands for. ``global_sync=True`` runs the same kernel bodies that way on the CPU
(``EmuCluster`` with mailboxes, NaN-poisoned; a write through ``map`` outside the window fails the
launch). The exchange changes where the values travel, not what is computed, so every output must
have the same bits as the thread-block cluster's (itself tested against the CPU kernels and the
eager reference in test_plastic_rnn_cuda_emulated_cluster*.py); a few cases are also checked
against the CPU kernels and end to end against the reference directly. The launch rule with
``global_sync`` keeps all B x c blocks resident at once (B x c <= SM count): tested at its
boundaries and against its mirror in benchmarks/perf_model_launch.py.
"""

from __future__ import annotations

import pytest
import torch
from helpers import MODULATED_RULES, RULES, fused_args, make_inputs
from test_plastic_rnn_cuda_emulated import (
    BIG,
    BWD_NAMES,
    FWD_NAMES,
    assert_close_outputs,
    assert_run_matches_reference,
    backward_args,
    detached,
)
from test_plastic_rnn_cuda_emulated_cluster import budget_for as fwd_budget
from test_plastic_rnn_cuda_emulated_cluster import population_inputs
from test_plastic_rnn_cuda_emulated_cluster_backward import budget_for as bwd_budget
from test_plastic_rnn_cuda_emulated_cluster_backward import run_cluster_both
from test_plastic_rnn_population_cuda_emulated import raw_bwd_args

from benchmarks import perf_model_launch as pml

ops = torch.ops.hebbkern
A100 = 163 * 1024  # opt-in shared memory per block on an A100 (sm_80)
A100_SMS = 108


def fwd(args, threads, smem, c, global_sync, reverse=False):
    return ops._plastic_rnn_emulated_fwd_cluster(*args, threads, smem, reverse, c, A100_SMS, 16,
                                                 global_sync)  # fmt: skip


def bwd(bargs, threads, smem, c, global_sync, reverse=False):
    return ops._plastic_rnn_emulated_bwd_cluster(*bargs, threads, smem, reverse, c, A100_SMS, 16,
                                                 global_sync)  # fmt: skip


def assert_same_bits(got, want, names, what):
    for name, a, b in zip(names, got, want, strict=True):
        assert torch.equal(a, b), f"{what} {name}: the mailbox exchange changed the result"


# (alpha kind, fan-out, clamp, T, B, N, ckpt, c, forward where, backward where): odd N, c not
# dividing N, N < c (blocks without columns), B = 1 to 3, every placement of both kernels.
SHAPES = [
    ("per_connection", True, True, 7, 3, 33, 3, 4, "params", "traces"),
    ("per_neuron", False, False, 5, 1, 7, 2, 16, "state", "state"),
    ("scalar", True, False, 3, 1, 1, 1, 2, "params", "traces"),
    ("per_connection", False, True, 6, 3, 51, 2, 2, "global", "global"),
    ("per_neuron", True, True, 4, 2, 70, 3, 8, "state", "global"),
]
CASES = [(rule, *s) for rule in RULES for s in SHAPES]


def case_id(case):
    rule, ak, fan, clamp, T, B, N, ckpt, c, fw, bw = case
    return f"{rule}-{ak}-fan{int(fan)}-clamp{int(clamp)}-T{T}B{B}N{N}K{ckpt}-c{c}-{fw}-{bw}"


def run_both_ways(kw, ckpt, c, fw, bw, elig, row_alpha, threads=128, elem=8):
    """The forward and the backward (on the forward's checkpoints), each as a thread-block
    cluster and with global synchronisation; returns the four result tuples."""
    args = fused_args(kw, ckpt)
    N = args[0].shape[2]
    fs = fwd_budget(fw, N, c, elig, row_alpha, threads, elem)
    bs = bwd_budget(bw, N, ckpt, c, elig, threads, elem)
    f_dsmem, f_grid = fwd(args, threads, fs, c, False), fwd(args, threads, fs, c, True)
    bargs = backward_args(kw, f_dsmem, ckpt)
    b_dsmem, b_grid = bwd(bargs, threads, bs, c, False), bwd(bargs, threads, bs, c, True)
    return f_dsmem, f_grid, b_dsmem, b_grid


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_grid_sync_same_bits_as_the_cluster(case):
    rule, ak, fan, clamp, T, B, N, ckpt, c, fw, bw = case
    fan = fan and rule in MODULATED_RULES
    elig, row_alpha = rule == "retro", ak != "per_connection"
    kw = detached(make_inputs(rule, ak, fan, clamp, T=T, B=B, N=N, seed=N + T + c))
    f_dsmem, f_grid, b_dsmem, b_grid = run_both_ways(kw, ckpt, c, fw, bw, elig, row_alpha)
    assert_same_bits(f_grid, f_dsmem, FWD_NAMES, "forward")
    assert_same_bits(b_grid, b_dsmem, BWD_NAMES, "backward")


@pytest.mark.parametrize("rule", ["neuromod", "retro", "oja"])
def test_grid_sync_matches_cpu_kernels(rule):
    """Directly against the CPU kernels (float64): the forward, and the backward on its
    checkpoints."""
    kw = detached(make_inputs(rule, "per_connection", rule in MODULATED_RULES, True, T=7, B=2,
                              N=45, seed=9))  # fmt: skip
    args = fused_args(kw, 3)
    want = ops.plastic_rnn_fwd(*args)
    got = fwd(args, 128, BIG, 4, True)
    assert_close_outputs(got, want, FWD_NAMES, 1e-12)
    want_b = ops.plastic_rnn_bwd(*backward_args(kw, want, 3))
    got_b = bwd(backward_args(kw, got, 3), 128, BIG, 4, True)
    assert_close_outputs(got_b, want_b, BWD_NAMES, 1e-11)


@pytest.mark.parametrize("rule, N", [("hebb", 1025), ("neuromod", 1100)])
def test_grid_sync_large_odd_n(rule, N):
    """N = 1025 and 1100 over 16 blocks, the state streamed from global memory: the same bits."""
    kw = detached(make_inputs(rule, "per_connection", rule in MODULATED_RULES, True, T=3, B=1,
                              N=N, seed=1))  # fmt: skip
    f_dsmem, f_grid, b_dsmem, b_grid = run_both_ways(kw, 2, 16, "global", "global", False, False,
                                                     threads=256)  # fmt: skip
    assert_same_bits(f_grid, f_dsmem, FWD_NAMES, "forward")
    assert_same_bits(b_grid, b_dsmem, BWD_NAMES, "backward")


@pytest.mark.parametrize(
    "rule, kind, c", [("neuromod", "per_sample_connection", 4), ("retro", "per_sample_neuron", 16)]
)
def test_grid_sync_population_same_bits(rule, kind, c):
    """Per-sample w, alpha and eta (a population)."""
    a, args = population_inputs(rule, kind, 5, 3, 33, 2)
    f_dsmem, f_grid = fwd(args, 128, BIG, c, False), fwd(args, 128, BIG, c, True)
    assert_same_bits(f_grid, f_dsmem, FWD_NAMES, "forward")
    bargs = raw_bwd_args(a, rule, 2, f_dsmem)
    assert_same_bits(bwd(bargs, 128, BIG, c, True), bwd(bargs, 128, BIG, c, False), BWD_NAMES,
                     "backward")  # fmt: skip


@pytest.mark.parametrize("rule", ["neuromod", "retro", "hebb"])
def test_grid_sync_no_races_same_bits(rule):
    """Reverse execution order within each block, and repeated runs: the same bits."""
    kw = detached(make_inputs(rule, "per_connection", rule in MODULATED_RULES, True, T=8, B=2,
                              N=37, dtype=torch.float32, seed=11))  # fmt: skip
    args = fused_args(kw, 3)
    base = fwd(args, 128, BIG, 4, True)
    for other in (fwd(args, 128, BIG, 4, True, reverse=True), fwd(args, 128, BIG, 4, True)):
        assert_same_bits(other, base, FWD_NAMES, "forward")
    bargs = backward_args(kw, base, 3)
    base_b = bwd(bargs, 128, BIG, 4, True)
    for other in (bwd(bargs, 128, BIG, 4, True, reverse=True), bwd(bargs, 128, BIG, 4, True)):
        assert_same_bits(other, base_b, BWD_NAMES, "backward")


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize(
    "rule, alpha_kind, c_fwd, c_bwd",
    [("neuromod", "per_connection", 16, 8), ("retro", "per_neuron", 4, 16),
     ("hebb", "scalar", 2, 4)],
)  # fmt: skip
def test_grid_sync_training_step_against_reference(rule, alpha_kind, c_fwd, c_bwd, dtype, tol):
    """End to end under autograd: outputs and every gradient against the eager reference."""
    kw = make_inputs(rule, alpha_kind, rule in MODULATED_RULES, True, T=9, B=3, N=29, seed=5)
    device = (A100_SMS, 16, True)  # an sm_80 GPU's exchange
    assert_run_matches_reference(kw, dtype, tol,
                                 lambda k: run_cluster_both(k, c_fwd, c_bwd, device=device))  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The launch rules with global_sync: every block of the launch resident at once


def plan(B, N, elig=False, elem=4, budget=A100, sms=A100_SMS, global_sync=True):
    return tuple(ops._plastic_rnn_cluster_plan(B, N, elig, False, 512, budget, elem, sms, 16,
                                               global_sync))  # fmt: skip


def plan_bwd(B, N, K, elig=False, elem=4, budget=A100, sms=A100_SMS, global_sync=True):
    return tuple(ops._plastic_rnn_cluster_plan_bwd(B, N, K, elig, 512, 256, budget, elem, sms, 16,
                                                   global_sync))  # fmt: skip


# A100 (108 SMs, 163 KiB), float32: (B, N) -> the forward's c with and without the cap.
FWD_CASES = {
    (1, 128): (16, 16), (6, 128): (16, 16), (7, 128): (8, 8), (14, 128): (4, 4),
    (8, 1025): (8, 16), (7, 1025): (8, 16), (6, 1025): (16, 16), (32, 1025): (2, 16),
    (64, 1025): (1, 16), (200, 300): (1, 8),
}  # fmt: skip


@pytest.mark.parametrize("key", list(FWD_CASES), ids=lambda k: f"B{k[0]}-N{k[1]}")
def test_rule_keeps_the_launch_resident(key):
    B, N = key
    capped, free = FWD_CASES[key]
    assert plan(B, N)[0] == capped
    assert plan(B, N, global_sync=False)[0] == free


def test_rules_never_exceed_the_sms():
    """Forward and backward, any B and N: B x c <= SM count whenever c > 1, and where the cap
    does not bind the choice is the thread-block cluster's."""
    for N in (1, 8, 17, 64, 128, 200, 333, 700, 1025):
        for B in (1, 2, 3, 5, 8, 13, 27, 54, 55, 108, 109, 1000):
            for elig in (False, True):
                for got, free in ((plan(B, N, elig), plan(B, N, elig, global_sync=False)),
                                  (plan_bwd(B, N, 4, elig), plan_bwd(B, N, 4, elig, global_sync=False))):  # fmt: skip
                    assert got[0] == 1 or B * got[0] <= A100_SMS, (B, N, elig, got)
                    if B * free[0] <= A100_SMS:
                        assert got == free, (B, N, elig)


def test_bwd_rule_issue_case_on_an_a100():
    """hebb, B = 8, N = 1025, K = 15: 8 blocks a sample (64 of the 108 SMs), not 16."""
    assert plan_bwd(8, 1025, 15)[0] == 8
    assert plan_bwd(8, 1025, 15, global_sync=False)[0] == 16


@pytest.mark.parametrize("elem", [4, 8])
@pytest.mark.parametrize("elig", [False, True])
def test_perf_model_mirrors_the_rules_with_global_sync(elig, elem):
    for N in list(range(1, 40, 3)) + list(range(100, 1100, 37)):
        for B in (1, 3, 8, 27, 109):
            want = plan(B, N, elig, elem)
            got = pml.plan_forward_cluster(B, N, elem, A100_SMS, A100, 16, elig, False,
                                           global_sync=True)  # fmt: skip
            assert (got.blocks_per_sample, got.where, got.smem_bytes) == want, (N, B)
            want_b = plan_bwd(B, N, 4, elig, elem)
            got_b = pml.plan_backward_cluster(B, N, 4, elem, A100_SMS, A100, 16, elig,
                                              cluster_threads=256, global_sync=True)  # fmt: skip
            assert (got_b.blocks_per_sample, got_b.where, got_b.smem_bytes,
                    got_b.scratch) == want_b, (N, B)  # fmt: skip
