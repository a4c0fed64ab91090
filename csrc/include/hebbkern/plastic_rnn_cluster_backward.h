// The backward of the plastic recurrent layer over a thread-block cluster: c blocks per sample
// (issue 13 item 2, second part; NOTES.md M11). Written against the Block and Cluster interfaces of
// simt.h: csrc/cuda/plastic_rnn.cu runs it on sm_90, csrc/cpu/plastic_rnn_emulated.cpp runs the
// same code on the CPU (the cluster's blocks as host threads) for the tests.
//
// Block r of the sample's cluster owns the post-synaptic columns [j0, j0 + nc) (col_begin, as the
// cluster forward) of everything [N, N]: the adjoints of the trace and eligibility, the chunk's
// recomputed traces (from the checkpoint's columns: the trace update of column j needs only
// h_{t-1}, h_t[j] and m_t[j], all in global memory), and its columns of d alpha. It also owns the
// column vectors of its columns: the adjoints of h_t, h_{t-1}, h_{t-2}, m_t, m_{t-1} and a_t.
//
// A step t (last to first) of the one-block backward (backward_sample) splits as:
//   column phase: the adjoint of h_t of its columns is complete; add the output gradient and the
//     modulator's part, then da_t = cur * act'(h_t) (its columns);                 -> block barrier
//   row pass over all N rows x its columns (rows in segments of lanes, CudaSeg: a slice narrower
//     than a warp keeps every lane busy): the mat-vec adjoint of step t and the trace-update
//     adjoint of step t-1, as in row_pass. Column sums (d post, d m, d alpha per shared row) stay
//     in the block; ROW sums (the adjoints of h_{t-1} and h_{t-2} for every row i) are partial over
//     the block's columns: each segment leader writes them straight into the shared memory of the
//     block that owns column i (distributed shared memory), into a slot of its own rank;
//   (modulated rules) -> block barrier; warp 0 folds the d m partials and writes this block's part
//     of sum_j d m_{t-1}[j] fan_w[j] into every block (the squashed modulator's adjoint needs all
//     columns);                                                          -> cluster barrier
//   fold: each block adds its columns' partials, then the c senders' row sums in rank order, and
//     every block adds the c modulator parts in rank order (the same bits everywhere).
// Two block barriers and one cluster barrier per step for modulated rules, one and one otherwise.
// The inbox is double-buffered by the parity of the exchange: a block writes exchange k + 2's
// values into slots that the owner read after barrier k, and it passes barrier k + 1 only after the
// owner has arrived there, that is after the owner's fold of exchange k. The recomputation of a
// chunk needs no barrier inside: every element is recomputed by one item from its own past.
//
// Results do not depend on scheduling: no atomics, every sum in a fixed order (a different grouping
// from the one-block backward: its bits differ from it by rounding). d alpha (per connection),
// d mod_w, the fan-out's gradients, du and da of a block's columns go to the outputs directly;
// d eta's per-block parts meet in rank 0 at the end; d mod_b is the same in every block.
#pragma once

#include <cstdint>

#include "hebbkern/plastic_rnn_block.h"

namespace hebbkern::simt {

// Threads per block of the CUDA cluster backward: 8 warps. ptxas uses 125 to 196 registers a
// thread for its instantiations (sm_90); the first version at 512 threads (128 registers at most)
// spilled in every one of them (NOTES.md M11).
constexpr int kClusterBwdThreads = 256;

// Lanes per row segment: the smallest power of two holding the widest block's columns, at most 32.
HK_HOST_DEVICE int seg_width(int64_t cols) {
  int L = 1;
  while (L < cols && L < kWarpSize) L *= 2;
  return L;
}

// Where a cluster backward's block keeps its working set (a template argument of the kernel, so
// that everything in shared memory is addressed as such). The small vectors (and the inbox, which
// the other blocks write) are always in shared memory.
// kBwdGlobal: the adjoint state slice and the recomputed traces in global scratch; kBwdState: the
// state slice in shared memory, the traces in scratch; kBwdTraces: both in shared memory (no global
// scratch inside the step loop).
constexpr int kBwdGlobal = 0;
constexpr int kBwdState = 1;
constexpr int kBwdTraces = 2;

// The vectors of a block: 8 column vectors, 3 x S partial rows, the inbox (2 parities x 2 kinds x c
// senders x columns), the modulator parts (2 x c), rank 0's d eta parts (c), d eta per segment
// (+1), and every row's owner and slot (N ints, in elements of at least 4 bytes).
HK_HOST_DEVICE int64_t cluster_bwd_vec_elems(int64_t N, int c, int threads) {
  const int64_t nc = cluster_cols(N, c);
  const int64_t S = threads / seg_width(nc);
  return 8 * nc + 3 * S * nc + 4 * c * nc + 2 * c + c + (S + 1) + N;
}

// The part of a block's shared memory the other blocks write (through Cluster::map): the inbox,
// the modulator parts and rank 0's d eta parts, contiguous after the partial rows. A
// grid-synchronised cluster (simt::Mailbox) keeps a mailbox of these bytes per block.
HK_HOST_DEVICE Mailbox cluster_bwd_window(int64_t N, int c, int threads, int64_t elem_bytes) {
  const int64_t nc = cluster_cols(N, c);
  const int64_t S = threads / seg_width(nc);
  return {nullptr, nullptr, (8 + 3 * S) * nc * elem_bytes, (4 * c * nc + 3 * c) * elem_bytes, 0};
}

struct ClusterBwdPlacement {
  int c;                      // blocks per sample (0: the vectors do not fit)
  int threads;                // per block
  int where;                  // kBwd*
  int64_t smem_bytes;         // dynamic shared memory per block
  int64_t scratch_per_block;  // elements of global scratch per block
};

// K: steps per checkpoint (the chunk's recomputed traces); every block the same layout, from the
// widest block's columns. Global scratch always holds h_{-1} = 0 (N, for a call without h0: every
// h the kernel reads is then in global memory, read with LDG, not through a generic pointer).
inline ClusterBwdPlacement place_cluster_bwd(int64_t N, int64_t K, bool elig, int c, int threads,
                                             int64_t smem_budget, int64_t elem_bytes) {
  const int64_t nc = cluster_cols(N, c);
  const int64_t vec = cluster_bwd_vec_elems(N, c, threads);
  const int64_t state = (elig ? 2 : 1) * N * nc;
  const int64_t traces = K * state;
  ClusterBwdPlacement p{c, threads, kBwdGlobal, vec * elem_bytes, N + state + traces};
  if ((vec + state + traces) * elem_bytes <= smem_budget) {
    p.where = kBwdTraces;
    p.smem_bytes = (vec + state + traces) * elem_bytes;
    p.scratch_per_block = N;
  } else if ((vec + state) * elem_bytes <= smem_budget) {
    p.where = kBwdState;
    p.smem_bytes = (vec + state) * elem_bytes;
    p.scratch_per_block = N + traces;
  } else if (vec * elem_bytes > smem_budget) {
    p.c = 0;
  }
  return p;
}

// The launch rule of the backward: blocks per sample (c = 1: the one-block backward,
// backward_sample). Mirrored by plan_backward_cluster in benchmarks/perf_model_launch.py:
//   1. c0 = the smallest power of two (1 .. cluster_max; for c > 1 at least kMinCols = 8 columns
//      a block, c * 8 <= N) whose slice keeps the adjoint state and the chunk's recomputed traces
//      in shared memory; if none, the smallest that keeps the state (for c = 1: the one-block
//      placement's state_in_smem); if none, the largest c the column rule below allows (state
//      and traces in global scratch, spread over the most SMs);
//   2. while the batch leaves SMs idle (B * 2c <= sm_count), 2c <= cluster_max and every block
//      keeps at least kMinCols = 8 columns (2c * 8 <= N): c doubles (as plan_cluster);
//   3. with blocks synchronised through global memory (caps.global_sync): c halves until the
//      launch's B * c blocks fit the SMs at once (coresident).
// Without clusters (cluster_max 1) c stays 1.
// `threads`: the one-block backward's block size; `cluster_threads`: the cluster backward's.
inline int plan_cluster_bwd(int64_t B, int64_t N, int64_t K, bool elig, int threads,
                            int cluster_threads, int64_t smem_budget, int64_t elem_bytes,
                            const LaunchCaps& caps) {
  if (caps.cluster_max < 2 || B < 1 || N < 1) return 1;
  auto where = [&](int c) -> int {
    if (c == 1)
      return place(true, N, K, elig, threads, smem_budget, elem_bytes).state_in_smem ? kBwdState
                                                                                     : kBwdGlobal;
    const ClusterBwdPlacement p =
        place_cluster_bwd(N, K, elig, c, cluster_threads, smem_budget, elem_bytes);
    return p.c == 0 ? -1 : p.where;
  };
  constexpr int64_t kMinCols = 8;  // ASSUMED, as plan_cluster's
  int c = 0;
  for (const int want : {kBwdTraces, kBwdState}) {
    // c = 1 never keeps the traces on chip: without the column floor here, every N below 16
    // would take a cluster of 2 for its traces.
    for (int k = 1; k <= caps.cluster_max && (k == 1 || k * kMinCols <= N) && c == 0; k *= 2)
      if (where(k) == want) c = k;
    if (c) break;
  }
  if (c == 0) {
    c = 1;
    while (2 * c <= caps.cluster_max && 2 * c * kMinCols <= N) c *= 2;
    if (c > 1 && where(c) < 0) return 1;
  }
  while (2 * c <= caps.cluster_max && 2 * c * kMinCols <= N && B * 2 * c <= caps.sm_count) c *= 2;
  return coresident(c, B, caps, where);
}

// modulation_at for one column, its fan-out read once: the recomputation's items walk one element
// through the chunk's steps, and re-reading fan_w, fan_b at every step cost two loads and a branch.
template <typename T>
struct ColumnModulation {
  T fw, fb, eta;
  bool fan;    // a fan-out (else the modulation is s itself)
  bool fixed;  // one of neuromod's unmodulated neurons: the modulation is eta
  HK_DEVICE T at(T s) const { return fixed ? eta : (fan ? fw * s + fb : s); }
};

template <Rule R, typename T>
HK_DEVICE ColumnModulation<T> column_modulation(const RnnParams<T>& p, int j, T eta) {
  ColumnModulation<T> c{T(1), T(0), eta, p.fan_w != nullptr, false};
  if constexpr (hard_rule(R) == Rule::Neuromod) c.fixed = j >= static_cast<int>(p.N - p.n_unmod);
  if (c.fan) {
    c.fw = p.fan_w[j];
    c.fb = p.fan_b[j];
  }
  return c;
}

// What every phase of a block's backward needs: the block's columns and its views of the sample.
template <typename T>
struct ClusterBwdView {
  int n, c, r, j0, nc, ncm, L, S;
  T eta, clip;
  const T* w;    // this sample's w from column j0 (row i at i * n)
  const T* A;    // this sample's alpha from column j0 (row i at i * a_stride)
  int a_stride;  // n or 0
  T* dA;         // d alpha [N, N] from column j0 (per connection; row i at i * n)
  T* col_post;   // [S, ncm] column partials of the adjoint of post
  T* col_mod;    // [S, ncm] of the modulation
  T* col_A;      // [S, ncm] of d alpha (a shared row)
  T* inbox;      // [2 parities][2 kinds][c senders][ncm] row sums from the cluster (this block's)
  T* dloc;       // [S] d eta per segment, then [1] the unmodulated neurons' part
  T* mcol;       // [ncm] the modulation of these columns in the pass's trace adjoint
  const int* row_slot;  // [N] the block owning column i (<< 16) and i's slot in it (owner_slot)
};

// Row i's owner (the block of c owning column i) and its slot there, packed as owner << 16 | slot
// (slot < N <= 46340 < 2^16). Built once per launch into a table: formed per row, the owner's
// first column was a 64-bit division with a call to its slow path (NOTES.md M11).
HK_HOST_DEVICE int owner_slot(int64_t N, int c, int i) {
  const int q = static_cast<int>((static_cast<int64_t>(i + 1) * c - 1) / N);
  return (q << 16) | (i - static_cast<int>(col_begin(N, c, q)));
}

// The row sums of row i (kind 0: the adjoint of h_{t-1}, kind 1: of h_{t-2}) into the inbox of the
// block owning column i, in the slot of this block's rank.
template <typename T, typename Clu>
HK_DEVICE T* inbox_slot(const Clu& clu, const ClusterBwdView<T>& v, int par, int i) {
  const int e = v.row_slot[i];
  return clu.map(v.inbox, e >> 16) + ((par * 2) * v.c + v.r) * v.ncm + (e & 0xffff);
}

// The trace-update adjoint of step t on its own (the last step of a chunk), this block's columns:
// d pre (the adjoint of h_{t-1}, row sums) to the owners' inboxes (kind 0), d post and d m to the
// column partials. Hs/Es: the trace and eligibility before step t (ld nc); hp = h_{t-1}, hc = h_t;
// v.mcol: m_t of these columns.
template <Rule R, typename T, typename Blk, typename Clu>
HK_DEVICE void cluster_rule_pass(const Blk& blk, const Clu& clu, const RnnParams<T>& p,
                                 const ClusterBwdView<T>& v, int par, const T* Hs, const T* Es,
                                 const T* hp, const T* hc, T* dH, T* dE) {
  constexpr bool kElig = has_eligibility(R);
  constexpr bool kMod = is_modulated(R);
  const int nc = v.nc, j0 = v.j0;
  blk.for_each_row_seg(v.n, v.L, [&](const auto& seg, int i, int s) {
    const T pre = hp[i];
    T* cpost = v.col_post + s * v.ncm;
    [[maybe_unused]] T* cmod = v.col_mod + s * v.ncm;
    const Vec<T, 2> rs = seg.template sum<Vec<T, 2>>(nc, [&](int jl) {
      const int e = i * nc + jl, j = j0 + jl;
      const T m = kMod ? v.mcol[jl] : T(0);
      T unused = T(0);
      const TraceGrad<T> g =
          trace_backward_inv<R>(Hs[e], kElig ? Es[e] : T(0), pre, hc[j], m, v.eta, v.clip,
                                p.inv_clip, dH[e], kElig ? dE[e] : unused);
      cpost[jl] += g.d_post;
      if constexpr (kMod) cmod[jl] += g.d_mod;
      return Vec<T, 2>{{g.d_pre, g.d_eta}};
    });
    if (seg.leader()) {
      *inbox_slot(clu, v, par, i) = rs[0];
      v.dloc[s] += rs[1];
    }
  });
}

// One pass over all rows x this block's columns at step t: the mat-vec adjoint of step t (row sums
// kind 0, the adjoint of h_{t-1}) and, when kFused, the trace-update adjoint of step t-1 (row sums
// kind 1, the adjoint of h_{t-2}; d post and d m to the column partials), as row_pass does for a
// whole sample. Hp: the trace of step t; Hpp/Epp: before step t-1 (ld nc); hp = h_{t-1},
// hpp = h_{t-2} (all N); da: this block's columns; v.mcol: m_{t-1} of these columns (kFused).
template <Rule R, bool kFused, bool kRowAlpha, typename T, typename Blk, typename Clu>
HK_DEVICE void cluster_row_pass(const Blk& blk, const Clu& clu, const RnnParams<T>& p,
                                const ClusterBwdView<T>& v, int par, const T* Hp, const T* hp,
                                const T* da, T* dH, T* dE, const T* Hpp, const T* Epp,
                                const T* hpp) {
  constexpr bool kElig = has_eligibility(R);
  constexpr bool kMod = is_modulated(R);
  const int nc = v.nc, n = v.n, j0 = v.j0;
  blk.for_each_row_seg(n, v.L, [&](const auto& seg, int i, int s) {
    const T x = hp[i];
    const T* Arow = v.A + i * v.a_stride;
    const T* wrow = v.w + i * n;
    const T* Hrow = Hp + i * nc;
    T* dHrow = dH + i * nc;
    [[maybe_unused]] T* dArow = v.dA + i * n;
    [[maybe_unused]] T* cpost = v.col_post + s * v.ncm;
    [[maybe_unused]] T* cmod = v.col_mod + s * v.ncm;
    [[maybe_unused]] T* cA = v.col_A + s * v.ncm;
    [[maybe_unused]] const T pre = kFused ? hpp[i] : T(0);
    const Vec<T, 3> rs = seg.template sum<Vec<T, 3>>(nc, [&](int jl) {
      // alpha and w into registers before any store (the stores below might alias them for the
      // compiler, which then loaded alpha twice).
      const T a = Arow[jl], wv = wrow[jl];
      const T hij = Hrow[jl];
      const T d = da[jl];
      const T xd = x * d;
      dHrow[jl] += a * xd;
      if constexpr (kRowAlpha)
        cA[jl] += xd * hij;
      else
        dArow[jl] += xd * hij;
      Vec<T, 3> out{{(wv + a * hij) * d, T(0), T(0)}};
      if constexpr (kFused) {
        const int e = i * nc + jl, j = j0 + jl;
        const T m = kMod ? v.mcol[jl] : T(0);
        T unused = T(0);
        const TraceGrad<T> g =
            trace_backward_inv<R>(Hpp[e], kElig ? Epp[e] : T(0), pre, hp[j], m, v.eta, v.clip,
                                  p.inv_clip, dHrow[jl], kElig ? dE[e] : unused);
        cpost[jl] += g.d_post;
        if constexpr (kMod) cmod[jl] += g.d_mod;
        out[1] = g.d_pre;
        out[2] = g.d_eta;
      }
      return out;
    });
    if (seg.leader()) {
      T* slot = inbox_slot(clu, v, par, i);
      slot[0] = rs[0];
      if constexpr (kFused) {
        slot[v.c * v.ncm] = rs[1];  // kind 1
        v.dloc[s] += rs[2];
      }
    }
  });
}

// kWhere (kBwd*): where the adjoint state and the recomputed traces live, known at compile time.
// scratch: per block `scratch_per_block` elements (block b * c + r of the launch).
template <Rule R, int kWhere, typename T, typename Blk, typename Clu>
HK_DEVICE void backward_cluster_sample(const Blk& blk, const Clu& clu, const RnnParams<T>& p,
                                       const RnnBwdIn<T>& in, const RnnBwdOut<T>& o, int64_t b,
                                       T* smem, T* scratch, int64_t scratch_per_block) {
  constexpr bool kElig = has_eligibility(R);
  constexpr bool kMod = is_modulated(R);
  const int64_t N = p.N, NN = N * N, B = p.B, T_ = p.T_, K = p.K;
  const int n = static_cast<int>(N);
  const int c = clu.size(), r = clu.rank();
  const int j0 = static_cast<int>(col_begin(N, c, r));
  const int nc = static_cast<int>(col_begin(N, c, r + 1)) - j0;
  const int ncm = static_cast<int>(cluster_cols(N, c));
  const int L = seg_width(ncm), S = blk.nthreads() / L;
  const bool row_alpha = p.a_stride == 0;
  // Shared memory: the vectors (cluster_bwd_vec_elems), then (kBwdState and up) the adjoint state
  // slice, then (kBwdTraces) the chunk's traces. Slices are [N, nc] (ld nc).
  T* cur = smem;        // adjoint of h_t, this block's columns
  T* prev = cur + ncm;  // of h_{t-1}
  T* prev2 = prev + ncm;
  T* dM = prev2 + ncm;    // of m_t
  T* dMp = dM + ncm;      // of m_{t-1}
  T* da = dMp + ncm;      // of a_t
  T* dAcol = da + ncm;    // d alpha of these columns (a shared row)
  T* mcol = dAcol + ncm;  // the modulation of these columns in the pass's trace adjoint
  T* col_post = mcol + ncm;
  T* col_mod = col_post + S * ncm;
  T* col_A = col_mod + S * ncm;
  // The window the other blocks write (cluster_bwd_window): inbox, dsin, fin.
  T* inbox = col_A + S * ncm;
  T* dsin = inbox + 4 * c * ncm;  // [2 parities][c] the blocks' modulator parts
  T* fin = dsin + 2 * c;          // [c] (rank 0's): the blocks' d eta
  T* dloc = fin + c;              // [S + 1]
  int* row_slot = reinterpret_cast<int*>(dloc + S + 1);  // [N] owner_slot of every row
  T* after = dloc + S + 1 + N;
  const int64_t slice = int64_t{n} * nc;
  const int64_t state_elems = (kElig ? 2 : 1) * N * ncm;
  T* zeros = scratch + (b * c + r) * scratch_per_block;  // [N]: h_{-1} when h0 is not given
  T* gs = zeros + N;
  T* dH = kWhere >= kBwdState ? after : gs;
  T* dE = kElig ? dH + slice : nullptr;
  T* Hbuf =
      kWhere >= kBwdTraces ? after + state_elems : (kWhere >= kBwdState ? gs : gs + state_elems);
  T* Ebuf = Hbuf + K * slice;
  const ClusterBwdView<T> v{n,
                            c,
                            r,
                            j0,
                            nc,
                            ncm,
                            L,
                            S,
                            p.eta ? p.eta[b * p.eta_bstride] : T(0),
                            static_cast<T>(p.clip),
                            p.w + b * p.w_bstride + j0,
                            p.A + b * p.a_bstride + j0,
                            static_cast<int>(p.a_stride),
                            o.dA + b * NN + j0,
                            col_post,
                            col_mod,
                            col_A,
                            inbox,
                            dloc,
                            mcol,
                            row_slot};
  const T eta = v.eta, clip = v.clip;
  T* dmw = kMod ? o.dmw + b * N + j0 : nullptr;
  T* dfw = o.dfw ? o.dfw + b * N + j0 : nullptr;
  T* dfb = o.dfb ? o.dfb + b * N + j0 : nullptr;
  const int n_mod = static_cast<int>(N - p.n_unmod);

  {
    const T* gH = in.gH ? in.gH + b * NN + j0 : nullptr;
    const T* gE = in.gE ? in.gE + b * NN + j0 : nullptr;
    blk.for_each(n * nc, [&](int k) {
      const int i = k / nc, jl = k - i * nc, g = i * n + jl;
      dH[k] = gH ? gH[g] : T(0);
      if constexpr (kElig) dE[k] = gE ? gE[g] : T(0);
      if (!row_alpha) v.dA[g] = T(0);
    });
  }
  blk.for_each((8 + 3 * S) * ncm, [&](int k) { cur[k] = T(0); });
  blk.for_each(S + 1, [&](int k) { dloc[k] = T(0); });
  blk.for_each(n, [&](int i) { row_slot[i] = owner_slot(N, c, i); });
  blk.for_each(n, [&](int j) { zeros[j] = T(0); });
  blk.for_each(nc, [&](int jl) {
    if (kMod) dmw[jl] = T(0);
    if (dfw) {
      dfw[jl] = T(0);
      dfb[jl] = T(0);
    }
  });
  // Every block resident and initialised before the first remote write (a CUDA rule for DSMEM).
  clu.sync();

  auto h_at = [&](int64_t t) -> const T* {
    return t < 0 ? (p.h0 ? p.h0 + b * N : zeros) : in.h + (t * B + b) * N;
  };
  T dmb = T(0);  // identical in every thread of the cluster
  T ds = T(0);   // sum_j d m_t[j] fan_w[j] over the cluster, for the step about to run
  int par = 0;   // the inbox's parity for the next exchange

  // (modulated rules) Warp 0: the d m partials folded into dst (this block's columns), and this
  // block's part of the modulator's adjoint into every block's dsin[par] (rank order); the
  // unmodulated neurons' part of d eta stays in this block (dloc[S]).
  auto mod_parts = [&](T* dst) {
    blk.for_each_warp([&](const auto& warp, int w) {
      if (w != 0) return;
      const Vec<T, 2> d = warp.template sum<Vec<T, 2>>(nc, [&](int jl) {
        T sm = T(0);
        for (int q = 0; q < S; ++q) {
          sm += col_mod[q * ncm + jl];
          col_mod[q * ncm + jl] = T(0);
        }
        const T x = dst[jl] + sm;
        dst[jl] = x;
        const int j = j0 + jl;
        if (j >= n_mod) return Vec<T, 2>{{T(0), x}};
        return Vec<T, 2>{{p.fan_w ? x * p.fan_w[j] : x, T(0)}};
      });
      if (warp.leader()) {
        dloc[S] += d[1];
        for (int q = 0; q < c; ++q) clu.map(dsin, q)[par * c + r] = d[0];
      }
    });
  };
  // After the cluster barrier: the column partials into col_dst (and d alpha's shared row), the
  // senders' row sums of kind 0 into row0 and (with_row1) kind 1 into row1, in rank order;
  // with_mod: the blocks' modulator parts (mod_parts) into ds.
  auto fold = [&](T* col_dst, T* row0, T* row1, bool with_row1, bool spend, bool with_mod) {
    blk.for_each(nc, [&](int jl) {
      T sp = T(0), sa = T(0);
      for (int q = 0; q < S; ++q) {
        sp += col_post[q * ncm + jl];
        col_post[q * ncm + jl] = T(0);
        if (row_alpha) {
          sa += col_A[q * ncm + jl];
          col_A[q * ncm + jl] = T(0);
        }
      }
      const T* box = inbox + (par * 2) * c * ncm + jl;
      T s0 = T(0), s1 = T(0);
      for (int q = 0; q < c; ++q) {
        s0 += box[q * ncm];
        if (with_row1) s1 += box[(c + q) * ncm];
      }
      col_dst[jl] += sp;
      row0[jl] += s0;
      if (with_row1) row1[jl] += s1;
      if (row_alpha) dAcol[jl] += sa;
      if (spend) {  // the adjoints of h_t and m_t are spent: zero for their next use
        cur[jl] = T(0);
        dM[jl] = T(0);
      }
    });
    if (with_mod) {
      T x = T(0);
      for (int q = 0; q < c; ++q) x += dsin[par * c + q];
      ds = x;
    }
    par ^= 1;
  };

  const int64_t n_chunks = (T_ + K - 1) / K;
  for (int64_t ch = n_chunks - 1; ch >= 0; --ch) {
    const int64_t t0 = ch * K, t1 = (t0 + K < T_) ? t0 + K : T_;
    // The chunk's traces of this block's columns from the checkpoint: each item walks its element
    // through the chunk's steps (no barrier inside).
    {
      const T* cH = in.ck_h + (ch * B + b) * NN + j0;
      const T* cE = kElig ? in.ck_e + (ch * B + b) * NN + j0 : nullptr;
      // The h pointers and the modulator step once per step, the column's fan-out sits in
      // registers (the first version formed h_at(t) and the modulation per element and step: 90
      // instructions per element and step, NOTES.md M11).
      const T* h_first = h_at(t0 - 1);
      const T* h_next = in.h + (t0 * B + b) * N;
      const T* mod_first = kMod ? in.mod + t0 * B + b : nullptr;
      const int64_t h_stride = B * N;
      blk.for_each(n * nc, [&](int k) {
        const int i = k / nc, jl = k - i * nc, j = j0 + jl;
        T hij = cH[i * n + jl];
        T eij = kElig ? cE[i * n + jl] : T(0);
        Hbuf[k] = hij;
        if constexpr (kElig) Ebuf[k] = eij;
        [[maybe_unused]] const ColumnModulation<T> cm = column_modulation<R>(p, j, eta);
        const T* hpre = h_first;
        const T* hpost = h_next;
        [[maybe_unused]] const T* ms = mod_first;
        T* Hn = Hbuf + k;
        [[maybe_unused]] T* En = Ebuf + k;
        for (int64_t t = t0; t < t1 - 1; ++t) {
          T m = T(0);
          if constexpr (kMod) {
            m = cm.at(*ms);
            ms += B;
          }
          trace_forward_inv<R>(hij, eij, hpre[i], hpost[j], m, eta, clip, p.inv_clip);
          Hn += slice;
          *Hn = hij;
          if constexpr (kElig) {
            En += slice;
            *En = eij;
          }
          hpre = hpost;
          hpost += h_stride;
        }
      });
      // m_t of these columns for the rule pass below.
      if constexpr (kMod) {
        const T mt = in.mod[(t1 - 1) * B + b];
        blk.for_each(nc, [&](int jl) { mcol[jl] = modulation_at<R>(p, j0 + jl, mt, eta); });
      }
    }
    blk.sync();
    // The last step of the chunk: its trace-update adjoint on its own (the step after it, which
    // would fuse it, is in the next chunk).
    {
      const int64_t t = t1 - 1, s = t - t0;
      cluster_rule_pass<R>(blk, clu, p, v, par, Hbuf + s * slice, Ebuf + s * slice, h_at(t - 1),
                           h_at(t), dH, dE);
      if constexpr (kMod) {
        blk.sync();
        mod_parts(dM);
      }
      clu.sync();
      fold(cur, prev, nullptr, false, false, kMod);
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t s = t - t0;
      const T* hc = h_at(t);
      // The column phase: the adjoint of h_t of these columns completed, then da_t.
      {
        const T* g = in.gh ? in.gh + (t * B + b) * N + j0 : nullptr;
        const bool* c_t = p.clamp ? p.clamp + (t * B + b) * N + j0 : nullptr;
        T sm = T(0), dz = T(0), m_prev = T(0);
        if constexpr (kMod) {
          sm = in.mod[t * B + b];
          if (t > t0) m_prev = in.mod[(t - 1) * B + b];
          dz = ds * squash_grad_from_output(p.squash, sm);
          dmb += dz;
        }
        T* du = o.du + (t * B + b) * N + j0;
        T* dao = o.da + (t * B + b) * N + j0;
        blk.for_each(nc, [&](int jl) {
          const int j = j0 + jl;
          T x = cur[jl];
          if (g) x += g[jl];
          if constexpr (kMod) {
            if (dfw && j < n_mod) {
              dfw[jl] += dM[jl] * sm;
              dfb[jl] += dM[jl];
            }
            x += dz * p.mod_w[j];
            dmw[jl] += dz * hc[j];
          }
          cur[jl] = x;
          if constexpr (kMod) {
            if (t > t0) mcol[jl] = modulation_at<R>(p, j, m_prev, eta);  // for the fused pass
          }
          const bool clamped = c_t && c_t[jl];
          const T d = clamped ? T(0) : x * act_grad_from_output(p.act, hc[j]);
          da[jl] = d;
          du[jl] = clamped ? x : d;
          dao[jl] = d;
        });
      }
      blk.sync();
      const T* Hp = Hbuf + s * slice;
      const bool fused = t > t0;  // step t-1's trace-update adjoint joins this pass
      if (fused) {
        const T* Hpp = Hbuf + (s - 1) * slice;
        const T* Epp = Ebuf + (s - 1) * slice;
        if (row_alpha)
          cluster_row_pass<R, true, true>(blk, clu, p, v, par, Hp, h_at(t - 1), da, dH, dE, Hpp,
                                          Epp, h_at(t - 2));
        else
          cluster_row_pass<R, true, false>(blk, clu, p, v, par, Hp, h_at(t - 1), da, dH, dE, Hpp,
                                           Epp, h_at(t - 2));
        if constexpr (kMod) {
          blk.sync();
          mod_parts(dMp);
        }
      } else {
        const T* none = nullptr;
        if (row_alpha)
          cluster_row_pass<R, false, true>(blk, clu, p, v, par, Hp, h_at(t - 1), da, dH, dE, none,
                                           none, none);
        else
          cluster_row_pass<R, false, false>(blk, clu, p, v, par, Hp, h_at(t - 1), da, dH, dE, none,
                                            none, none);
      }
      clu.sync();
      fold(prev, prev, prev2, fused, true, kMod && fused);
      T* spent = cur;
      cur = prev;
      prev = prev2;
      prev2 = spent;
      T* m = dM;
      dM = dMp;
      dMp = m;
    }
  }
  blk.for_each(nc, [&](int jl) {
    o.dh0[b * N + j0 + jl] = cur[jl];
    if (row_alpha) o.dA[b * N + j0 + jl] = dAcol[jl];
  });
  {
    T* dH0 = o.dH0 + b * NN + j0;
    T* dE0 = kElig ? o.dE0 + b * NN + j0 : nullptr;
    blk.for_each(n * nc, [&](int k) {
      const int i = k / nc, jl = k - i * nc;
      dH0[i * n + jl] = dH[k];
      if constexpr (kElig) dE0[i * n + jl] = dE[k];
    });
  }
  // d eta: this block's parts (segments in order, then the unmodulated neurons') into rank 0.
  blk.single([&] {
    T de = T(0);
    for (int q = 0; q < S; ++q) de += dloc[q];
    clu.map(fin, 0)[r] = de + dloc[S];
  });
  clu.sync();
  if (r == 0) {
    blk.single([&] {
      T de = T(0);
      for (int q = 0; q < c; ++q) de += fin[q];
      o.deta[b] = de;
      if (o.dmb) o.dmb[b] = dmb;
    });
  }
}

// The cluster backward's grid: c consecutive blocks per sample, as the cluster forward's.
template <Rule R, int kWhere, typename T, typename Blk, typename Clu>
HK_DEVICE void plastic_rnn_backward_cluster_kernel(const Blk& blk, const Clu& clu,
                                                   const RnnParams<T>& p, const RnnBwdIn<T>& in,
                                                   const RnnBwdOut<T>& o, const BlockIdx& idx,
                                                   T* smem, T* scratch, int64_t scratch_per_block) {
  backward_cluster_sample<R, kWhere>(blk, clu, p, in, o, idx.x / clu.size(), smem, scratch,
                                     scratch_per_block);
}

// The instantiation for a kBwd* value, chosen in one place for the CUDA launch and the emulation.
template <typename F>
decltype(auto) visit_bwd_where(int where, F&& f) {
  switch (where) {
    case kBwdTraces: return f(std::integral_constant<int, kBwdTraces>{});
    case kBwdState: return f(std::integral_constant<int, kBwdState>{});
    default: return f(std::integral_constant<int, kBwdGlobal>{});
  }
}

}  // namespace hebbkern::simt
