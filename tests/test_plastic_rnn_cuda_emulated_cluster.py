"""The cluster forward of plastic_rnn (issue 13 item 2, first part), run through the CUDA
emulation: c thread blocks per sample, each a slice of the sample's columns, exchanging h_t
through distributed shared memory (plastic_rnn_block.h, ``forward_cluster_sample``).

``_plastic_rnn_emulated_fwd_cluster`` runs the launch's own grid and clusters on the CPU: the c
blocks of a cluster as c host threads meeting at a barrier, each with its own NaN-poisoned shared
memory that the others reach through ``map`` (simt.h, ``EmuCluster``). The tests force c (and the
shared-memory budget, which picks the placement of a block's working set) so that every layout
runs: every forward output against the CPU kernels (float64, to rounding), a training step (the
cluster forward, then today's one-block backward on its checkpoints) against the CPU kernels and
end to end against the eager reference (float64 and float32), populations (per-sample w, alpha,
eta), odd N with c not dividing N and N < c (blocks without columns), the same bits in reverse
execution order and run after run, and the launch rule at its boundaries, against its mirror in
benchmarks/perf_model_launch.py.
"""

from __future__ import annotations

import pytest
import torch
from helpers import (
    MODULATED_RULES,
    RULES,
    fused_args,
    make_inputs,
    rel_err,
)
from population_helpers import make_population, oracle, run_pop
from test_plastic_rnn_cuda_emulated import (
    BIG,
    BWD_NAMES,
    FWD_NAMES,
    _Emulated,
    assert_close_outputs,
    assert_run_matches_reference,
    backward_args,
    detached,
    emulated_bwd,
)
from test_plastic_rnn_population_cuda_emulated import canonical, raw_bwd_args, raw_fwd_args

import hebbkern
from benchmarks import perf_model_launch as pml
from hebbkern.ops.plastic_rnn import checkpoint_interval

ops = torch.ops.hebbkern
SM90 = 227 * 1024  # opt-in shared memory per block on an H200/H100
WHERE = {"params": pml.WHERE_PARAMS, "state": pml.WHERE_STATE, "global": pml.WHERE_RUNTIME}


def cluster_fwd(args, threads, smem, c, reverse=False, sm_count=132, cluster_max=16):
    return ops._plastic_rnn_emulated_fwd_cluster(*args, threads, smem, reverse, c, sm_count,
                                                 cluster_max)  # fmt: skip


def budget_for(where, N, c, elig, row_alpha, threads, elem):
    """The smallest shared-memory budget whose cluster placement is ``where``."""
    if where == "params":
        return BIG
    p = pml.cluster_placement(N, elig, row_alpha, c, threads, BIG, elem)
    nc = pml.cluster_cols(N, c)
    params = (N * nc + (nc if row_alpha else N * nc)) * elem
    state = (2 if elig else 1) * N * nc * elem
    return p.smem_bytes - params if where == "state" else p.smem_bytes - params - state


# (alpha kind, fan-out, clamp, T, B, N, ckpt, c, where): odd N, c not dividing N, N < c (N = 1
# and 7 with c = 16: blocks that own no column), B = 1, 2 and 3, every placement of a block's
# working set.
SHAPES = [
    ("per_connection", True, True, 7, 3, 33, 3, 4, "params"),
    ("per_neuron", False, False, 5, 1, 7, 2, 16, "params"),
    ("scalar", True, False, 3, 1, 1, 1, 2, "params"),
    ("per_connection", False, True, 6, 3, 51, 2, 2, "state"),
    ("per_neuron", True, True, 4, 1, 51, 3, 4, "global"),
    ("scalar", False, True, 5, 3, 33, 2, 16, "state"),
    ("per_connection", True, True, 4, 2, 64, 2, 8, "params"),  # c dividing N
]
CASES = [(rule, *s) for rule in RULES for s in SHAPES]
# One larger size with c = 16 (a 17-column slice of N = 257 in shared memory), two rules.
CASES += [(rule, "per_connection", True, False, 3, 1, 257, 2, 16, "params") for rule in
          ("hebb", "retro")]  # fmt: skip
# N = 1025 and 1100 over 16 blocks (64 to 69 columns), the state in shared memory or streamed.
CASES += [("hebb", "per_connection", True, False, 2, 1, 1100, 1, 16, "global"),
          ("neuromod", "per_neuron", True, True, 3, 1, 1025, 2, 16, "state")]  # fmt: skip


def case_id(case):
    rule, ak, fan, clamp, T, B, N, ckpt, c, where = case
    return f"{rule}-{ak}-fan{int(fan)}-clamp{int(clamp)}-T{T}B{B}N{N}K{ckpt}-c{c}-{where}"


def check_training_step(args, bargs_of, c, smem, threads=128):
    """The cluster forward against the CPU kernels' forward (float64), then today's one-block
    backward (emulated) on the cluster forward's outputs and checkpoints against the CPU kernels'
    backward on theirs."""
    want = ops.plastic_rnn_fwd(*args)
    got = cluster_fwd(args, threads, smem, c)
    assert_close_outputs(got, want, FWD_NAMES, 1e-12)
    want_b = ops.plastic_rnn_bwd(*bargs_of(want))
    got_b = emulated_bwd(bargs_of(got), threads, BIG)
    assert_close_outputs(got_b, want_b, BWD_NAMES, 1e-11)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cluster_forward_and_training_step_match_cpu_kernels(case):
    rule, ak, fan, clamp, T, B, N, ckpt, c, where = case
    fan = fan and rule in MODULATED_RULES
    kw = detached(make_inputs(rule, ak, fan, clamp, T=T, B=B, N=N, seed=N + T + c))
    args = fused_args(kw, ckpt)
    threads = 128
    smem = budget_for(where, N, c, rule == "retro", ak != "per_connection", threads, 8)
    got = pml.cluster_placement(N, rule == "retro", ak != "per_connection", c, threads, smem, 8)
    assert got.where == WHERE[where]  # the budget selects the placement under test
    check_training_step(args, lambda out: backward_args(kw, out, ckpt), c, smem, threads)


POP_CASES = [
    # rule, alpha kind, T, B, N, ckpt, c, where
    ("neuromod", "per_sample_connection", 6, 3, 33, 2, 4, "params"),
    ("retro", "per_sample_neuron", 5, 2, 7, 2, 16, "state"),
    ("hebb", "per_sample_scalar", 4, 1, 51, 3, 2, "global"),
    ("oja", "per_sample_connection", 5, 3, 33, 2, 16, "params"),
    ("clip", "shared", 4, 2, 33, 3, 4, "state"),
]


def population_inputs(rule, kind, T, B, N, ckpt):
    """A population's inputs in float64 (per-sample w too), canonical, and the forward op's
    arguments."""
    kw = make_population(rule, kind, rule in MODULATED_RULES, True, T=T, B=B, N=N,
                         dtype=torch.float64, seed=N + T, per_sample_w=True)  # fmt: skip
    a = canonical(detached(kw))
    return a, raw_fwd_args(a, rule, ckpt)


@pytest.mark.parametrize("case", POP_CASES, ids=lambda c: "-".join(map(str, c)))
def test_cluster_forward_population_matches_cpu_kernels(case):
    """Per-sample w, alpha and eta (a population): forward and training step, float64."""
    rule, kind, T, B, N, ckpt, c, where = case
    a, args = population_inputs(rule, kind, T, B, N, ckpt)
    row_alpha = kind != "per_sample_connection"  # the others: one alpha row per sample
    smem = budget_for(where, N, c, rule == "retro", row_alpha, 128, 8)
    check_training_step(args, lambda out: raw_bwd_args(a, rule, ckpt, out), c, smem)


class _ClusterEmulated(_Emulated):
    """plastic_rnn as a training step on the GPU would run it: the cluster forward (emulated),
    then today's one-block backward (``_Emulated.backward``)."""

    @staticmethod
    def forward(ctx, geometry, smem, rule, clip, ckpt, clamp, *tensors):
        # geometry: (threads, c) or (threads, c, device): device = (sm_count, cluster_max,
        # global_sync), an H200's with thread-block clusters by default.
        threads, c, *device = geometry
        ctx.emu_device = tuple(device[0]) if device else (132, 16, False)
        u, w, alpha, h0, hebb0, elig0, eta, mod_w, mod_b, fan_w, fan_b = tensors
        out = ops._plastic_rnn_emulated_fwd_cluster(
            u, w, alpha, h0, hebb0, elig0, clamp, eta, mod_w, mod_b, fan_w, fan_b, rule, clip,
            ckpt, threads, smem, False, c, *ctx.emu_device,
        )  # fmt: skip
        ctx.save_for_backward(u, w, alpha, h0, out[0], out[3], out[4], out[5], eta, mod_w, mod_b,
                              fan_w, fan_b)  # fmt: skip
        ctx.cfg = (threads, smem, rule, clip, ckpt, clamp)
        return out[0], out[1], out[2]


def run_cluster(kw, c, smem, threads=128):
    a = canonical(kw)
    tensors = [a.u, a.w, a.alpha, a.h0, a.hebb0, a.elig0, a.eta, a.mod_w, a.mod_b, a.fanout_w,
               a.fanout_b]  # fmt: skip
    ckpt = checkpoint_interval(a.u.shape[0])
    h, hebb, elig = _ClusterEmulated.apply((threads, c), smem, a.rule, a.clip, ckpt,
                                           a.clamp_mask, *tensors)  # fmt: skip
    return h, hebbkern.PlasticState(h[-1], hebb, elig if a.rule == "retro" else None)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize(
    "rule, alpha_kind, c",
    [("hebb", "per_connection", 4), ("oja", "scalar", 16), ("clip", "per_neuron", 2),
     ("neuromod", "per_connection", 16), ("retro", "per_neuron", 4)],
)  # fmt: skip
def test_cluster_training_step_against_reference(rule, alpha_kind, c, dtype, tol):
    """End to end: outputs and the gradient of every input against the eager reference."""
    kw = make_inputs(rule, alpha_kind, rule in MODULATED_RULES, True, T=9, B=3, N=29, seed=5)
    assert_run_matches_reference(kw, dtype, tol, lambda k: run_cluster(k, c, BIG))


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_cluster_population_against_oracle(dtype, tol):
    """Per-sample w, alpha, eta end to end against the reference run once per sample."""
    assert_population_matches_oracle(dtype, tol, lambda k: run_cluster(k, 4, BIG))


def assert_population_matches_oracle(dtype, tol, run):
    """``run(inputs)`` (with autograd) on a neuromod population in ``dtype``: outputs and every
    gradient against the float64 reference run once per sample."""
    kw = make_population("neuromod", "per_sample_connection", True, True, T=7, B=2, N=21, seed=3)
    cast = {k: (v.detach().to(dtype).requires_grad_() if isinstance(v, torch.Tensor)
                and v.is_floating_point() else v) for k, v in kw.items()}  # fmt: skip
    o, g = run_pop(cast, lambda **k: run(k))
    exact = {k: (v.detach().requires_grad_() if isinstance(v, torch.Tensor)
                 and v.is_floating_point() else v) for k, v in kw.items()}  # fmt: skip
    oe, ge = run_pop(exact, lambda **k: oracle(k))
    for k in oe:
        assert rel_err(o[k], oe[k]) <= tol, k
    for k in ge:
        assert g[k] is not None and rel_err(g[k], ge[k]) <= tol, f"d{k}"


@pytest.mark.parametrize("where", list(WHERE))
@pytest.mark.parametrize("rule", ["neuromod", "retro", "hebb"])
def test_cluster_no_races_same_bits(rule, where):
    """Reverse execution order within each block, and a second run (the cluster's blocks are
    host threads, scheduled differently each time): the same bits."""
    kw = detached(make_inputs(rule, "per_connection", rule in MODULATED_RULES, True, T=8, B=2,
                              N=37, dtype=torch.float32, seed=11))  # fmt: skip
    args = fused_args(kw, 3)
    smem = budget_for(where, 37, 4, rule == "retro", False, 128, 4)
    runs = [cluster_fwd(args, 128, smem, 4), cluster_fwd(args, 128, smem, 4, reverse=True),
            cluster_fwd(args, 128, smem, 4)]  # fmt: skip
    for other in runs[1:]:
        for name, a, b in zip(FWD_NAMES, runs[0], other, strict=True):
            assert torch.equal(a, b), f"forward {name} depends on the execution order"


def test_cluster_of_one_is_the_one_block_forward():
    """c = 1 (forced, or chosen without clusters) runs today's one-block forward: the same bits."""
    kw = detached(make_inputs("neuromod", "per_connection", True, True, T=5, B=2, N=20, seed=2))
    args = fused_args(kw, 2)
    base = ops._plastic_rnn_emulated_fwd(*args, 128, BIG, False)
    for got in (cluster_fwd(args, 128, BIG, 1), cluster_fwd(args, 128, BIG, 0, cluster_max=1)):
        for name, a, b in zip(FWD_NAMES, base, got, strict=True):
            assert torch.equal(a, b), name


def test_cluster_chosen_by_the_rule_runs_the_cluster():
    """cluster = 0: the launch rule's c (here 4: B = 1 on 132 SMs, N = 40) gives the forced c's
    bits."""
    kw = detached(make_inputs("retro", "per_neuron", True, True, T=4, B=1, N=40, seed=4))
    args = fused_args(kw, 2)
    assert plan(1, 40, elig=True, row_alpha=True, elem=8)[0] == 4
    auto, forced = cluster_fwd(args, 128, SM90, 0), cluster_fwd(args, 128, SM90, 4)
    for name, a, b in zip(FWD_NAMES, auto, forced, strict=True):
        assert torch.equal(a, b), name


def test_cluster_refuses_what_does_not_fit():
    kw = detached(make_inputs("hebb", T=2, B=1, N=40))
    args = fused_args(kw, 1)
    with pytest.raises(ValueError, match="does not fit the shared-memory budget"):
        cluster_fwd(args, 128, 100, 4)
    with pytest.raises(ValueError, match="cluster must be in"):
        cluster_fwd(args, 128, BIG, 17)


# ---------------------------------------------------------------------------------------------
# The launch rule (plan_cluster) at its boundaries, and its mirror in the performance model


def plan(B, N, elig=False, row_alpha=False, elem=4, budget=SM90, sm_count=132, cluster_max=16,
         threads=512):  # fmt: skip
    """[c, where, smem bytes] from the C++ rule the launch uses."""
    return tuple(ops._plastic_rnn_cluster_plan(B, N, elig, row_alpha, threads, budget, elem,
                                               sm_count, cluster_max))  # fmt: skip


@pytest.mark.parametrize(
    "B, c", [(1, 16), (8, 16), (9, 8), (16, 8), (17, 4), (33, 4), (34, 2), (66, 2), (67, 1)]
)
def test_rule_spreads_small_batches(B, c):
    """N = 128, float32, H200: B x c never exceeds the 132 SMs when spreading."""
    assert plan(B, 128)[:2] == (c, pml.WHERE_PARAMS)


# float32, per-connection alpha, a batch that fills the GPU: (N, elig) -> (c, where) at the
# boundaries where the smallest cluster that keeps everything (then the state) on chip grows.
BOUNDARIES = {
    (137, False): (1, 2), (138, False): (2, 2), (194, False): (2, 2), (195, False): (4, 2),
    (274, False): (4, 2), (275, False): (8, 2), (384, False): (8, 2), (385, False): (16, 2),
    (544, False): (16, 2), (545, False): (8, 1), (665, False): (16, 1), (929, False): (16, 1),
    (930, False): (16, 0), (1025, False): (16, 0),
    (119, True): (1, 2), (120, True): (2, 2), (662, True): (16, 1), (663, True): (16, 0),
}  # fmt: skip


@pytest.mark.parametrize("key", list(BOUNDARIES), ids=lambda k: f"N{k[0]}-elig{int(k[1])}")
def test_rule_boundaries(key):
    N, elig = key
    assert plan(10_000, N, elig)[:2] == BOUNDARIES[key]


def test_rule_without_clusters_keeps_one_block():
    """sm_80 (cluster_max 1): c = 1 at any size, even where the state leaves shared memory."""
    for N in (1, 128, 300, 1025):
        assert plan(1, N, cluster_max=1)[0] == 1
    assert plan(1, 1025, cluster_max=1)[1] == pml.WHERE_RUNTIME


def test_rule_portable_clusters_and_small_n():
    assert plan(1, 128, cluster_max=8)[0] == 8  # no non-portable 16 on this device
    # Every block keeps at least 8 columns: 2c * 8 <= N.
    assert [plan(1, N)[0] for N in (1, 15, 16, 31, 32, 63, 64, 127, 128)] == [1, 1, 2, 2, 4, 4, 8,
                                                                             8, 16]  # fmt: skip


@pytest.mark.parametrize("elem", [4, 8])
@pytest.mark.parametrize("row_alpha", [False, True])
@pytest.mark.parametrize("elig", [False, True])
def test_perf_model_mirrors_the_rule(elig, row_alpha, elem):
    """plan_forward_cluster decides as plan_cluster does, bytes included."""
    for N in list(range(1, 40)) + list(range(100, 1100, 7)):
        for B, sms, cmax, budget in ((1, 132, 16, SM90), (40, 132, 8, SM90), (5000, 108, 1, 163 * 1024),
                                     (3, 132, 16, 48 * 1024)):  # fmt: skip
            want = plan(B, N, elig, row_alpha, elem, budget, sms, cmax)
            got = pml.plan_forward_cluster(B, N, elem, sms, budget, cmax, elig, row_alpha)
            assert (got.blocks_per_sample, got.where, got.smem_bytes) == want, (N, B, cmax)
