"""Performance model of plastic_rnn's CUDA kernels on an H200 (issue 13 item 5), from their
machine code: ``python -m benchmarks.perf_model [--sass FILE]``.

1. Compiles csrc/cuda/plastic_rnn.cu for sm_90 (nvcc with the flags of tests/cuda_checks.py) and
   reads the SASS (``cuobjdump -sass``); for the forward and backward kernel of a rule it finds the
   step loop and its hot inner loop (benchmarks/perf_model_sass.py) and counts instructions by
   class.
2. Turns the static counts into warp-instructions per step for a given N (the trip counts of the
   loops follow from the block's work split, plastic_rnn_block.h), and bytes per step by memory
   level from the arrays the step touches.
3. Microseconds per step = max(issue, shared memory, L2, DRAM) + barriers: within a phase the
   warps overlap issue with memory, so the slowest resource bounds it; a block-wide barrier
   drains the block, so barriers add. Calibrated on the 2026-12-04 H200 run (NOTES.md C4, the
   Nsight Compute file), then checked against every measured case of that run.
4. Predicts issue 13's five target cases for today's kernel and for the planned layout of the
   launch rule (benchmarks/perf_model_launch.py): predictions, for the next GPU run to test.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import perf_model_sass as sass
from benchmarks.perf_model_launch import plan_launch

ROOT = Path(__file__).resolve().parents[1]
THREADS, WARPS = 512, 16  # today's block (one per sample)
RULE_IDS = {"hebb": 0, "oja": 1, "clip": 2, "neuromod": 3, "retro": 4}  # plastic_rules.h order
ELIG = {"retro"}  # rules with an eligibility trace (of those modelled here)


# ----------------------------------------------------------------------------------------------
# Hardware (H200, sm_90)


@dataclass(frozen=True)
class Hardware:
    sm_count: int = 132
    clock_ghz: float = 1.98  # SM frequency Nsight Compute reported in the 2026-12-04 run
    issue_per_clk: int = 4  # warp-instructions per clock per SM: 4 sub-partitions x 1
    smem_bytes_per_clk: int = 128  # per SM
    smem_per_sm: int = 227 * 1024  # opt-in shared memory per block
    cluster_max: int = 16  # non-portable cluster size on sm_90
    hbm_gbs: float = 4165.0  # copy bandwidth measured by the runner in the 2026-12-04 run
    l2_over_hbm: float = 2.5  # ASSUMED: L2 bandwidth as a multiple of HBM (to be measured)
    l2_bytes: float = 60e6  # usable L2 (the issue's figure; 50 MB per partition pair aside)
    cluster_sync_us: float = 0.2  # ASSUMED: cluster barrier + DSMEM exchange of a vector
    # ASSUMED: L2-hit latency / DRAM latency. One block's bandwidth is latency-bound (Little's
    # law: bytes in flight / latency), so from DRAM it is this fraction of its L2 bandwidth.
    l2_over_dram_latency: float = 0.5

    @property
    def l2_gbs(self) -> float:
        return self.l2_over_hbm * self.hbm_gbs


H200 = Hardware()


# ----------------------------------------------------------------------------------------------
# Compiling and reading the SASS


def find_cuobjdump() -> str | None:
    cand = [shutil.which("cuobjdump"), "/usr/local/cuda/bin/cuobjdump"]
    try:
        import triton

        cand.append(str(Path(triton.__file__).parent / "backends/nvidia/bin/cuobjdump"))
    except ImportError:
        pass
    return next((c for c in cand if c and os.path.isfile(c)), None)


def compile_sass(arch: str = "sm_90") -> str:
    """cuobjdump -sass of plastic_rnn.cu compiled as tests/cuda_checks.py compiles it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from cuda_checks import NVCC_FLAGS, find_nvcc

    nvcc, cuobjdump = find_nvcc(), find_cuobjdump()
    if nvcc is None or cuobjdump is None:
        raise FileNotFoundError("nvcc or cuobjdump not found")
    with tempfile.TemporaryDirectory() as d:
        cubin = Path(d) / "plastic_rnn.cubin"
        cmd = [
            nvcc,
            *NVCC_FLAGS,
            f"-arch={arch}",
            "-cubin",
            f"-I{ROOT / 'csrc' / 'include'}",
            f"-I{ROOT / 'csrc'}",
            "-o",
            str(cubin),
            str(ROOT / "csrc/cuda/plastic_rnn.cu"),
        ]
        subprocess.run(cmd, check=True, capture_output=True, timeout=900)
        out = subprocess.run(
            [cuobjdump, "-sass", str(cubin)],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
    return out.stdout


# The forward's instantiations by placement (plastic_rnn_block.h, kPlace*): template argument
# kWhere 2 keeps the state and w/alpha in shared memory (the issue case's placement), 1 the state
# only, 0 chooses at run time (the state in global memory).
FWD_WHERE = {"fwd": 2, "fwd_state": 1, "fwd_global": 0}
# The backward's shared-parameter instantiations (kPop = false): kParams 1 keeps w and alpha in
# shared memory next to the adjoint (the issue case's placement), 0 reads them from global memory.
BWD_PARAMS = {"bwd": 1, "bwd_state": 0}


def kernel_text(listing: str, kernel: str, rule: str, dtype: str = "float32") -> str:
    """The SASS of plastic_rnn_{kernel}_kernel<rule, dtype> in a listing: where a kernel has
    several instantiations, the forward's by placement (`kernel` "fwd", "fwd_state",
    "fwd_global": FWD_WHERE) and the backward's shared-parameter ones (kPop = false; "bwd",
    "bwd_state": BWD_PARAMS). A listing of a build with one instantiation of each (the measured
    d5033dc) gives it for "fwd" and "bwd"."""
    if kernel in FWD_WHERE:
        name, flag = "fwd", f"Li{FWD_WHERE[kernel]}E"
    else:
        name, flag = "bwd", f"Lb0E(?:Lb{BWD_PARAMS[kernel]}E)?"
    return _kernel_function(
        listing, name, rule, dtype, f"(?:{flag})?", f"{kernel}_kernel<{rule}, {dtype}>"
    )


def _kernel_function(listing: str, name: str, rule: str, dtype: str, flags: str, what: str) -> str:
    """The SASS of the function plastic_rnn_{name}_kernel<rule, dtype, flags...> of a listing
    (`flags`: a regular expression of the mangled template arguments after the dtype)."""
    want = re.compile(
        rf"plastic_rnn_{name}_kernelILNS_4RuleE{RULE_IDS[rule]}E"
        rf"{'f' if dtype == 'float32' else 'd'}{flags}E"
    )
    for fn, text in sass.split_functions(listing).items():
        if want.search(fn):
            return text
    raise KeyError(f"plastic_rnn_{what} not in the listing")


@dataclass
class StepCode:
    """What one kernel's step loop holds (static instruction counts)."""

    step_len: int  # instructions of the step loop
    barriers: int  # block-wide barriers (BAR) in it
    straight: int  # of those, outside every inner loop
    hot_len: int  # the hot loop's body
    hot_unroll: int  # elements per hot-loop iteration
    hot_classes: dict
    hot_ops: dict  # opcode (without modifiers) -> count, in the hot loop
    parent_rest: int  # the hot loop's enclosing loop, less the hot loop (per row / item)
    vector_loops: int  # other inner loops of the step: over a vector of N (or W, G) elements
    recompute_len: int = 0  # backward: the chunk's trace recomputation (one per step)
    recompute_unroll: int = 1
    recompute_classes: dict = field(default_factory=dict)
    params_in_smem: bool = False  # w and alpha read from shared memory (fwd kWhere 2, bwd kParams)


def loads(instrs, kinds=("ldg",)) -> int:
    """Loads of a loop body of the given classes: what tells the hot pass's split-off copies
    (they read the same arrays per element) from the loops over vectors (a few loads per item).
    Global loads (w and alpha) where the hot pass has them; with w and alpha in shared memory
    (the forward's kWhere 2) it has none, and loads from any memory tell instead."""
    c = sass.class_counts(instrs)
    return sum(c[k] for k in kinds)


def analyse(text: str, params_in_smem: bool = False) -> StepCode:
    """params_in_smem: the forward's kWhere 2 instantiation (w and alpha read from shared
    memory), whose pass over the trace has no global load to be recognised by."""
    ins = sass.parse_instructions(text)
    loops = sass.find_loops(ins)
    step = sass.step_loop(ins, loops)
    hot = sass.hot_loop(ins, step, loops, params_in_smem)
    hot_body = sass.body(ins, hot)
    inner = sass.inner_loops(step, loops)
    top = [lp for lp in inner if not any(lp in sass.inner_loops(o, loops) for o in inner)]
    parent = next((lp for lp in top if lp[0] <= hot[0] and hot[1] <= lp[1]), hot)
    kinds = ("ldg",) if loads(hot_body) else ("ldg", "lds", "ld_generic")
    loads_hot = loads(hot_body, kinds)

    def is_variant(lp) -> bool:  # another compile-time variant of the hot loop's pass
        return lp != parent and any(
            loads(sass.body(ins, x), kinds) * 2 >= loads_hot
            for x in [lp, *sass.inner_loops(lp, loops)]
        )

    in_loops = {i.addr for lp in top for i in sass.body(ins, lp)}
    step_body = sass.body(ins, step)
    rec_len, rec_unroll, rec_classes = 0, 1, {}
    enclosing = [lp for lp in loops if lp != step and lp[0] <= step[0] and step[1] <= lp[1]]
    if enclosing:  # backward: the recomputation loop holds exactly one barrier
        outer = min(enclosing, key=lambda lp: lp[1] - lp[0])
        rec = [
            lp
            for lp in sass.inner_loops(outer, loops)
            if sass.barriers(sass.body(ins, lp)) == 1 and not (step[0] <= lp[0] <= step[1])
        ]
        if rec:
            leaf = sass.hot_loop(ins, rec[0], loops) if sass.inner_loops(rec[0], loops) else rec[0]
            rec_len = len(sass.body(ins, leaf))
            rec_unroll = sass.unroll_factor(sass.body(ins, leaf))
            rec_classes = dict(sass.class_counts(sass.body(ins, leaf)))
    return StepCode(
        step_len=len(step_body),
        barriers=sass.barriers(step_body),
        straight=sum(i.addr not in in_loops for i in step_body),
        hot_len=len(hot_body),
        hot_unroll=sass.unroll_factor(hot_body),
        hot_classes=dict(sass.class_counts(hot_body)),
        hot_ops=dict(Counter(i.base for i in hot_body)),
        # The enclosing loop's own code, less the other variants of the hot pass the compiler
        # split off inside it (the first step's, without a pending update: not run per step).
        parent_rest=len(sass.body(ins, parent))
        - len(hot_body)
        - sum(
            len(sass.body(ins, lp))
            for lp in sass.inner_loops(parent, loops)
            if lp != hot
            and not sass.inner_loops(lp, loops)
            and loads(sass.body(ins, lp), kinds) * 2 >= loads_hot
        ),
        vector_loops=sum(
            len(sass.body(ins, lp)) for lp in top if lp != parent and not is_variant(lp)
        ),
        recompute_len=rec_len,
        recompute_unroll=rec_unroll,
        recompute_classes=rec_classes,
        params_in_smem=params_in_smem,
    )


# ----------------------------------------------------------------------------------------------
# Work per step of today's kernel (one block of 512 threads per sample)


def fwd_groups(N: int, threads: int = THREADS) -> int:
    return max(1, min(threads // N, N))  # plastic_rnn_block.h


def executions(code: StepCode, kernel: str, N: int) -> dict[str, float]:
    """Per step, warp-level executions of: the hot loop's body ('hot'), its enclosing loop's rest
    ('parent'), the recomputation loop's body ('recompute'); and 'fixed', the warp-instructions
    of the rest of the step (straight-line code in every warp, vector loops in the warps that
    cover N)."""
    vec_warps = min(WARPS, math.ceil(N / 32))
    out = {"fixed": code.straight * WARPS + code.vector_loops * vec_warps, "recompute": 0.0}
    if kernel == "fwd":  # thread (g, j) walks the rows of group g in column j
        G = fwd_groups(N)
        items = G * N
        passes = math.ceil(items / THREADS)  # items per thread
        warps = min(WARPS, math.ceil(items / 32))
        iters = math.ceil(math.ceil(N / G) / code.hot_unroll)
        out["hot"], out["parent"] = passes * warps * iters, passes * warps
    else:  # warp w walks rows w, w + 16, ...; the lanes stride along the row
        out["hot"], out["parent"] = N * math.ceil(N / (32 * code.hot_unroll)), N
        out["recompute"] = math.ceil(N * N / (THREADS * code.recompute_unroll)) * WARPS
    return out


def warp_instructions(code: StepCode, kernel: str, N: int) -> float:
    """Warp-instructions one block issues per step at width N."""
    x = executions(code, kernel, N)
    return (
        x["fixed"]
        + x["hot"] * code.hot_len
        + x["parent"] * code.parent_rest
        + x["recompute"] * code.recompute_len
    )


def step_profile(code: StepCode, kernel: str, N: int) -> dict[str, float]:
    """Warp-instructions per step by class: the hot and recomputation loops' by their classes,
    the rest of the step as 'rest of the step'."""
    x = executions(code, kernel, N)
    prof: dict[str, float] = {}
    for loop, n in ((code.hot_classes, x["hot"]), (code.recompute_classes, x["recompute"])):
        for cls, k in loop.items():
            prof[cls] = prof.get(cls, 0.0) + k * n
    prof["rest of the step"] = x["fixed"] + x["parent"] * code.parent_rest
    return prof


def bytes_per_step(
    kernel: str, N: int, elig: bool, state_on_chip: bool, params_on_chip: bool = False
) -> dict[str, float]:
    """Bytes one sample moves per step (float32), by where they live, from the arrays the step
    touches (plastic_rnn_block.h): 'smem' the on-chip state (and, in the forward's kWhere 2
    instantiation, w and alpha, loaded once per call), 'global' everything else."""
    e, n2 = 4, N * N
    k = 2 if elig else 1
    wa = 2 * n2 * e  # w and alpha read every step
    if kernel == "fwd":
        state = 2 * k * n2 * e  # trace (and eligibility) read and written
        other = 0.0 if params_on_chip else wa
    else:
        state = 2 * k * n2 * e  # their adjoints read and written
        # Two recomputed traces read (steps t, t-1), d alpha read and written (per connection),
        # the recomputation's read and write: all global (scratch, outputs); w and alpha too
        # unless the kParams instantiation keeps them in shared memory.
        other = (2 * k + 2 + 2 * k) * n2 * e + (0.0 if params_on_chip else wa)
    return {
        "smem": (state if state_on_chip else 0.0) + (wa if params_on_chip else 0.0),
        "global": other + (0.0 if state_on_chip else state),
    }


def working_set(kernel: str, B: int, N: int, T: int, elig: bool) -> float:
    """Bytes a pass keeps re-reading from global memory over the call (float32): w and alpha,
    the state where it is off chip, and in the backward each sample's K recomputed traces and
    its d alpha (K = ceil(sqrt(T)), hebbkern/ops/plastic_rnn.py)."""
    n2, k = N * N * 4, 2 if elig else 1
    per_sample = 0 if on_chip_today(N, elig, kernel) else k * n2
    if kernel == "bwd":
        per_sample += math.ceil(math.sqrt(T)) * k * n2 + n2
    return 2 * n2 + B * per_sample


def fwd_placement(
    N: int, elig: bool, full_alpha: bool = True, hw: Hardware = H200, elem: int = 4
) -> str:
    """Where the forward keeps its working set, as place() in plastic_rnn_block.h decides at 512
    threads (tests/test_plastic_rnn_cuda_emulated_onchip.py checks the two agree): "params"
    (the state, w and alpha in shared memory: the kWhere 2 instantiation), "state" (the state
    only: 1) or "global" (0)."""
    n2 = N * N
    vec = 4 * N + fwd_groups(N) * N + 32  # fwd_vec_elems (kMaxWarps = 32)
    state = (2 if elig else 1) * n2
    params = n2 + (n2 if full_alpha else N)
    if (vec + state) * elem > hw.smem_per_sm:
        return "global"
    return "params" if (vec + state + params) * elem <= hw.smem_per_sm else "state"


def bwd_params_on_chip(
    N: int, elig: bool, full_alpha: bool = True, hw: Hardware = H200, elem: int = 4
) -> bool:
    """Does the backward (shared parameters) keep w and alpha in shared memory next to its
    vectors and adjoint state? place() in plastic_rnn_block.h at 512 threads (16 warps)."""
    n2 = N * N
    vec = 8 * N + 3 * WARPS * N + WARPS + 32  # bwd_vec_elems
    need = vec + (2 if elig else 1) * n2 + n2 + (n2 if full_alpha else N)
    return need * elem <= hw.smem_per_sm


def code_for(codes: dict, rule: str, kernel: str, N: int) -> StepCode:
    """The instantiation the launch runs at width N (per-connection alpha, shared parameters):
    by fwd_placement / bwd_params_on_chip where the listing has them, else the one kernel of
    the measured build."""
    if kernel == "bwd":
        key = "bwd" if bwd_params_on_chip(N, rule in ELIG) else "bwd_state"
        return codes[rule].get(key, codes[rule]["bwd"])
    if kernel != "fwd":
        return codes[rule][kernel]
    key = {"params": "fwd", "state": "fwd_state", "global": "fwd_global"}[
        fwd_placement(N, rule in ELIG)
    ]
    return codes[rule].get(key, codes[rule]["fwd"])


def on_chip_today(N: int, elig: bool, kernel: str) -> bool:
    """Does today's placement keep the state in shared memory (sm_90, float32)? The limits of
    tests/test_cuda_build.py's ON_CHIP table."""
    limit = {(False, "fwd"): 238, (False, "bwd"): 214, (True, "fwd"): 168, (True, "bwd"): 156}
    return N <= limit[(elig, kernel)]


# ----------------------------------------------------------------------------------------------
# The model and its calibration


@dataclass
class Calibration:
    ipc_fwd: float  # counted warp-instructions per clock per SM the forward achieves
    ipc_bwd: float
    barrier_fwd_us: float  # per block-wide barrier on the step's path
    barrier_bwd_us: float
    sm_global_gbs: float  # bandwidth one 16-warp block draws from L2/DRAM (latency-bound)
    launch_us: float = 10.0  # per call: two launches and the allocations (ASSUMED)

    def ipc(self, kernel: str) -> float:
        return self.ipc_fwd if kernel == "fwd" else self.ipc_bwd

    def barrier_us(self, kernel: str) -> float:
        return self.barrier_fwd_us if kernel == "fwd" else self.barrier_bwd_us


# Nsight Compute on the issue case (neuromod B=32 N=128 T=50, ncu_plastic_rnn_issue_case_h200_
# 2026-12-04.txt): executed IPC while active, and SM active cycles averaged over the 132 SMs of
# which 32 worked. Their product over T is the executed warp-instructions per step of one block:
# the check of the SASS count (`ncu_instructions_per_step`).
NCU = {
    "fwd": {"ipc": 2.38, "sm_active_cycles": 136_531.89},
    "bwd": {"ipc": 1.53, "sm_active_cycles": 805_164.11},
}
NCU_CASE = {"B": 32, "N": 128, "T": 50}
NCU_KERNEL_MS = {"fwd": 0.288, "bwd": 1.73}  # the kernels' durations in that file


def ncu_instructions_per_step(kernel: str) -> float:
    n = NCU[kernel]
    blocks = NCU_CASE["B"]
    return n["ipc"] * n["sm_active_cycles"] * H200.sm_count / blocks / NCU_CASE["T"]


def step_us(
    code: StepCode,
    kernel: str,
    N: int,
    elig: bool,
    cal: Calibration,
    hw: Hardware = H200,
    B: int = 1,
    T: int = 100,
) -> tuple[float, str]:
    """(microseconds, bound) of one step of today's kernel."""
    clk = hw.clock_ghz * 1e3  # clocks per microsecond
    by = bytes_per_step(kernel, N, elig, on_chip_today(N, elig, kernel), code.params_in_smem)
    active = min(B, hw.sm_count)
    gbs = min(cal.sm_global_gbs, hw.l2_gbs / active)
    where = "global (L2)"
    if working_set(kernel, B, N, T, elig) > 0.8 * hw.l2_bytes:  # streamed from DRAM
        gbs = min(cal.sm_global_gbs * hw.l2_over_dram_latency, hw.hbm_gbs / active)
        where = "global (DRAM)"
    terms = {
        "issue": warp_instructions(code, kernel, N) / (cal.ipc(kernel) * clk),
        "smem": by["smem"] / (hw.smem_bytes_per_clk * clk),
        where: by["global"] / (gbs * 1e3),
    }
    bound = max(terms, key=terms.get)
    return terms[bound] + code.barriers * cal.barrier_us(kernel), bound


def call_ms(
    codes: dict,
    rule: str,
    B: int,
    N: int,
    T: int,
    cal: Calibration,
    mode: str = "fwd+bwd",
    hw: Hardware = H200,
) -> tuple[float, str]:
    """Milliseconds of one call of today's kernel (one block per sample, waves of 132)."""
    elig = rule in ELIG
    waves = math.ceil(B / hw.sm_count)
    total, bounds = 0.0, []
    for kernel in ("fwd", "bwd") if mode == "fwd+bwd" else ("fwd",):
        us, bound = step_us(code_for(codes, rule, kernel, N), kernel, N, elig, cal, hw, B, T)
        total += us * T * waves
        bounds.append(f"{kernel} {bound}")
    launches = 2 if mode == "fwd+bwd" else 1
    return total / 1e3 + launches * cal.launch_us / 2e3, ", ".join(bounds)


# Measured on the H200, 2026-12-04: the cases of the runner's JSON (read from it), and three the
# run's README states (timed in the same run, outside the 60 s budget of the JSON's sweep).
RESULTS = ROOT / "benchmarks" / "results"
FROM_JSON = [("neuromod", B, N, 100, mode) for B, N, mode in (
    (1, 64, "fwd"), (1, 64, "fwd+bwd"), (1, 128, "fwd"), (1, 128, "fwd+bwd"), (64, 128, "fwd"),
    (64, 128, "fwd+bwd"), (256, 128, "fwd"), (1, 256, "fwd"), (1, 256, "fwd+bwd"),
    (64, 256, "fwd+bwd"))]  # fmt: skip
FROM_README = {  # h200_2026-12-04_README.md, the table of forward+backward timings
    ("neuromod", 256, 128, 100, "fwd+bwd"): 9.91,
    ("neuromod", 32, 128, 50, "fwd+bwd"): 2.77,
    ("hebb", 8, 1025, 201, "fwd+bwd"): 828.0,
}


def load_measured(path: Path = RESULTS / "plastic_rnn_cuda_h200_2026-12-04.json") -> dict:
    """(rule, B, N, T, mode) -> median ms of the `cuda` provider, float32."""
    import json

    rows = json.loads(path.read_text())["rows"]
    got = {
        (r["rule"], r["B"], r["N"], r["T"], r["mode"]): r["median_ms"]
        for r in rows
        if r.get("provider") == "cuda" and r.get("dtype") == "float32" and r.get("median_ms")
    }
    return {**{k: got[k] for k in FROM_JSON}, **FROM_README}


MEASURED = load_measured()
# The five measurements the calibration uses (the rest are checks): B=1 at N=64 and N=128 give
# each pass's issue rate and barrier cost, N=256 (trace in global memory) one block's bandwidth.
CALIBRATION_CASES = (
    ("neuromod", 1, 64, 100, "fwd"),
    ("neuromod", 1, 128, 100, "fwd"),
    ("neuromod", 1, 64, 100, "fwd+bwd"),
    ("neuromod", 1, 128, 100, "fwd+bwd"),
    ("neuromod", 1, 256, 100, "fwd"),
)


def fit_rate_and_barrier(w: tuple[float, float], t: tuple[float, float], bars: int, clk: float):
    """Solves t = w / (ipc * clk) + bars * b for (ipc, b) from two (w, t) points; b >= 0."""
    a = (t[1] - t[0]) / (w[1] - w[0])
    b = (t[0] - a * w[0]) / bars if bars else 0.0
    if b < 0:  # no barrier cost visible: one rate through both points (least squares)
        a, b = (w[0] * t[0] + w[1] * t[1]) / (w[0] ** 2 + w[1] ** 2), 0.0
    return 1.0 / (a * clk), b


def calibrate(codes: dict, hw: Hardware = H200) -> Calibration:
    launch = Calibration.launch_us
    clk = hw.clock_ghz * 1e3

    def per_step(key, minus=None):  # us per step of one pass, the launches taken off
        ms = MEASURED[key] - (MEASURED[minus] if minus else 0.0)
        return (ms * 1e3 - launch / 2) / key[3]

    fwd, bwd = codes["neuromod"]["fwd"], codes["neuromod"]["bwd"]
    c = CALIBRATION_CASES
    ipc_f, bar_f = fit_rate_and_barrier(
        (warp_instructions(fwd, "fwd", 64), warp_instructions(fwd, "fwd", 128)),
        (per_step(c[0]), per_step(c[1])),
        fwd.barriers,
        clk,
    )
    ipc_b, bar_b = fit_rate_and_barrier(
        (warp_instructions(bwd, "bwd", 64), warp_instructions(bwd, "bwd", 128)),
        (per_step(c[2], c[0]), per_step(c[3], c[1])),
        bwd.barriers,
        clk,
    )
    glob = bytes_per_step("fwd", 256, False, False)["global"]
    gbs = glob / 1e3 / (per_step(c[4]) - fwd.barriers * bar_f)
    return Calibration(ipc_f, ipc_b, bar_f, bar_b, gbs, launch)


# ----------------------------------------------------------------------------------------------
# The planned layout (launch rule): w and alpha on chip, a sample over a cluster


def planned_instr_per_element(code: StepCode) -> float:
    """Instructions per trace element once the address arithmetic is gone (32-bit shared
    memory offsets, one increment per element): today's hot loop's floating-point, load and
    store instructions per element, plus one."""
    c = code.hot_classes
    useful = sum(
        c.get(k, 0)
        for k in ("fp32", "fp64", "mufu", "ld_generic", "st_generic", "ldg", "stg", "lds", "sts")
    )
    return useful / code.hot_unroll + 1


def planned_bytes(kernel: str, B: int, N: int, T: int, elig: bool, plan) -> dict[str, float]:
    """Bytes per step of the planned layout: 'chip' per sample (shared memory, split over its c
    blocks), 'offchip' over the whole batch (L2, or DRAM when 'working_set' exceeds it)."""
    n2, k = N * N * 4, 2 if elig else 1
    on_chip_state = plan.trace_in == "smem"
    w_a = 2 * n2  # w and alpha read once per step
    chip, off, ws = 0.0, 0.0, w_a
    if kernel == "fwd":
        state = 2 * k * n2  # trace (and eligibility) read and written
        chip += state if on_chip_state else 0.0
        off += 0.0 if on_chip_state else B * state
        ws += 0.0 if on_chip_state else B * k * n2
    else:
        state = 2 * k * n2 + 2 * n2  # adjoints and this sample's d alpha, read and written
        chip += state if on_chip_state else 0.0
        off += 0.0 if on_chip_state else B * state
        ws += 0.0 if on_chip_state else B * (k + 1) * n2
        # The chunk's K recomputed traces do not fit on chip next to the state: they go through
        # L2 (written once, read at steps t and t-1).
        off += B * 3 * k * n2
        ws += B * math.ceil(math.sqrt(T)) * k * n2
    if plan.w_alpha_in == "smem":
        chip += w_a
    else:
        off += B * w_a
    return {"chip": chip, "offchip": off, "working_set": ws}


def planned_step_us(
    codes: dict,
    rule: str,
    kernel: str,
    B: int,
    N: int,
    T: int,
    cal: Calibration,
    hw: Hardware = H200,
) -> tuple[float, str]:
    elig = rule in ELIG
    plan = plan_launch(B, N, 4, hw.sm_count, hw.smem_per_sm, hw.cluster_max, elig)
    c = plan.blocks_per_sample
    per_sm = min(plan.blocks_per_sm, math.ceil(B * c / hw.sm_count))  # blocks sharing an SM
    code = codes[rule][kernel]
    clk = hw.clock_ghz * 1e3
    wave = min(B, hw.sm_count * per_sm // c)  # samples running at once
    by = planned_bytes(kernel, wave, N, T, elig, plan)
    # No global scratch inside the step: the backward issues at the forward's rate; with the
    # address arithmetic gone, the rate measured in counted instructions applies to the rest.
    warp_instr = math.ceil(N / c) * N * planned_instr_per_element(code) / 32
    in_l2 = by["working_set"] <= 0.8 * hw.l2_bytes
    terms = {
        "issue": warp_instr * per_sm / (cal.ipc_fwd * clk),
        "smem": by["chip"] / c * per_sm / (hw.smem_bytes_per_clk * clk),
        "L2" if in_l2 else "DRAM": by["offchip"] / ((hw.l2_gbs if in_l2 else hw.hbm_gbs) * 1e3),
    }
    bound = max(terms, key=terms.get)
    bars = 2 if kernel == "fwd" else 3  # issue 13 item 1: at most two on the forward's path
    sync = (1 if kernel == "fwd" else 2) * hw.cluster_sync_us if c > 1 else 0.0
    waits = bars * cal.barrier_fwd_us + sync
    # Barriers and cluster syncs add to the bound term; name them when they outweigh it.
    return terms[bound] + waits, ("sync" if waits > terms[bound] else bound)


def planned_call_ms(
    codes: dict, rule: str, B: int, N: int, T: int, cal: Calibration, hw: Hardware = H200
) -> tuple[float, str]:
    plan = plan_launch(B, N, 4, hw.sm_count, hw.smem_per_sm, hw.cluster_max, rule in ELIG)
    total, bounds = 0.0, []
    for kernel in ("fwd", "bwd"):
        us, bound = planned_step_us(codes, rule, kernel, B, N, T, cal, hw)
        total += us * T * plan.waves
        bounds.append(f"{kernel} {bound}")
    desc = (
        f"c={plan.blocks_per_sample}x{plan.threads}t, w/alpha {plan.w_alpha_in}, "
        f"trace {plan.trace_in}, {plan.waves} wave(s)"
    )
    return total / 1e3 + cal.launch_us / 1e3, ", ".join(bounds) + "; " + desc


# Issue 13's targets (float32, forward+backward): (rule, B, N, T) -> target ms (None: a ratio).
TARGETS = [
    (("neuromod", 32, 128, 50), 0.4),
    (("neuromod", 1, 128, 100), 0.4),
    (("neuromod", 256, 128, 100), 3.0),
    (("hebb", 8, 1025, 201), 10.0),
    (("neuromod", 1024, 32, 100), None),  # population: per-sample w/alpha/eta
]


def load_codes(listing: str, rules=("neuromod", "hebb")) -> dict:
    """rule -> kernel -> StepCode: "fwd" and "bwd", and where the listing has the forward's
    instantiations by placement, "fwd" is the one with w and alpha in shared memory and
    "fwd_state", "fwd_global" the others."""
    by_place = re.search(r"plastic_rnn_fwd_kernel\S*Li2E", listing) is not None
    kernels = ("fwd", "fwd_state", "fwd_global") if by_place else ("fwd",)
    bwd_par = re.search(r"plastic_rnn_bwd_kernel\S*Lb0ELb1E", listing) is not None
    kernels += ("bwd", "bwd_state") if bwd_par else ("bwd",)
    codes = {
        r: {k: analyse(kernel_text(listing, k, r), by_place and k == "fwd") for k in kernels}
        for r in rules
    }
    for r in rules:  # the backward's hot pass keeps its LDGs (scratch, d alpha): found by them
        codes[r]["bwd"].params_in_smem = bwd_par
    return codes


# The calibration reads the SASS of the code the 2026-12-04 run measured (commit d5033dc; its
# neuromod float32 kernels, cut from the cuobjdump listing), so that a change to the kernels shows
# as a change of the prediction instead of being fitted away: the measured times over the
# measured code's counts give the rates, applied to the counts of the code compiled now.
MEASURED_SASS = RESULTS / "plastic_rnn_sass_sm90_d5033dc_neuromod.txt"


def load_measured_codes(path: Path = MEASURED_SASS) -> dict | None:
    return load_codes(path.read_text(), ("neuromod",)) if path.exists() else None


def report(codes: dict, hw: Hardware = H200, measured_codes: dict | None = None) -> str:
    """measured_codes: the step-loop code of the measured build (calibration and its check);
    None: the code compiled now is taken as the measured one."""
    measured = codes if measured_codes is None else {**codes, **measured_codes}
    cal = calibrate(measured, hw)
    out = ["Step-loop code (sm_90, float32), static instructions:"]
    for rule, ks in codes.items():
        for k, c in ks.items():
            ops = ", ".join(f"{o} {n}" for o, n in sorted(c.hot_ops.items(), key=lambda x: -x[1]))
            out.append(
                f"  {rule:8} {k}: step loop {c.step_len} instrs, {c.barriers} BAR; hot loop "
                f"{c.hot_len} instrs per {c.hot_unroll} elements "
                f"({c.hot_len / c.hot_unroll:.1f} per element): {ops}; recompute loop "
                f"{c.recompute_len} per {c.recompute_unroll}"
            )
    for rule, N in (("neuromod", 128), ("hebb", 1025)):
        for k in ("fwd", "bwd"):
            code = code_for(codes, rule, k, N)
            prof = step_profile(code, k, N)
            by = bytes_per_step(
                k, N, rule in ELIG, on_chip_today(N, rule in ELIG, k), code.params_in_smem
            )
            out.append(
                f"  per step, {rule} {k} N={N} (one block): "
                f"{warp_instructions(code, k, N):,.0f} warp-instructions ("
                + ", ".join(f"{cls} {n:,.0f}" for cls, n in prof.items())
                + f"); {code.barriers} block-wide barriers; bytes {by['smem'] / 1e3:,.0f} kB "
                f"shared memory, {by['global'] / 1e3:,.0f}"
                " kB global (L2 or DRAM)"
            )
    if measured_codes is not None:
        out.append("The measured build's (d5033dc) neuromod step loops, the calibration's counts:")
        for k, c in measured_codes["neuromod"].items():
            out.append(
                f"  neuromod {k}: hot loop {c.hot_len / c.hot_unroll:.1f} per element, recompute"
                f" {c.recompute_len / c.recompute_unroll:.0f} per element; per step N=128 "
                f"{warp_instructions(c, k, 128):,.0f} warp-instructions"
            )
    out.append("Check of the measured build's count against Nsight Compute (issue case, N=128):")
    for k in ("fwd", "bwd"):
        w = warp_instructions(measured["neuromod"][k], k, NCU_CASE["N"])
        n = ncu_instructions_per_step(k)
        out.append(
            f"  neuromod {k}: {w:,.0f} warp-instructions per step counted from the SASS, "
            f"{n:,.0f} executed (ncu IPC x active cycles / T): {100 * (w - n) / n:+.0f}%"
        )
    out.append(
        f"Calibration (on {len(CALIBRATION_CASES)} measurements, marked below): counted "
        f"IPC fwd {cal.ipc_fwd:.2f}, bwd {cal.ipc_bwd:.2f} (ncu: executed 2.38, 1.53); "
        f"barrier fwd {cal.barrier_fwd_us:.3f} us, bwd {cal.barrier_bwd_us:.3f} us; one "
        f"block's global-memory bandwidth {cal.sm_global_gbs:.1f} GB/s"
    )
    out.append("")
    out.append(
        "the measured build's kernels: model vs measured (H200, 2026-12-04); 'this code': the "
        "kernels compiled now at the same rates (PREDICTION)"
    )
    out.append(
        f"{'case':34} {'measured ms':>11} {'model ms':>9} {'error':>7} {'this code':>9}  bound"
    )
    for key, ms in MEASURED.items():
        rule, B, N, T, mode = key
        pred, bound = call_ms(measured, rule, B, N, T, cal, mode, hw)
        now, _ = call_ms(codes, rule, B, N, T, cal, mode, hw)
        tag = " (calibration)" if key in CALIBRATION_CASES else ""
        out.append(
            f"{rule} {B} {N} {T} {mode:8}{'':{34 - len(f'{rule} {B} {N} {T} {mode:8}')}} "
            f"{ms:11.3f} {pred:9.3f} {100 * (pred - ms) / ms:+6.0f}% {now:9.3f}  {bound}{tag}"
        )
    out.append(
        "issue case, the kernels alone (Nsight Compute durations; the call's 2.77 ms also "
        "holds what runs outside them):"
    )
    for k, ms in NCU_KERNEL_MS.items():
        us, bound = step_us(measured["neuromod"][k], k, 128, False, cal, hw, 32, 50)
        now, _ = step_us(code_for(codes, "neuromod", k, 128), k, 128, False, cal, hw, 32, 50)
        pred = us * 50 / 1e3
        out.append(
            f"  {k} kernel: measured {ms:.3f} ms ({ms * 20:.1f} us per step), model {pred:.3f} ms "
            f"({us:.1f} us per step, {100 * (pred - ms) / ms:+.0f}%, {bound}); this code "
            f"{now * 50 / 1e3:.3f} ms ({now:.1f} us per step, PREDICTION)"
        )
    out.append("")
    out.append("issue 13 targets, forward+backward: PREDICTIONS (unmeasured)")
    out.append(f"{'case':26} {'target':>7} {'today ms':>9} {'planned ms':>10}  planned bound")
    for (rule, B, N, T), target in TARGETS:
        today, tb = call_ms(codes, rule, B, N, T, cal, "fwd+bwd", hw)
        plan, pb = planned_call_ms(codes, rule, B, N, T, cal, hw)
        tgt = f"{target:7.1f}" if target else "  ratio"
        out.append(
            f"{rule} {B} {N} {T}{'':{26 - len(f'{rule} {B} {N} {T}')}} {tgt} "
            f"{today:9.2f} {plan:10.3f}  {pb} (today: {tb})"
        )
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# The cluster forward (issue 13 item 2, first part; NOTES.md M9): its SASS, and the model's step


def cluster_kernel_text(listing: str, rule: str, where: int, dtype: str = "float32") -> str:
    """The SASS of plastic_rnn_fwd_cluster_kernel<rule, dtype, where> in a listing."""
    return _kernel_function(
        listing,
        "fwd_cluster",
        rule,
        dtype,
        f"Li{where}E",
        f"fwd_cluster_kernel<{rule}, {dtype}, {where}>",
    )


def cluster_step_counts(text: str) -> dict:
    """Static counts of the cluster forward's step loop: its length, block barriers (BAR: the
    step's own and the one cooperative_groups puts after the cluster wait), cluster barriers
    (UCGABAR_WAIT) and the fences before them (MEMBAR), and the pass over the trace: the
    innermost loop with the most loads from any memory, per element."""
    ins = sass.parse_instructions(text)
    loops = sass.find_loops(ins)
    step = sass.step_loop(ins, loops)
    body = sass.body(ins, step)
    leaves = [lp for lp in sass.inner_loops(step, loops) if not sass.inner_loops(lp, loops)]
    hot = max(leaves, key=lambda lp: (loads(sass.body(ins, lp), ("ldg", "lds", "ld_generic")),
                                      len(sass.body(ins, lp))))  # fmt: skip
    hot_body = sass.body(ins, hot)
    unroll = sass.unroll_factor(hot_body)
    return {
        "step_len": len(body),
        "bar": sass.barriers(body),
        "cluster_wait": sum(i.base == "UCGABAR_WAIT" for i in body),
        "membar": sum(i.base == "MEMBAR" for i in body),
        "hot_len": len(hot_body),
        "hot_unroll": unroll,
        "per_element": len(hot_body) / unroll,
        "classes": dict(sass.class_counts(hot_body)),
    }


def cluster_report(listing: str) -> str:
    out = ["Cluster forward (sm_90, float32), static counts of the step loop:"]
    for rule in ("neuromod", "hebb"):
        for where in (2, 1, 0):
            c = cluster_step_counts(cluster_kernel_text(listing, rule, where))
            cls = ", ".join(
                f"{k} {v}" for k, v in sorted(c["classes"].items(), key=lambda x: -x[1])
            )
            out.append(
                f"  {rule:8} kWhere {where}: step loop {c['step_len']} instrs, {c['bar']} BAR, "
                f"{c['cluster_wait']} cluster wait, {c['membar']} MEMBAR; pass {c['hot_len']} "
                f"instrs per {c['hot_unroll']} elements ({c['per_element']:.2f} per element): {cls}"
            )
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# The cluster backward (issue 13 item 2, second part; NOTES.md M11): its SASS, static counts.
#
# plastic_rnn_bwd_cluster_kernel<rule, dtype, kWhere> (plastic_rnn_cluster_backward.h,
# backward_cluster_sample; 256 threads a block). Its loops as the compiler lays them out:
#   chunk loop (checkpoints, last to first):
#     recomputation (for_each over n * nc, inner loop over the chunk's steps; no barrier), then
#     the chunk's first block barrier; the last step's rule pass (rows in lane segments, warp
#     shuffles) and its cluster barrier; the fold's loops;
#     step loop (last step to first): column phase, BAR, row pass (four variants: fused or not x
#       row-alpha or per-connection, each a loop over rows whose reduction shuffles, around the
#       loop over the block's columns), (modulated rules) BAR + mod_parts, the cluster barrier
#       (MEMBAR, UCGABAR_ARV, UCGABAR_WAIT, BAR), the fold's loops.
# The fold's loops (sums over the S partial rows and the c senders, unrolled) hold more loads than
# the row pass or the recomputation: "the inner loop with the most loads" would pick them, so the
# row pass is found by its shuffles and the recomputation by its place before the first barrier.


def cluster_bwd_kernel_text(listing: str, rule: str, where: int, dtype: str = "float32") -> str:
    """The SASS of plastic_rnn_bwd_cluster_kernel<rule, dtype, where> in a listing (where: kBwd*,
    0 global scratch, 1 the adjoint state in shared memory, 2 the state and the traces)."""
    return _kernel_function(
        listing,
        "bwd_cluster",
        rule,
        dtype,
        f"Li{where}E",
        f"bwd_cluster_kernel<{rule}, {dtype}, {where}>",
    )


def _count(instrs, base: str) -> int:
    return sum(i.base == base for i in instrs)


def wide_address_ops(instrs) -> int:
    """64-bit integer arithmetic (addresses, int64 indices): the high halves' carries (IADD3.X,
    LEA.HI.X, IMAD.X) and the wide multiplies (IMAD.WIDE)."""
    return sum(bool({"X", "WIDE"} & set(i.op.split(".")[1:])) for i in instrs)


def cluster_bwd_step_loop(instrs, loops) -> tuple[int, int]:
    """The step loop of the cluster backward: the innermost loop holding a cluster wait
    (UCGABAR_WAIT) and a block barrier (the chunk loop around it holds it and more)."""
    synced = [
        lp
        for lp in loops
        if _count(sass.body(instrs, lp), "UCGABAR_WAIT") and sass.barriers(sass.body(instrs, lp))
    ]
    innermost = [lp for lp in synced if not any(x in synced for x in sass.inner_loops(lp, loops))]
    if not innermost:
        raise ValueError("no loop with a cluster wait (UCGABAR_WAIT) and a barrier (BAR)")
    return max(innermost, key=lambda lp: sass.barriers(sass.body(instrs, lp)))


def _enclosing(lp, within, loops):
    """The innermost loop strictly inside `within` that strictly holds `lp` (None: `within`)."""
    around = [x for x in sass.inner_loops(within, loops) if lp in sass.inner_loops(x, loops)]
    return min(around, key=lambda x: x[1] - x[0]) if around else None


def cluster_bwd_step_counts(text: str, elig: bool = False) -> dict:
    """Static counts of the cluster backward (elig: a rule with an eligibility trace, whose
    recomputation stores two values per element and step):
      - the step loop (cluster_bwd_step_loop): its length, block barriers (BAR), cluster waits
        (UCGABAR_WAIT), fences (MEMBAR), local-memory instructions (LDL/STL: spills);
      - the row pass: the loops over the block's columns inside a loop over rows that reduces
        with warp shuffles (SHFL); of those candidates (the compile-time variants of
        cluster_row_pass) the one with the most instructions per element (a fused one), its
        unroll factor, classes and 64-bit address arithmetic;
      - the recomputation: of the loops of the chunk loop (the loop around the step loop) that
        lie before its first barrier, the innermost with the most loads and stores; per element
        and step, from its trace stores (the inner loop over the chunk's steps is unrolled)."""
    ins = sass.parse_instructions(text)
    loops = sass.find_loops(ins)
    step = cluster_bwd_step_loop(ins, loops)
    body = sass.body(ins, step)

    def leaves(outer):
        return [lp for lp in sass.inner_loops(outer, loops) if not sass.inner_loops(lp, loops)]

    def per_element(lp):
        return len(sass.body(ins, lp)) / sass.unroll_factor(sass.body(ins, lp))

    rows = []
    for lp in leaves(step):
        parent = _enclosing(lp, step, loops)
        if parent is not None and sass.class_counts(sass.body(ins, parent))["shfl"]:
            rows.append(lp)
    if not rows:
        raise ValueError("no row pass (a loop inside a loop over rows with shuffles) in the step")
    hot = max(rows, key=per_element)
    hot_body = sass.body(ins, hot)

    chunk = _enclosing(step, (ins[0].addr, ins[-1].addr), loops)
    if chunk is None:
        raise ValueError("no chunk loop around the step loop")
    first_bar = min(i.addr for i in sass.body(ins, chunk) if i.base == "BAR")
    before = [lp for lp in sass.inner_loops(chunk, loops) if lp[1] < first_bar and lp[0] < step[0]]
    rec_leaves = [lp for lp in before if not sass.inner_loops(lp, loops)]
    if not rec_leaves:
        raise ValueError("no recomputation loop before the chunk loop's first barrier")

    def mem(lp):
        c = sass.class_counts(sass.body(ins, lp))
        return sum(c[k] for k in ("ldg", "lds", "ld_generic", "stg", "sts", "st_generic"))

    rec = max(rec_leaves, key=lambda lp: (mem(lp), len(sass.body(ins, lp))))
    rec_body = sass.body(ins, rec)
    rc = sass.class_counts(rec_body)
    rec_steps = max(1, (rc["sts"] + rc["stg"] + rc["st_generic"]) // (2 if elig else 1))
    chunk_body = sass.body(ins, chunk)
    return {
        "step": step,
        "step_len": len(body),
        "bar": sass.barriers(body),
        "cluster_wait": _count(body, "UCGABAR_WAIT"),
        "membar": _count(body, "MEMBAR"),
        "local": sass.class_counts(body)["ldl_stl"],
        "chunk": chunk,
        "chunk_bar": sass.barriers(chunk_body),
        "chunk_cluster_wait": _count(chunk_body, "UCGABAR_WAIT"),
        "hot": hot,
        "hot_candidates": sorted((per_element(lp) for lp in rows), reverse=True),
        "hot_len": len(hot_body),
        "hot_unroll": sass.unroll_factor(hot_body),
        "per_element": per_element(hot),
        "classes": dict(sass.class_counts(hot_body)),
        "addr64": wide_address_ops(hot_body),
        "rec": rec,
        "rec_len": len(rec_body),
        "rec_steps": rec_steps,
        "rec_per_element": len(rec_body) / rec_steps,
        "rec_classes": dict(rc),
    }


def cluster_bwd_report(listing: str) -> str:
    out = ["Cluster backward (sm_90, float32), static counts of the step loop:"]
    for rule in ("neuromod", "hebb"):
        for where in (2, 1, 0):
            c = cluster_bwd_step_counts(cluster_bwd_kernel_text(listing, rule, where), rule in ELIG)
            cls = ", ".join(
                f"{k} {v}" for k, v in sorted(c["classes"].items(), key=lambda x: -x[1])
            )
            rcls = ", ".join(
                f"{k} {v}" for k, v in sorted(c["rec_classes"].items(), key=lambda x: -x[1])
            )
            cands = "/".join(f"{x:.0f}" for x in c["hot_candidates"])
            out.append(
                f"  {rule:8} kWhere {where}: step loop {c['step_len']} instrs, {c['bar']} BAR, "
                f"{c['cluster_wait']} cluster wait, {c['membar']} MEMBAR, {c['local']} LDL/STL; "
                f"row pass (hottest of {len(c['hot_candidates'])} variants, {cands} per element) "
                f"{c['hot_len']} instrs per {c['hot_unroll']} elements ({c['per_element']:.2f} "
                f"per element, {c['addr64']} 64-bit address ops): {cls}; recomputation "
                f"{c['rec_len']} instrs per {c['rec_steps']} steps ({c['rec_per_element']:.1f} per "
                f"element and step): {rcls}"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sass", type=Path, help="a saved cuobjdump -sass listing (else compile)")
    args = ap.parse_args(argv)
    listing = args.sass.read_text() if args.sass else compile_sass("sm_90")
    print(report(load_codes(listing), measured_codes=load_measured_codes()))
    print(cluster_report(listing))
    print(cluster_bwd_report(listing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
