"""The GPU performance model (benchmarks/perf_model.py, issue 13 item 5) and the launch rule
(benchmarks/perf_model_launch.py, item 2).

The SASS reading is tested on a short excerpt in cuobjdump's layout (tests/data/
perf_model_excerpt.sass): a forward kernel whose step loop holds a loop over a vector and an
unrolled loop over the trace, followed by an out-of-line shuffle block that branches back into
the body; a backward kernel whose chunk loop holds a recomputation loop (one barrier) and the
step loop (two). The compile-and-read test runs where nvcc and cuobjdump exist.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import perf_model as pm  # noqa: E402
from benchmarks import perf_model_sass as sass  # noqa: E402
from benchmarks.perf_model_launch import plan_launch, slice_bytes  # noqa: E402

EXCERPT = (Path(__file__).parent / "data" / "perf_model_excerpt.sass").read_text()
SMEM = 227 * 1024  # H200 opt-in shared memory per block


@pytest.fixture(scope="module")
def kernels():
    fns = sass.split_functions(EXCERPT)
    fwd, bwd = (next(t for n, t in fns.items() if f"_{k}_kernel" in n) for k in ("fwd", "bwd"))
    return sass.parse_instructions(fwd), sass.parse_instructions(bwd)


def test_split_functions_names_both_kernels():
    names = list(sass.split_functions(EXCERPT))
    assert len(names) == 2
    assert "plastic_rnn_fwd_kernelILNS_4RuleE3Ef" in names[0]
    assert "plastic_rnn_bwd_kernelILNS_4RuleE3Ef" in names[1]


def test_parse_instructions_reads_address_predicate_opcode(kernels):
    fwd, bwd = kernels
    assert len(fwd) == 30 and len(bwd) == 15
    i = next(i for i in fwd if i.addr == 0x120)
    assert (i.pred, i.op, i.args, i.base) == ("@!P2", "BRA", "0x80", "BRA")
    i = next(i for i in fwd if i.addr == 0x90)
    assert (i.pred, i.op, i.args) == ("", "LDG.E", "R11, desc[UR4][R8.64+0x4]")


@pytest.mark.parametrize(
    "op, cls",
    [
        ("FFMA", "fp32"),
        ("FSETP.GT.AND", "fp32"),
        ("DFMA", "fp64"),
        ("IMAD.WIDE.U32", "int"),
        ("LDG.E", "ldg"),
        ("STG.E", "stg"),
        ("LD.E", "ld_generic"),
        ("ST.E", "st_generic"),
        ("LDS.U", "lds"),
        ("STS", "sts"),
        ("BAR.SYNC.DEFER_BLOCKING", "bar"),
        ("SHFL.BFLY", "shfl"),
        ("MUFU.TANH", "mufu"),
        ("BRA", "branch"),
        ("HMMA.16816", "other"),
    ],
)
def test_op_class(op, cls):
    assert sass.op_class(op) == cls


def test_find_loops_skips_the_out_of_line_tail(kernels):
    fwd, bwd = kernels
    # 0x1c0 -> 0x150 jumps back from past the EXIT (a shuffle fallback), 0x1d0 to itself: no loops.
    assert sass.main_body_end(fwd) == 0x190
    assert sass.find_loops(fwd) == [(0x30, 0x180), (0x40, 0x70), (0x80, 0x120)]
    assert sass.find_loops(bwd) == [(0x10, 0xC0), (0x20, 0x50), (0x60, 0xB0), (0x70, 0x80)]


def test_step_loop_is_the_innermost_with_two_barriers(kernels):
    fwd, bwd = kernels
    assert sass.step_loop(fwd, sass.find_loops(fwd)) == (0x30, 0x180)
    # The chunk loop (0x10-0xc0, three barriers) holds the step loop: the step loop is chosen.
    assert sass.step_loop(bwd, sass.find_loops(bwd)) == (0x60, 0xB0)
    no_bar = [i for i in fwd if i.base != "BAR"]
    with pytest.raises(ValueError, match="barriers"):
        sass.step_loop(no_bar, sass.find_loops(no_bar))


def test_hot_loop_unroll_and_counts(kernels):
    fwd, _ = kernels
    loops = sass.find_loops(fwd)
    hot = sass.hot_loop(fwd, (0x30, 0x180), loops)
    assert hot == (0x80, 0x120)  # four LDG; the vector loop at 0x40 has none
    b = sass.body(fwd, hot)
    assert sass.unroll_factor(b) == 2  # [R8], [R8+0x4]
    assert sass.class_counts(b) == {
        "ldg": 4,
        "ld_generic": 1,
        "fp32": 2,
        "st_generic": 1,
        "int": 2,
        "branch": 1,
    }
    assert sass.barriers(sass.body(fwd, (0x30, 0x180))) == 2
    assert sass.unroll_factor(sass.body(fwd, (0x40, 0x70))) == 1


def test_analyse_step_code(kernels):
    fwd, bwd = kernels
    code = pm.analyse(sass.split_functions(EXCERPT)[next(iter(sass.split_functions(EXCERPT)))])
    assert (code.step_len, code.barriers, code.hot_len, code.hot_unroll) == (22, 2, 11, 2)
    assert code.straight == 22 - 4 - 11  # the vector loop (4) and the hot loop (11) aside
    assert code.parent_rest == 0 and code.vector_loops == 4 and code.recompute_len == 0
    bwd_text = list(sass.split_functions(EXCERPT).values())[1]
    code = pm.analyse(bwd_text)
    assert (code.step_len, code.barriers, code.hot_len, code.recompute_len) == (6, 2, 2, 4)


# A cluster backward's loops, in cuobjdump's layout: (label, instruction); "{label}" in an
# instruction is that line's address.
CLUSTER_BWD = [
    ("", "LDC R1, c[0x0][0x28]"),
    ("chunk", "S2R R0, SR_TID.X"),
    ("rec", "IMAD R3, R0, 0x4, RZ"),  # recomputation: over the block's elements ...
    ("rec_t", "LDG.E R4, desc[UR4][R2.64]"),  # ... and the chunk's steps, two per iteration
    ("", "LD.E R5, desc[UR4][R6.64]"),
    ("", "FFMA R7, R4, R5, R7"),
    ("", "STS [R3], R7"),
    ("", "LD.E R5, desc[UR4][R8.64]"),
    ("", "FFMA R7, R4, R5, R7"),
    ("", "STS [R3+0x200], R7"),
    ("", "@P0 BRA {rec_t}"),
    ("", "@P1 BRA {rec}"),
    ("", "BAR.SYNC.DEFER_BLOCKING 0x0"),
    ("fold0", "LDS R9, [R10]"),  # the last step's fold: more loads than the recomputation
    ("", "LDS R11, [R10+0x4]"),
    ("", "LDS R12, [R10+0x8]"),
    ("", "STS [R10], RZ"),
    ("", "STS [R10+0x4], RZ"),
    ("", "STS [R10+0x8], RZ"),
    ("", "@P2 BRA {fold0}"),
    ("", "MEMBAR.ALL.GPU"),
    ("", "UCGABAR_ARV"),
    ("", "UCGABAR_WAIT"),
    ("", "BAR.SYNC.DEFER_BLOCKING 0x0"),
    ("step", "LDS R12, [R13]"),  # column phase
    ("", "STS [R13], R12"),
    ("", "BAR.SYNC.DEFER_BLOCKING 0x0"),
    ("row0", "MOV R20, RZ"),  # row pass, unfused: rows ...
    ("col0", "LDG.E R21, desc[UR4][R22.64]"),  # ... and the block's columns
    ("", "LDS R23, [R24]"),
    ("", "FFMA R20, R21, R23, R20"),
    ("", "@P3 BRA {col0}"),
    ("", "SHFL.BFLY PT, R25, R20, 0x1, 0x1f"),
    ("", "@P4 BRA {row0}"),
    ("row1", "MOV R20, RZ"),  # row pass, fused
    ("col1", "LDG.E R21, desc[UR4][R22.64]"),
    ("", "LDG.E R26, desc[UR4][R27.64]"),
    ("", "IADD3.X R28, R29, R30, RZ, P5, !PT"),
    ("", "LDS R23, [R24]"),
    ("", "FFMA R20, R21, R23, R20"),
    ("", "FFMA R31, R26, R23, R31"),
    ("", "STS [R24], R31"),
    ("", "@P3 BRA {col1}"),
    ("", "SHFL.BFLY PT, R25, R20, 0x1, 0x1f"),
    ("", "@P4 BRA {row1}"),
    ("", "BAR.SYNC.DEFER_BLOCKING 0x0"),  # before mod_parts
    ("", "MEMBAR.ALL.GPU"),
    ("", "UCGABAR_ARV"),
    ("", "UCGABAR_WAIT"),
    ("", "BAR.SYNC.DEFER_BLOCKING 0x0"),
    ("fold", "LDS R9, [R10]"),  # the step's fold: the step's most loads
    ("", "LDS R11, [R10+0x4]"),
    ("", "LDS R12, [R10+0x8]"),
    ("", "LDS R14, [R10+0xc]"),
    ("", "STS [R10], RZ"),
    ("", "STS [R10+0x4], RZ"),
    ("", "@P2 BRA {fold}"),
    ("", "@P5 BRA {step}"),
    ("", "@P6 BRA {chunk}"),
    ("", "EXIT"),
    ("", "SHFL.BFLY PT, R25, R20, 0x1, 0x1f"),  # a shuffle's out-of-line fallback
    ("", "BRA {col1}"),
]
CLUSTER_BWD_NAME = (
    "_ZN8hebbkern12cuda_kernels30plastic_rnn_bwd_cluster_kernelILNS_4RuleE3EfLi2EEEvv"
)


def _listing(lines, name=CLUSTER_BWD_NAME) -> str:
    addr = {lab: f"{16 * k:#x}" for k, (lab, _) in enumerate(lines) if lab}
    body = "".join(
        f"        /*{16 * k:04x}*/                   {ins.format(**addr)} ;\n"
        for k, (_, ins) in enumerate(lines)
    )
    return f"\t\tFunction : {name}\n{body}"


def test_cluster_backward_loops_on_an_excerpt():
    listing = _listing(CLUSTER_BWD) + EXCERPT  # the excerpt: the one-block backward of neuromod
    text = pm.cluster_bwd_kernel_text(listing, "neuromod", 2)
    assert "UCGABAR_WAIT" in text and pm.kernel_text(listing, "bwd", "neuromod") != text
    with pytest.raises(KeyError):
        pm.cluster_bwd_kernel_text(listing, "neuromod", 1)
    at = {lab: 16 * k for k, (lab, _) in enumerate(CLUSTER_BWD) if lab}
    c = pm.cluster_bwd_step_counts(text)
    # The step loop: the innermost with a cluster wait (the chunk loop holds two).
    assert c["step"] == (at["step"], at["fold"] + 0x70)
    assert (c["bar"], c["cluster_wait"], c["membar"], c["local"]) == (3, 1, 1, 0)
    assert c["chunk"] == (at["chunk"], at["fold"] + 0x80)
    assert (c["chunk_bar"], c["chunk_cluster_wait"]) == (5, 2)
    # The row pass: the loops under a shuffling row loop, not the fold (more loads, no rows).
    assert c["hot"] == (at["col1"], at["col1"] + 0x70) and c["hot_candidates"] == [8, 4]
    assert (c["hot_len"], c["hot_unroll"], c["per_element"], c["addr64"]) == (8, 1, 8.0, 1)
    assert c["classes"] == {"ldg": 2, "int": 1, "lds": 1, "fp32": 2, "sts": 1, "branch": 1}
    # The recomputation: before the chunk's first barrier (not the last step's fold after it);
    # two trace stores: two steps per iteration, one with an eligibility trace.
    assert c["rec"] == (at["rec_t"], at["rec_t"] + 0x70)
    assert (c["rec_len"], c["rec_steps"], c["rec_per_element"]) == (8, 2, 4.0)
    assert pm.cluster_bwd_step_counts(text, elig=True)["rec_per_element"] == 8.0
    # Without the row loops' shuffles, or without the cluster wait, nothing is reported.
    no_shfl = [(lab, i) for lab, i in CLUSTER_BWD if not i.startswith("SHFL")]
    with pytest.raises(ValueError, match="row pass"):
        pm.cluster_bwd_step_counts(_listing(no_shfl))
    no_wait = [(lab, i) for lab, i in CLUSTER_BWD if i != "UCGABAR_WAIT"]
    with pytest.raises(ValueError, match="cluster wait"):
        pm.cluster_bwd_step_counts(_listing(no_wait))


def test_warp_instructions_follow_the_work_split():
    code = pm.StepCode(
        step_len=0,
        barriers=2,
        straight=10,
        hot_len=20,
        hot_unroll=4,
        hot_classes={},
        hot_ops={},
        parent_rest=6,
        vector_loops=8,
    )
    # Forward, N=128: 4 row groups of 32 rows, 512 items = 16 warps, 8 hot iterations each.
    assert pm.warp_instructions(code, "fwd", 128) == 10 * 16 + 8 * 4 + 16 * (8 * 20 + 6)
    # Backward, N=128: each of 128 rows takes ceil(128 / (32 * 4)) = 1 iteration.
    code.recompute_len, code.recompute_unroll = 5, 1
    assert pm.warp_instructions(code, "bwd", 128) == (
        10 * 16 + 8 * 4 + 128 * (20 + 6) + math.ceil(128 * 128 / 512) * 16 * 5
    )
    assert pm.warp_instructions(code, "fwd", 256) > pm.warp_instructions(code, "fwd", 128)


def test_fit_rate_and_barrier_recovers_known_values():
    clk = 1980.0
    ipc, bar = 2.5, 0.04
    w = (10_000.0, 40_000.0)
    t = tuple(x / (ipc * clk) + 5 * bar for x in w)
    got = pm.fit_rate_and_barrier(w, t, 5, clk)
    assert got == pytest.approx((ipc, bar))
    # Time growing faster than the instructions: no negative barrier, one rate through both.
    ipc2, bar2 = pm.fit_rate_and_barrier(w, (1.0, 10.0), 5, clk)
    assert bar2 == 0.0 and 1 / (ipc2 * clk) * 40_000 == pytest.approx(10.0, rel=0.1)


# ---------------------------------------------------------------------------------------------
# The launch rule at its boundaries (float32, H200: 132 SMs, 227 KiB, clusters of up to 16)


def plan(B, N, cluster_max=16, elig=False):
    return plan_launch(B, N, 4, 132, SMEM, cluster_max, elig)


def test_one_block_holds_everything_up_to_n_130():
    # (3 N^2 + 56 N) * 4 bytes: trace, w, alpha and the backward's vectors.
    assert slice_bytes(130, 1, 4, False, True) <= SMEM < slice_bytes(131, 1, 4, False, True)
    p = plan(132, 130)  # a full batch: no reason to spread
    assert (p.blocks_per_sample, p.trace_in, p.w_alpha_in, p.waves) == (1, "smem", "smem", 1)
    p = plan(132, 131)
    assert (p.blocks_per_sample, p.trace_in, p.w_alpha_in) == (2, "smem", "smem")
    assert p.waves == 2  # 264 blocks on 132 SMs


@pytest.mark.parametrize(
    "N, c", [(178, 2), (179, 4), (243, 4), (244, 8), (324, 8), (325, 16), (424, 16)]
)
def test_cluster_size_where_the_slice_stops_fitting(N, c):
    p = plan(1000, N)  # a batch that fills the GPU: the smallest cluster that fits
    assert (p.blocks_per_sample, p.trace_in, p.w_alpha_in) == (c, "smem", "smem")
    assert p.smem_bytes <= SMEM


def test_w_and_alpha_leave_before_the_trace():
    p = plan(8, 425)  # no cluster of 16 holds w, alpha and the trace: w and alpha to L2
    assert (p.blocks_per_sample, p.w_alpha_in, p.trace_in) == (16, "l2", "smem")
    p = plan(8, 611)
    assert (p.w_alpha_in, p.trace_in) == ("l2", "smem")
    p = plan(8, 612)  # not even the trace alone: it streams from L2
    assert (p.blocks_per_sample, p.w_alpha_in, p.trace_in) == (16, "l2", "l2")
    assert plan(8, 1025).trace_in == "l2"


def test_eligibility_trace_needs_bigger_clusters():
    assert plan(1000, 128, elig=True).blocks_per_sample == 2
    assert plan(1000, 128).blocks_per_sample == 1


@pytest.mark.parametrize(
    "B, c",
    [(1, 16), (8, 16), (9, 8), (16, 8), (17, 4), (33, 4), (34, 2), (66, 2), (67, 1), (256, 1)],
)
def test_small_batches_spread_over_the_gpu(B, c):
    p = plan(B, 128)
    assert p.blocks_per_sample == c
    assert B * c <= 132 or c == 1  # never more blocks than SMs when spreading


def test_without_clusters_the_split_synchronises_through_global_memory():
    p = plan(1, 128, cluster_max=1)
    assert p.blocks_per_sample == 16 and p.grid_sync
    assert not plan(1, 128).grid_sync
    assert not plan(256, 128, cluster_max=1).grid_sync  # one block per sample


def test_small_traces_share_an_sm():
    p = plan(1024, 32)
    assert (p.blocks_per_sample, p.threads) == (1, 128)
    assert p.blocks_per_sm * p.threads <= 2048 and p.blocks_per_sm * p.smem_bytes <= SMEM
    assert p.waves == math.ceil(1024 / (132 * p.blocks_per_sm))


@pytest.mark.parametrize(
    "args, match",
    [
        ((0, 128, 4, 132, SMEM, 16), "B and N"),
        ((1, 128, 3, 132, SMEM, 16), "dtype_bytes"),
        ((1, 128, 4, 0, SMEM, 16), "sm_count"),
    ],
)
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        plan_launch(*args)


# ---------------------------------------------------------------------------------------------
# The real kernels (nvcc and cuobjdump needed)


def _tools():
    sys.path.insert(0, str(ROOT / "tests"))
    from cuda_checks import find_nvcc

    return find_nvcc() and pm.find_cuobjdump()


@pytest.fixture(scope="module")
def listing():
    """cuobjdump -sass of plastic_rnn.cu for sm_90, compiled once for the tests below."""
    if not _tools():
        pytest.skip("nvcc or cuobjdump not found")
    return pm.compile_sass("sm_90")


def test_model_on_the_compiled_kernels(listing):
    codes = pm.load_codes(listing)
    # The cluster forward (NOTES.md M9): one block barrier and one cluster barrier per step (whose
    # cooperative_groups form adds a BAR after the wait), in every placement.
    for rule in ("neuromod", "hebb"):
        for where in (0, 1, 2):
            c = pm.cluster_step_counts(pm.cluster_kernel_text(listing, rule, where))
            assert (c["bar"], c["cluster_wait"]) == (2, 1), (rule, where, c)
    assert "Cluster forward" in pm.cluster_report(listing)
    for rule in ("neuromod", "hebb"):
        for kernel in ("fwd", "fwd_state", "fwd_global", "bwd", "bwd_state"):
            c = codes[rule][kernel]
            assert c.barriers >= 2
            assert (c.recompute_len > 0) == kernel.startswith("bwd")
            # The forward's kWhere 2 instantiation reads w and alpha from shared memory (LDS): no
            # global load is left in its pass over the trace; the others read them with LDG.
            if kernel == "fwd":
                assert c.params_in_smem and c.hot_classes.get("ldg", 0) == 0
                assert c.hot_classes.get("lds", 0) >= 4 * c.hot_unroll
            else:  # the backward's kParams pass still reads scratch and d alpha with LDG
                assert c.params_in_smem == (kernel == "bwd") and c.hot_classes.get("ldg", 0) >= 2
        # The trace: LDS/STS where the state's place is known at compile time, generic LD/ST not.
        assert codes[rule]["fwd_state"].hot_classes.get("sts", 0) >= 1
        assert codes[rule]["fwd_global"].hot_classes.get("st_generic", 0) >= 1
    # The SASS count is within 40% of what Nsight Compute saw executed (the count takes every
    # straight-line instruction of the step, taken branches or not).
    for k in ("fwd", "bwd"):
        w = pm.warp_instructions(codes["neuromod"][k], k, 128)
        assert 0.9 < w / pm.ncu_instructions_per_step(k) < 1.4
    # The calibration fits the measured build's code (its saved SASS), not the code compiled now.
    measured = {**codes, **pm.load_measured_codes()}
    cal = pm.calibrate(measured)
    for key in pm.CALIBRATION_CASES[:2] + pm.CALIBRATION_CASES[4:]:
        got, _ = pm.call_ms(measured, *key[:4], cal, key[4])
        assert got == pytest.approx(pm.MEASURED[key], rel=0.02)
    text = pm.report(codes, measured_codes=pm.load_measured_codes())
    assert "PREDICTIONS" in text and "hebb 8 1025 201" in text and "this code" in text


def test_cluster_backward_on_the_compiled_kernels(listing):
    """The cluster backward (plastic_rnn_cluster_backward.h, backward_cluster_sample): six
    instantiations (neuromod, hebb x kWhere 2, 1, 0), their step, row-pass and recomputation
    loops."""
    counts = {}
    for rule in ("neuromod", "hebb"):
        for where in (2, 1, 0):
            text = pm.cluster_bwd_kernel_text(listing, rule, where)
            c = counts[rule, where] = pm.cluster_bwd_step_counts(text)
            ins = sass.parse_instructions(text)
            why = (rule, where, c)
            # The loop holding the cluster wait is also the one the forward's rule picks.
            assert c["step"] == sass.step_loop(ins, sass.find_loops(ins)), why
            # One cluster barrier per step (a fence, a wait); block barriers: the column phase's,
            # the one cooperative_groups puts after the cluster wait, and for a modulated rule the
            # one before mod_parts.
            assert (c["cluster_wait"], c["membar"]) == (1, 1), why
            assert c["bar"] == (3 if rule == "neuromod" else 2), why
            # The chunk loop adds the recomputation's barrier and the chunk's last step (its own
            # cluster barrier with its BAR; for a modulated rule the barrier before mod_parts).
            assert c["chunk_cluster_wait"] == 2, why
            assert c["chunk_bar"] == c["bar"] + (3 if rule == "neuromod" else 2), why
            assert c["local"] == 0, why  # no LDL/STL: nothing spilled in the step loop
            # cluster_row_pass's four variants (fused or not x row-alpha or per connection); the
            # fused ones (with step t-1's trace-update adjoint) are clearly longer, the hottest
            # is one of them.
            cand = c["hot_candidates"]
            assert len(cand) == 4 and cand[0] == c["per_element"] > 0, why
            assert cand[1] > 1.2 * cand[2], why
            # w and alpha are in global memory in every placement.
            assert c["classes"].get("ldg", 0) >= 2, why
            # The recomputation: no barrier; its traces go to shared memory at kWhere 2 and to
            # the global scratch otherwise; one store per element and step (no eligibility).
            rc = c["rec_classes"]
            assert rc.get("bar", 0) == 0 and c["rec_per_element"] > 0, why
            if where == 2:
                assert rc.get("sts", 0) == c["rec_steps"] and rc.get("stg", 0) == 0, why
            else:
                assert rc.get("stg", 0) == c["rec_steps"] and rc.get("sts", 0) == 0, why
    for rule in ("neuromod", "hebb"):
        # From kWhere 2 to 1 to 0 the traces, then the adjoint state, leave shared memory: the
        # row pass's global loads grow, its shared-memory loads shrink.
        ldg = [counts[rule, w]["classes"].get("ldg", 0) for w in (2, 1, 0)]
        lds = [counts[rule, w]["classes"].get("lds", 0) for w in (2, 1, 0)]
        assert ldg[0] < ldg[1] < ldg[2] and lds[0] > lds[1] > lds[2], (rule, ldg, lds)
        assert lds[0] >= 4  # kWhere 2: the two traces, the adjoint, da from shared memory
    for where in (2, 1, 0):  # the modulation adds work per element
        assert counts["neuromod", where]["per_element"] > counts["hebb", where]["per_element"]
    text = pm.cluster_bwd_report(listing)
    assert text.startswith("Cluster backward") and len(text.splitlines()) == 7
    assert "hottest of 4 variants" in text


def test_step_profile_adds_up_to_the_count(kernels):
    code = pm.analyse(list(sass.split_functions(EXCERPT).values())[1])
    for n in (64, 128, 1025):
        prof = pm.step_profile(code, "bwd", n)
        assert sum(prof.values()) == pytest.approx(pm.warp_instructions(code, "bwd", n))
        assert prof["ldg"] == code.hot_classes["ldg"] * pm.executions(code, "bwd", n)["hot"] + (
            code.recompute_classes["ldg"] * pm.executions(code, "bwd", n)["recompute"]
        )


def test_bytes_per_step_follow_the_placement():
    n2 = 128 * 128 * 4
    assert pm.bytes_per_step("fwd", 128, False, True) == {"smem": 2 * n2, "global": 2 * n2}
    # Off chip the trace's read and write join w and alpha in global memory.
    assert pm.bytes_per_step("fwd", 128, False, False) == {"smem": 0.0, "global": 4 * n2}
    # Backward: adjoint in shared memory; two recomputed traces, d alpha, w, alpha, the
    # recomputation's read and write in global memory.
    assert pm.bytes_per_step("bwd", 128, False, True) == {"smem": 2 * n2, "global": 8 * n2}
    assert pm.bytes_per_step("bwd", 128, True, True)["smem"] == 4 * n2
    # The forward's kWhere 2 instantiation: w and alpha read from shared memory, nothing global.
    assert pm.bytes_per_step("fwd", 128, False, True, True) == {"smem": 4 * n2, "global": 0.0}
    # The backward's kParams instantiation: w and alpha move from global to shared memory.
    assert pm.bytes_per_step("bwd", 128, False, True, True) == {"smem": 4 * n2, "global": 6 * n2}


def test_code_for_picks_the_forward_instantiation_by_placement():
    codes = {r: {k: pm.StepCode(1, 2, 0, 1, 1, {}, {}, 0, 0) for k in pm.FWD_WHERE} for r in
             ("neuromod", "retro")}  # fmt: skip
    for r in codes:
        for k in pm.BWD_PARAMS:
            codes[r][k] = pm.StepCode(1, 2, 0, 1, 1, {}, {}, 0, 0)
    nm, rt = codes["neuromod"], codes["retro"]
    # neuromod, float32, sm_90: w/alpha fit up to N = 137, the state up to 238.
    assert pm.code_for(codes, "neuromod", "fwd", 137) is nm["fwd"]
    assert pm.code_for(codes, "neuromod", "fwd", 138) is nm["fwd_state"]
    assert pm.code_for(codes, "neuromod", "fwd", 238) is nm["fwd_state"]
    assert pm.code_for(codes, "neuromod", "fwd", 239) is nm["fwd_global"]
    assert pm.code_for(codes, "retro", "fwd", 119) is rt["fwd"]  # eligibility trace: 119
    assert pm.code_for(codes, "retro", "fwd", 120) is rt["fwd_state"]
    # The backward (shared parameters): w/alpha next to its vectors and adjoint up to N = 130.
    assert pm.code_for(codes, "neuromod", "bwd", 130) is nm["bwd"]
    assert pm.code_for(codes, "neuromod", "bwd", 131) is nm["bwd_state"]
    # A listing with one forward (the measured build's) serves every N.
    one = {"neuromod": {"fwd": nm["fwd"], "bwd": nm["bwd"]}}
    assert pm.code_for(one, "neuromod", "fwd", 1025) is nm["fwd"]


def test_on_chip_limits_match_the_build_test():
    sys.path.insert(0, str(ROOT / "tests"))
    from test_cuda_build import ON_CHIP

    for (arch, elig, backward), n in ON_CHIP.items():
        if arch == "sm_90":
            k = "bwd" if backward else "fwd"
            assert pm.on_chip_today(n, elig, k) and not pm.on_chip_today(n + 1, elig, k)


def test_working_set_decides_l2_or_dram():
    l2 = 0.8 * pm.H200.l2_bytes
    assert pm.working_set("bwd", 32, 128, 50, False) < l2  # K = 8 traces of 64 KiB per sample
    assert pm.working_set("bwd", 64, 256, 100, False) > l2
    assert pm.working_set("fwd", 8, 1025, 201, False) < l2  # 8 traces + w, alpha: 42 MB
    assert pm.working_set("bwd", 8, 1025, 201, False) > l2
