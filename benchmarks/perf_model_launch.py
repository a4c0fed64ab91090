"""The launch rule of issue 13 item 2, as a pure function: how many thread blocks (SMs) one sample
of plastic_rnn spans, the block size, and where w, alpha and the trace live.

Written down before any GPU run of the new layouts (benchmarks/NOTES.md, section M); the
performance model (benchmarks/perf_model.py) predicts every case from it (``plan_launch``: the
plan for both passes). What is BUILT (NOTES.md M9, M11, M12): column slices (not rows) over a
thread-block cluster on sm_90, for the forward and the backward, and the same kernels with their
blocks synchronised through global memory below sm_90 (``global_sync``: all B x c blocks resident
at once); their rules are ``plan_forward_cluster`` and ``plan_backward_cluster`` at the end of this
file, the mirrors of ``plan_cluster`` and ``plan_cluster_bwd`` (tested against them in
tests/test_plastic_rnn_cuda_emulated_cluster*.py and ..._grid_sync.py).

The rule, in order:
1. Per-SM working set of one sample split over c blocks (rows of the trace split evenly):
   trace (x2 with an eligibility trace) + w + alpha, each N^2/c elements, plus the vectors.
2. c = the smallest power of two in 1..cluster_max whose slice fits one SM's shared memory:
   everything on chip ("smem"). With the B*c blocks the batch needs not filling the GPU, c grows
   (within the cluster limit) while B*c <= sm_count, so that small batches use the whole GPU.
3. If no cluster fits w, alpha and the trace, w and alpha leave first (they are read-only and
   shared by the batch: the L2 serves them to every sample), then the trace: c = cluster_max,
   and what does not fit streams from L2 ("l2"), the trace in the cluster's shared memory if it
   fits there alone.
4. Without clusters (cluster_max = 1, sm_80) the same split is made of blocks that synchronise
   through global memory (``grid_sync``), up to 16 of them.
5. Threads per block: 512 (one block per SM when a sample spans several); for a sample on one
   block, fewer when its trace is small (at least 8 elements per thread, at least 64 threads),
   so that several samples share an SM: blocks_per_sm = what threads (2048 per SM)
   and shared memory allow, and waves = ceil(B * c / (sm_count * blocks_per_sm)).
"""

from __future__ import annotations

from dataclasses import dataclass

THREADS = 512  # plastic_rnn's block size today (csrc/cuda/plastic_rnn_launch.h)
THREADS_PER_SM = 2048  # sm_80 and sm_90
VEC_ELEMS_PER_N = 8 + 3 * (THREADS // 32)  # bwd_vec_elems / N: the backward's vectors, per N


@dataclass(frozen=True)
class LaunchPlan:
    blocks_per_sample: int  # c: thread blocks (SMs) one sample spans
    threads: int  # per block
    grid_sync: bool  # c > 1 without clusters: blocks synchronise through global memory
    w_alpha_in: str  # "smem" (loaded once per block) or "l2" (re-read every step)
    trace_in: str  # "smem" or "l2"
    blocks_per_sm: int  # resident blocks per SM (threads and shared memory allowing)
    waves: int  # ceil(B * c / (sm_count * blocks_per_sm)): rounds of blocks, one after another
    smem_bytes: int  # per block


def slice_bytes(N: int, c: int, dtype_bytes: int, elig: bool, with_w_alpha: bool) -> int:
    """Shared memory one of c blocks needs: its rows of the trace (and eligibility), of w and
    alpha if they stay on chip, and the backward's vectors (the larger pass decides)."""
    rows = -(-N // c)
    state = (2 if elig else 1) * rows * N
    if with_w_alpha:
        state += 2 * rows * N
    return (state + VEC_ELEMS_PER_N * N) * dtype_bytes


def plan_launch(
    B: int,
    N: int,
    dtype_bytes: int,
    sm_count: int,
    smem_per_sm: int,
    cluster_max: int,
    elig: bool = False,
) -> LaunchPlan:
    """The split of issue 13 item 2 for B samples of width N (see the module's docstring)."""
    if B < 1 or N < 1:
        raise ValueError(f"B and N must be positive, got B={B}, N={N}")
    if dtype_bytes not in (2, 4, 8):
        raise ValueError(f"dtype_bytes must be 2, 4 or 8, got {dtype_bytes}")
    if sm_count < 1 or smem_per_sm < 1 or cluster_max < 1:
        raise ValueError("sm_count, smem_per_sm and cluster_max must be positive")
    # Powers of two up to the cluster limit; without clusters the same sizes as grid-synchronised
    # blocks (up to 16, the sm_90 non-portable cluster limit, so that both paths split alike).
    limit = cluster_max if cluster_max > 1 else 16
    sizes = [c for c in (1, 2, 4, 8, 16) if c <= limit]

    def plan(c: int, w_in: str, t_in: str, with_w: bool) -> LaunchPlan:
        if t_in == "l2":  # only the vectors on chip (the column partials may leave too)
            smem = min(VEC_ELEMS_PER_N * N * dtype_bytes, smem_per_sm)
        else:
            smem = slice_bytes(N, c, dtype_bytes, elig, with_w)
        elems = -(-N // c) * N
        threads = THREADS
        while c == 1 and threads > 64 and elems < 8 * threads:
            threads //= 2
        per_sm = max(1, min(THREADS_PER_SM // threads, smem_per_sm // max(smem, 1)))
        waves = -(-B * c // (sm_count * per_sm))
        return LaunchPlan(c, threads, c > 1 and cluster_max == 1, w_in, t_in, per_sm, waves, smem)

    fits = [c for c in sizes if slice_bytes(N, c, dtype_bytes, elig, True) <= smem_per_sm]
    if fits:
        c = fits[0]
        while 2 * c in sizes and B * 2 * c <= sm_count:  # idle SMs: spread the sample wider
            c *= 2
        return plan(c, "smem", "smem", True)
    fits = [c for c in sizes if slice_bytes(N, c, dtype_bytes, elig, False) <= smem_per_sm]
    if fits:
        c = fits[0]
        while 2 * c in sizes and B * 2 * c <= sm_count:
            c *= 2
        return plan(c, "l2", "smem", False)
    return plan(sizes[-1], "l2", "l2", False)


# ---------------------------------------------------------------------------------------------
# The forward's launch rule AS BUILT (issue 13 item 2, first part; NOTES.md M9): the cluster
# forward of plastic_rnn_block.h (`plan_cluster`, `place_cluster`, `place`), mirrored line for
# line and tested against the C++ (tests/test_plastic_rnn_cuda_emulated_cluster.py). The backward
# stays one block per sample; plan_launch above is still the plan for both passes.

WARP = 32
MAX_WARPS = 32
MIN_COLS = 8  # ASSUMED: the fewest columns per block worth a cluster barrier (plan_cluster)
WHERE_RUNTIME, WHERE_STATE, WHERE_PARAMS = 0, 1, 2  # kWhere* of plastic_rnn_block.h


@dataclass(frozen=True)
class ForwardPlan:
    blocks_per_sample: int  # c (1: the one-block forward)
    where: int  # WHERE_PARAMS: state, w, alpha in shared memory; WHERE_STATE; WHERE_RUNTIME
    smem_bytes: int  # per block


def fwd_groups(N: int, threads: int) -> int:
    return max(1, min(threads // N, N))


def cluster_cols(N: int, c: int) -> int:
    return -(-N // c)


def cluster_groups(N: int, c: int, threads: int) -> int:
    return max(1, min(threads // max(cluster_cols(N, c), 1), N))


def _where(vec: int, state: int, params: int, elem: int, budget: int) -> tuple[int, int]:
    if (vec + state + params) * elem <= budget:
        return WHERE_PARAMS, (vec + state + params) * elem
    if (vec + state) * elem <= budget:
        return WHERE_STATE, (vec + state) * elem
    return WHERE_RUNTIME, (vec * elem if vec * elem <= budget else -1)


def one_block_placement(N, elig, row_alpha, threads, budget, elem) -> ForwardPlan:
    """``place`` of the one-block forward (K and scratch aside)."""
    vec = 4 * N + fwd_groups(N, threads) * N + MAX_WARPS
    state = (2 if elig else 1) * N * N
    where, smem = _where(vec, state, N * N + (N if row_alpha else N * N), elem, budget)
    return ForwardPlan(1, where, max(smem, 0))


def cluster_placement(N, elig, row_alpha, c, threads, budget, elem) -> ForwardPlan | None:
    """``place_cluster``: None where even the vectors do not fit."""
    nc = cluster_cols(N, c)
    vec = 3 * N + cluster_groups(N, c, threads) * nc
    state = (2 if elig else 1) * N * nc
    where, smem = _where(vec, state, N * nc + (nc if row_alpha else N * nc), elem, budget)
    return None if smem < 0 else ForwardPlan(c, where, smem)


def plan_forward_cluster(
    B: int,
    N: int,
    dtype_bytes: int,
    sm_count: int,
    smem_budget: int,
    cluster_max: int,
    elig: bool = False,
    row_alpha: bool = False,
    threads: int = THREADS,
    global_sync: bool = False,
) -> ForwardPlan:
    """``plan_cluster``: the forward's blocks per sample, and that layout's placement
    (``global_sync``: blocks synchronised through global memory, below sm_90)."""

    def at(c):
        if c == 1:
            return one_block_placement(N, elig, row_alpha, threads, smem_budget, dtype_bytes)
        return cluster_placement(N, elig, row_alpha, c, threads, smem_budget, dtype_bytes)

    return _plan(at, (WHERE_PARAMS, WHERE_STATE), B, N, sm_count, cluster_max, False, global_sync)


def _plan(at, preferred, B, N, sm_count, cluster_max, floor_first, global_sync):
    """The placement ``at(c)`` (None where it does not fit) of the c that ``_choose_c`` picks;
    without clusters (cluster_max 1), c = 1."""

    def where(c):
        p = at(c)
        return -1 if p is None else p.where

    if cluster_max < 2:
        return at(1)
    return at(_choose_c(where, preferred, B, N, sm_count, cluster_max, floor_first, global_sync))


def _choose_c(where, preferred, B, N, sm_count, cluster_max, floor_first, global_sync) -> int:
    """The skeleton both launch rules share (plan_cluster, plan_cluster_bwd): the smallest c whose
    placement is the first of ``preferred`` (then the second; ``floor_first``: only c with at
    least MIN_COLS columns a block besides 1), else the widest c the column floor allows (1 if its
    vectors do not fit); then c doubles while the batch leaves SMs idle. ``global_sync`` (blocks
    synchronised through global memory, below sm_90; ``coresident``): then c halves until all
    B * c blocks fit the SMs at once and its placement fits."""
    sizes = [c for c in (1, 2, 4, 8, 16)
             if c <= cluster_max and (not floor_first or c == 1 or c * MIN_COLS <= N)]  # fmt: skip
    c = None
    for want in preferred:
        c = next((k for k in sizes if where(k) == want), None)
        if c is not None:
            break
    if c is None:
        c = 1
        while 2 * c <= cluster_max and 2 * c * MIN_COLS <= N:
            c *= 2
        if c > 1 and where(c) < 0:
            return 1
    while 2 * c <= cluster_max and 2 * c * MIN_COLS <= N and B * 2 * c <= sm_count:
        c *= 2
    while global_sync and c > 1 and (B * c > sm_count or where(c) < 0):
        c //= 2
    return c


# The backward over a cluster (plastic_rnn_cluster_backward.h), mirrored as the forward's rule is.
BWD_GLOBAL, BWD_STATE, BWD_TRACES = 0, 1, 2  # kBwd* of plastic_rnn_cluster_backward.h
CLUSTER_BWD_THREADS = 256  # kClusterBwdThreads: the cluster backward's block size (registers)


@dataclass(frozen=True)
class BackwardPlan:
    blocks_per_sample: int  # c (1: the one-block backward)
    where: int  # BWD_TRACES: adjoint state and recomputed traces on chip; BWD_STATE; BWD_GLOBAL
    smem_bytes: int  # per block
    scratch: int  # elements of global scratch per block (c = 1: per sample)


def seg_width(cols: int) -> int:
    """Lanes per row segment: the smallest power of two holding ``cols``, at most a warp."""
    L = 1
    while L < cols and L < WARP:
        L *= 2
    return L


def one_block_bwd_placement(N, K, elig, threads, budget, elem) -> BackwardPlan:
    """``place(backward=true)`` of the one-block backward (shared parameters in global memory)."""
    W = threads // WARP
    vec = 8 * N + 3 * W * N + W + MAX_WARPS
    state = (2 if elig else 1) * N * N
    if (vec + state) * elem <= budget:
        return BackwardPlan(1, BWD_STATE, (vec + state) * elem, K * state)
    if vec * elem <= budget:
        return BackwardPlan(1, BWD_GLOBAL, vec * elem, K * state)
    return BackwardPlan(1, BWD_GLOBAL, 0, vec + K * state)


def cluster_bwd_placement(N, K, elig, c, threads, budget, elem) -> BackwardPlan | None:
    """``place_cluster_bwd``: None where even the vectors do not fit."""
    nc = cluster_cols(N, c)
    S = threads // seg_width(nc)
    vec = 8 * nc + 3 * S * nc + 4 * c * nc + 2 * c + (S + 1) + c + N
    state = (2 if elig else 1) * N * nc
    traces = K * state
    # global scratch: h_{-1} = 0 (N), then what is not in shared memory
    if (vec + state + traces) * elem <= budget:
        return BackwardPlan(c, BWD_TRACES, (vec + state + traces) * elem, N)
    if (vec + state) * elem <= budget:
        return BackwardPlan(c, BWD_STATE, (vec + state) * elem, N + traces)
    if vec * elem <= budget:
        return BackwardPlan(c, BWD_GLOBAL, vec * elem, N + state + traces)
    return None


def plan_backward_cluster(
    B: int,
    N: int,
    K: int,
    dtype_bytes: int,
    sm_count: int,
    smem_budget: int,
    cluster_max: int,
    elig: bool = False,
    threads: int = THREADS,
    cluster_threads: int = CLUSTER_BWD_THREADS,
    global_sync: bool = False,
) -> BackwardPlan:
    """``plan_cluster_bwd``: the backward's blocks per sample, and that layout's placement
    (``threads``: the one-block backward's block size, ``cluster_threads``: the cluster's;
    ``global_sync`` as ``plan_forward_cluster``'s)."""

    def at(c):
        if c == 1:
            return one_block_bwd_placement(N, K, elig, threads, smem_budget, dtype_bytes)
        return cluster_bwd_placement(N, K, elig, c, cluster_threads, smem_budget, dtype_bytes)

    return _plan(at, (BWD_TRACES, BWD_STATE), B, N, sm_count, cluster_max, True, global_sync)
