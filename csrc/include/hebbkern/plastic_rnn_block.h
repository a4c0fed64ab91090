// The plastic recurrent layer (SPEC.md section 1) as the work of ONE thread block on ONE sample,
// written against the Block interface of simt.h: csrc/cuda/plastic_rnn.cu runs it as the CUDA
// kernels (one block per sample, all T steps in one launch), csrc/cpu/plastic_rnn_emulated.cpp
// runs the very same code on the CPU for the tests. The per-element rule math comes from
// plastic_rules.h, shared with the CPU kernels.
//
// Forward, per step, ONE pass over the trace: thread (g, j) owns column j of row group g; for each
// of its rows it applies the pending update of step t-1 (which needed all of h_{t-1}), writes the
// checkpoint, and accumulates the mat-vec. Partial sums over the row groups are added in a fixed
// order by the next phase, so the result does not depend on scheduling.
//
// Backward, as on the CPU: per chunk of K steps (last to first) the traces are recomputed from the
// checkpoint into global scratch, then the steps are walked back. One pass over the rows per step
// fuses the mat-vec adjoint of step t and the trace-update adjoint of step t-1; warp w owns rows
// w, w + W, ...; sums along a row are warp butterflies, sums down a column go to per-warp partial
// rows that a later phase adds in warp order. Nothing uses atomics: every gradient is
// bit-reproducible.
//
// Working set: the small vectors, and the [N, N] state (trace and eligibility, or their adjoints),
// live in shared memory when they fit (Placement), else in global memory (per-sample scratch or the
// output tensors themselves). The code is the same either way; only the pointers differ. The
// forward has one instantiation per placement (kWhere, fwd_where): with the state in shared
// memory known at compile time the trace is addressed with LDS/STS, and where the sample's w and
// alpha fit next to it they are loaded into shared memory once and read from there every step
// (issue 13 item 1; NOTES.md M8).
//
// Offsets within a sample (i * N + j, an element k of the [N, N] state, a row's column j) are
// 32-bit ints in the step loops; the sample's and the step's bases (b * N * N, a checkpoint's
// slot) are 64-bit and added to a pointer once, outside the per-element loops. 64-bit indices made
// about 60% of the hot loops' instructions address arithmetic (NOTES.md M1, M7). The launch refuses
// N with N * N >= 2^31 (offsets_fit_int32).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "hebbkern/plastic_rnn_io.h"
#include "hebbkern/plastic_rules.h"
#include "hebbkern/simt.h"

namespace hebbkern::simt {

template <typename T>
struct RnnParams : RnnInputs<T> {
  const T* eta;  // one element (or [B], eta_bstride 1), read by the kernel (no host sync), or null
  const T* mod_b;  // one element or null
};

// Where one block keeps its working set, and how much memory that takes.
struct Placement {
  int threads;                  // block size, a multiple of 32
  bool vec_in_smem;             // small vectors and partial sums
  bool state_in_smem;           // the [N, N] state (needs vec_in_smem)
  int64_t smem_bytes;           // dynamic shared memory per block
  int64_t scratch_per_sample;   // elements of global scratch per sample
  bool params_in_smem = false;  // w and alpha too, loaded once (needs state_in_smem)
};

// The forward's instantiations (template argument kWhere), chosen by the launch from the
// placement: the working set's place known at compile time lets the compiler address it as
// shared memory.
constexpr int kWhereRuntime = 0;  // vectors and state where the placement says, at run time
constexpr int kWhereState = 1;    // vectors and state in shared memory
constexpr int kWhereParams = 2;   // vectors, state, w and alpha in shared memory

HK_HOST_DEVICE int fwd_where(const Placement& pl) {
  return pl.params_in_smem ? kWhereParams : pl.state_in_smem ? kWhereState : kWhereRuntime;
}

// Whether every offset within one sample's [N, N] state fits a 32-bit int: the step loops' index
// type (checked by the launch, csrc/plastic_rnn_simt.cpp, before any kernel runs).
HK_HOST_DEVICE bool offsets_fit_int32(int64_t N) { return N >= 0 && N * N < (int64_t{1} << 31); }

// Row groups of the forward pass: enough (group, column) items to fill the block.
HK_HOST_DEVICE int64_t fwd_groups(int64_t N, int threads) {
  const int64_t g = threads / N;
  return g < 1 ? 1 : (g > N ? N : g);
}

HK_HOST_DEVICE int64_t fwd_vec_elems(int64_t N, int threads) {
  return 4 * N + fwd_groups(N, threads) * N + kMaxWarps;
}

HK_HOST_DEVICE int64_t bwd_vec_elems(int64_t N, int threads) {
  const int64_t W = threads / kWarpSize;
  return 8 * N + 3 * W * N + W + kMaxWarps;
}

// `elig`: the rule keeps an eligibility trace; `smem_budget`: bytes of shared memory a block may
// use on this device; `params`: elements of the sample's w and alpha (N * N + N * N, or N * N + N
// for one shared alpha row) kept in shared memory when they fit after the vectors and the state
// (the backward of a population passes 0: its per-sample w and alpha stay in global memory).
inline Placement place(bool backward, int64_t N, int64_t K, bool elig, int threads,
                       int64_t smem_budget, int64_t elem_bytes, int64_t params = 0) {
  const int64_t vec = backward ? bwd_vec_elems(N, threads) : fwd_vec_elems(N, threads);
  const int64_t state = (elig ? 2 : 1) * N * N;
  Placement p{threads, false, false, 0, 0};
  if ((vec + state) * elem_bytes <= smem_budget) {
    p.vec_in_smem = p.state_in_smem = true;
    p.smem_bytes = (vec + state) * elem_bytes;
    if (params > 0 && (vec + state + params) * elem_bytes <= smem_budget) {
      p.params_in_smem = true;
      p.smem_bytes += params * elem_bytes;
    }
  } else if (vec * elem_bytes <= smem_budget) {
    p.vec_in_smem = true;
    p.smem_bytes = vec * elem_bytes;
  }
  p.scratch_per_sample = (p.vec_in_smem ? 0 : vec) + (backward ? (elig ? 2 : 1) * K * N * N : 0);
  return p;
}

HK_DEVICE float tanh_t(float x) { return ::tanhf(x); }
HK_DEVICE double tanh_t(double x) { return ::tanh(x); }

// The modulation of post neuron j from the squashed modulator s: the fan-out, or eta for the last
// p.n_unmod (unmodulated) neurons (SPEC.md section 1.1).
// Only rule neuromod has unmodulated neurons (the ops check it): the other rules skip the test,
// which keeps a register free in the float64 backward of retro_soft.
template <Rule R, typename T, typename I>
HK_DEVICE T modulation_at(const RnnParams<T>& p, I j, T s, T eta) {
  if constexpr (hard_rule(R) == Rule::Neuromod) {
    if (j >= static_cast<I>(p.N - p.n_unmod)) return eta;
  }
  return p.fan_w ? p.fan_w[j] * s + p.fan_b[j] : s;
}

// --------------------------------------------------------------------------------------------
// Forward

// kWhere (kWhere*, fwd_where): where the working set lives, known at compile time, so that every
// pointer into shared memory derives from the kernel's __shared__ array alone and the compiler
// addresses it with LDS/STS and 32-bit shared-memory addresses instead of generic LD/ST (NOTES.md
// M7, M8). kWhereRuntime chooses between shared and global memory at run time (the state in
// global memory: N > 238 on sm_90 in float32). kWhereParams also copies this sample's w and alpha
// into shared memory once, after the state, and reads them from there every step: no global
// loads are left in the step's pass over the trace.
template <Rule R, int kWhere, typename T, typename Blk>
HK_DEVICE void forward_sample(const Blk& blk, const RnnParams<T>& p, const RnnFwdOut<T>& o,
                              int64_t b, const Placement& pl, T* smem, T* scratch) {
  constexpr bool kSmem = kWhere >= kWhereState;
  constexpr bool kParams = kWhere == kWhereParams;
  constexpr bool kElig = has_eligibility(R);
  constexpr bool kMod = is_modulated(R);
  const int64_t N = p.N, NN = N * N, B = p.B;
  const int n = static_cast<int>(N), nn = n * n;  // 32-bit offsets within the sample
  const int G = static_cast<int>(fwd_groups(N, blk.nthreads()));
  const int rows = (n + G - 1) / G;
  const int a_stride = static_cast<int>(p.a_stride);  // N or 0
  const bool vec_smem = kSmem || pl.vec_in_smem;
  const bool state_smem = kSmem || pl.state_in_smem;
  T* vec = vec_smem ? smem : scratch + b * pl.scratch_per_sample;
  T* hv = vec;            // ring of three activity vectors: h_{t-2}, h_{t-1}, h_t
  T* M = hv + 3 * N;      // m_t per post neuron
  T* part = M + N;        // [G, N] partial mat-vec sums
  T* red = part + G * N;  // block reductions
  T* state = red + kMaxWarps;
  T* H = state_smem ? state : o.hebb_T + b * NN;
  T* E = kElig ? (state_smem ? state + NN : o.elig_T + b * NN) : nullptr;
  const T eta = p.eta ? p.eta[b * p.eta_bstride] : T(0);  // this sample's
  const T mod_b = p.mod_b ? *p.mod_b : T(0);
  const T clip = p.clip;
  // This sample's w and alpha (per-sample strides 0 when the batch shares them), and with
  // kParams their copies in shared memory after the state: w [N, N], alpha [N, N] or one row.
  const T* wg = p.w + b * p.w_bstride;
  const T* Ag = p.A + b * p.a_bstride;
  T* w_s = state + (kElig ? 2 : 1) * NN;
  T* A_s = w_s + NN;
  const T* w = kParams ? w_s : wg;
  const T* A = kParams ? A_s : Ag;

  {
    const T* H0 = p.hebb0 ? p.hebb0 + b * NN : nullptr;
    const T* E0 = p.elig0 ? p.elig0 + b * NN : nullptr;
    blk.for_each(nn, [&](int k) {
      H[k] = H0 ? H0[k] : T(0);
      if constexpr (kElig) E[k] = E0 ? E0[k] : T(0);
      if constexpr (kParams) {
        w_s[k] = wg[k];
        if (a_stride) A_s[k] = Ag[k];
      }
    });
  }
  blk.for_each(N, [&](int64_t j) {
    if constexpr (kParams) {
      if (!a_stride) A_s[j] = Ag[j];
    }
    hv[j] = T(0);
    hv[N + j] = p.h0 ? p.h0[b * N + j] : T(0);
    hv[2 * N + j] = T(0);
    M[j] = T(0);
  });
  blk.sync();

  int ipp = 0, ip = 1, ic = 2;  // ring slots of h_{t-2}, h_{t-1}, h_t
  for (int64_t t = 0; t < p.T_; ++t) {
    const bool pending = t > 0;  // the update of step t-1 is still to be applied
    const bool ck = (t % p.K) == 0;
    T* ckH = ck ? o.ck_h + ((t / p.K) * B + b) * NN : nullptr;
    T* ckE = (ck && kElig) ? o.ck_e + ((t / p.K) * B + b) * NN : nullptr;
    const T* hpp = hv + ipp * N;
    const T* hp = hv + ip * N;
    blk.for_each(G * n, [&](int k) {
      const int g = k / n, j = k - g * n;
      const int i0 = g * rows, i1 = (i0 + rows < n) ? i0 + rows : n;
      const T post = hp[j], m = M[j];
      T acc = T(0);
      for (int i = i0; i < i1; ++i) {
        const int e = i * n + j;
        T hij = H[e];
        if (pending) {
          T eij = kElig ? E[e] : T(0);
          trace_forward_inv<R>(hij, eij, hpp[i], post, m, eta, clip, p.inv_clip);
          H[e] = hij;
          if constexpr (kElig) E[e] = eij;
        }
        if (ckH) {
          ckH[e] = hij;
          if constexpr (kElig) ckE[e] = E[e];
        }
        acc += hp[i] * (w[e] + A[i * a_stride + j] * hij);
      }
      part[k] = acc;
    });
    blk.sync();
    T* hc = hv + ic * N;
    const T* u_t = p.u + (t * B + b) * N;
    const bool* c_t = p.clamp ? p.clamp + (t * B + b) * N : nullptr;
    blk.for_each(N, [&](int64_t j) {
      T a = u_t[j];
      for (int64_t g = 0; g < G; ++g) a += part[g * N + j];
      const T y = (c_t && c_t[j]) ? u_t[j] : (p.act == 0 ? tanh_t(a) : act_forward(p.act, a));
      hc[j] = y;
      o.h[(t * B + b) * N + j] = y;
    });
    blk.sync();
    if constexpr (kMod) {
      const T z = blk.sum(N, [&](int64_t j) { return hc[j] * p.mod_w[j]; }, red) + mod_b;
      const T s = p.squash == 0 ? tanh_t(z) : squash_forward(p.squash, z);
      blk.single([&] { o.mod[t * B + b] = s; });
      blk.for_each(N, [&](int64_t j) { M[j] = modulation_at<R>(p, j, s, eta); });
      blk.sync();
    }
    const int old = ipp;
    ipp = ip;
    ip = ic;
    ic = old;
  }
  // The update of the last step, and the final state out of shared memory.
  const T* hpp = hv + ipp * N;
  const T* hp = hv + ip * N;
  T* hT = o.hebb_T + b * NN;
  T* eT = kElig ? o.elig_T + b * NN : nullptr;
  blk.for_each(nn, [&](int k) {
    const int i = k / n, j = k - i * n;
    T hij = H[k];
    T eij = kElig ? E[k] : T(0);
    trace_forward_inv<R>(hij, eij, hpp[i], hp[j], M[j], eta, clip, p.inv_clip);
    if (state_smem) {
      hT[k] = hij;
      if constexpr (kElig) eT[k] = eij;
    } else {
      H[k] = hij;
      if constexpr (kElig) E[k] = eij;
    }
  });
}

// --------------------------------------------------------------------------------------------
// Forward over a cluster: c thread blocks per sample (issue 13 item 2; NOTES.md M9)
//
// Block r of the sample's cluster owns the post-synaptic columns [j0, j1) = [col_begin(N, c, r),
// col_begin(N, c, r + 1)) of the [N, N] trace (and eligibility), keeps that slice (and, where it
// fits, its columns of w and alpha) in its own shared memory, and keeps ALL of h in a ring of
// three vectors (h_{t-2}, h_{t-1}, h_t). A step:
//   1. one pass over its columns: the pending update of step t-1 (it needs h_{t-2} for every row
//      and h_{t-1}, m_{t-1} for its columns), the checkpoint of its columns (the usual global
//      layout), the mat-vec partials of its columns per row group;      -> block barrier
//   2. h_t for its columns (the row groups added in order), written into the h_t slot of EVERY
//      block of the cluster (distributed shared memory); -> cluster barrier; then to the output;
//   3. (modulated rules) every warp of every block computes the modulator's dot product mod_w . h_t
//      over the whole h_t itself (lane-strided, xor butterfly; warp_sum_all): the same code on the
//      same data, so every thread of the cluster holds the same bits of s_t, with no barrier and
//      no exchange; m_t is formed from it per column where the next pass needs it.
// Two barriers per step (one block, one cluster), with or without the modulator.
//
// Why no barrier protects the h ring: block r writes h_t into block q's slot of h_{t-3} after the
// cluster barrier of step t-1, which q reached only after its last read of h_{t-3} (step t-1's
// pass). Nothing else is written remotely. The cluster barrier after the initialisation makes every
// block of the cluster resident before the first remote write (a CUDA requirement) and orders the
// initialisation before it; the cluster barrier of the last step orders every remote write before
// any block exits. Slots 0 and 2 of the ring are not initialised: they are written (h_0, h_1) by
// the cluster before they are read, and in the emulation an unwritten read shows as NaN.
//
// The final states, the checkpoints and h land in the same global layout as the one-block forward,
// so the one-block backward runs unchanged after a cluster forward. Results do not depend on
// scheduling: no atomics, every sum in a fixed order (but in a different grouping from the
// one-block forward's: the bits differ from it by rounding).

// The first column of block r of c (balanced: the blocks' widths differ by at most one; a block
// owns none when N < c).
HK_HOST_DEVICE int64_t col_begin(int64_t N, int c, int r) { return N * r / c; }

// The most columns one block of c owns.
HK_HOST_DEVICE int64_t cluster_cols(int64_t N, int c) { return (N + c - 1) / c; }

// Row groups of a cluster block's pass over its columns: enough (group, column) items to fill the
// block, the same in every block of the cluster (from the widest block's columns).
HK_HOST_DEVICE int64_t cluster_groups(int64_t N, int c, int threads) {
  const int64_t nc = cluster_cols(N, c);
  const int64_t g = threads / (nc < 1 ? 1 : nc);
  return g < 1 ? 1 : (g > N ? N : g);
}

// The small vectors of a cluster block: the h ring (3 N) and the [G, columns] partial sums.
HK_HOST_DEVICE int64_t cluster_vec_elems(int64_t N, int c, int threads) {
  return 3 * N + cluster_groups(N, c, threads) * cluster_cols(N, c);
}

// Where a cluster forward keeps its working set (every block the same layout, from the widest
// block's columns, so that an offset into one block's shared memory names the same thing in all).
struct ClusterPlacement {
  int c;               // blocks per sample (a cluster of c; 1: the one-block forward, `place`)
  int threads;         // per block
  int where;           // kWhereParams, kWhereState, or kWhereRuntime: the state in global memory
  int64_t smem_bytes;  // dynamic shared memory per block
};

// `row_alpha`: alpha is one shared row (per-neuron or scalar), else [N, N] (per connection).
// kWhereRuntime here means the vectors in shared memory and the state slice in global memory (the
// output tensors themselves); a cluster whose vectors do not fit is not possible (c = 0).
inline ClusterPlacement place_cluster(int64_t N, bool elig, bool row_alpha, int c, int threads,
                                      int64_t smem_budget, int64_t elem_bytes) {
  const int64_t nc = cluster_cols(N, c);
  const int64_t vec = cluster_vec_elems(N, c, threads);
  const int64_t state = (elig ? 2 : 1) * N * nc;
  const int64_t params = N * nc + (row_alpha ? nc : N * nc);
  ClusterPlacement p{c, threads, kWhereRuntime, vec * elem_bytes};
  if ((vec + state + params) * elem_bytes <= smem_budget) {
    p.where = kWhereParams;
    p.smem_bytes = (vec + state + params) * elem_bytes;
  } else if ((vec + state) * elem_bytes <= smem_budget) {
    p.where = kWhereState;
    p.smem_bytes = (vec + state) * elem_bytes;
  } else if (vec * elem_bytes > smem_budget) {
    p.c = 0;
  }
  return p;
}

// The part of a cluster forward block's shared memory the other blocks write (through
// Cluster::map): the ring of three activity vectors at its start. A grid-synchronised cluster
// (simt::Mailbox) keeps a mailbox of these bytes per block.
HK_HOST_DEVICE Mailbox cluster_fwd_window(int64_t N, int64_t elem_bytes) {
  return {nullptr, nullptr, 0, 3 * N * elem_bytes, 0};
}

// What the device offers a launch: its SM count and the largest cluster (1: none; 8: the portable
// limit; 16 with cudaFuncAttributeNonPortableClusterSizeAllowed). `global_sync`: the cluster's
// blocks synchronise through global memory (CudaGridCluster: below sm_90), so every block of the
// launch must be resident at once: the rules keep B * c <= sm_count.
struct LaunchCaps {
  int64_t sm_count;
  int cluster_max;
  bool global_sync = false;
  bool cooperative = false;  // the device takes cooperative launches (what global_sync needs)
};

// Blocks synchronised through global memory wait for each other at every barrier: the launch
// (cooperative) needs them all resident, one SM each at most counted, so c halves while
// B * c > sm_count or its placement does not fit (`where(c) < 0`); c = 1 is the one-block kernel.
template <typename Where>
int coresident(int c, int64_t B, const LaunchCaps& caps, Where&& where) {
  if (!caps.global_sync) return c;
  while (c > 1 && (B * c > caps.sm_count || where(c) < 0)) c /= 2;
  return c;
}

// The launch rule of the forward: blocks per sample (c = 1: the one-block forward). Mirrored by
// plan_launch in benchmarks/perf_model_launch.py (tested against each other):
//   1. c0 = the smallest power of two (1 .. cluster_max) whose slice keeps the state, w and alpha
//      in shared memory; if none, the smallest that keeps the state; if none, cluster_max (the
//      state in global memory, spread over the most SMs).
//   2. While the batch leaves SMs idle (B * 2c <= sm_count), 2c <= cluster_max and every block
//      keeps at least kMinCols = 8 columns (2c * 8 <= N): c doubles.
//   3. With blocks synchronised through global memory (caps.global_sync, below sm_90): c halves
//      until the launch's B * c blocks fit the SMs at once (coresident).
// Without clusters (cluster_max 1) c stays 1.
inline int plan_cluster(int64_t B, int64_t N, bool elig, bool row_alpha, int threads,
                        int64_t smem_budget, int64_t elem_bytes, const LaunchCaps& caps) {
  if (caps.cluster_max < 2 || B < 1 || N < 1) return 1;
  auto where = [&](int c) -> int {
    if (c == 1) {
      const int64_t params = N * N + (row_alpha ? N : N * N);
      return fwd_where(place(false, N, 1, elig, threads, smem_budget, elem_bytes, params));
    }
    const ClusterPlacement p =
        place_cluster(N, elig, row_alpha, c, threads, smem_budget, elem_bytes);
    return p.c == 0 ? -1 : p.where;
  };
  // ASSUMED (to be measured): a block is worth its cluster barrier with at least this many
  // columns; below it, spreading a sample wider is not done.
  constexpr int64_t kMinCols = 8;
  int c = 0;
  for (const int want : {kWhereParams, kWhereState}) {
    for (int k = 1; k <= caps.cluster_max && c == 0; k *= 2)
      if (where(k) == want) c = k;
    if (c) break;
  }
  if (c == 0) {
    c = 1;
    while (2 * c <= caps.cluster_max && 2 * c * kMinCols <= N) c *= 2;
    if (where(c) < 0) return 1;
  }
  while (2 * c <= caps.cluster_max && 2 * c * kMinCols <= N && B * 2 * c <= caps.sm_count) c *= 2;
  return coresident(c, B, caps, where);
}

template <Rule R, int kWhere, typename T, typename Blk, typename Clu>
HK_DEVICE void forward_cluster_sample(const Blk& blk, const Clu& clu, const RnnParams<T>& p,
                                      const RnnFwdOut<T>& o, int64_t b, T* smem) {
  constexpr bool kSmem = kWhere >= kWhereState;
  constexpr bool kParams = kWhere == kWhereParams;
  constexpr bool kElig = has_eligibility(R);
  constexpr bool kMod = is_modulated(R);
  const int64_t N = p.N, NN = N * N, B = p.B;
  const int n = static_cast<int>(N);  // 32-bit offsets within the sample
  const int c = clu.size(), r = clu.rank();
  const int j0 = static_cast<int>(col_begin(N, c, r));
  const int nc = static_cast<int>(col_begin(N, c, r + 1)) - j0;  // this block's columns
  const int ncm = static_cast<int>(cluster_cols(N, c));          // the widest block's
  const int G = static_cast<int>(cluster_groups(N, c, blk.nthreads()));
  const int rows = (n + G - 1) / G;
  const int a_stride = static_cast<int>(p.a_stride);  // N or 0
  T* hv = smem;               // ring of three activity vectors, all N neurons (cluster_fwd_window)
  T* part = hv + 3 * n;       // [G, nc] partial mat-vec sums
  T* state = part + G * ncm;  // [N, nc] trace slice, then the eligibility slice
  // Element (i, jl) of this block's columns is at i * ld + jl: the slice in shared memory (ld nc),
  // or the output tensor itself in global memory (ld N, from column j0).
  const int ld = kSmem ? nc : n;
  T* H = kSmem ? state : o.hebb_T + b * NN + j0;
  T* E = kElig ? (kSmem ? state + n * ncm : o.elig_T + b * NN + j0) : nullptr;
  const T eta = p.eta ? p.eta[b * p.eta_bstride] : T(0);  // this sample's
  const T mod_b = p.mod_b ? *p.mod_b : T(0);
  const T clip = p.clip;
  // This sample's w and alpha from column j0 (row i at + i * N, alpha's at + i * a_stride), and
  // with kParams this block's columns of them in shared memory after the state (ld nc; one row
  // of nc for a shared alpha row).
  const T* wg = p.w + b * p.w_bstride + j0;
  const T* Ag = p.A + b * p.a_bstride + j0;
  T* w_s = state + (kElig ? 2 : 1) * n * ncm;
  T* A_s = w_s + n * ncm;
  const T* w = kParams ? w_s : wg;
  const T* A = kParams ? A_s : Ag;
  const int wld = kParams ? nc : n;
  const int ald = kParams ? (a_stride ? nc : 0) : a_stride;

  {
    const T* H0 = p.hebb0 ? p.hebb0 + b * NN + j0 : nullptr;
    const T* E0 = p.elig0 ? p.elig0 + b * NN + j0 : nullptr;
    blk.for_each(n * nc, [&](int k) {
      const int i = k / nc, jl = k - i * nc, e = i * ld + jl, g = i * n + jl;
      H[e] = H0 ? H0[g] : T(0);
      if constexpr (kElig) E[e] = E0 ? E0[g] : T(0);
      if constexpr (kParams) {
        w_s[i * nc + jl] = wg[g];
        if (a_stride) A_s[i * nc + jl] = Ag[i * a_stride + jl];
      }
    });
  }
  blk.for_each(n, [&](int j) {
    if constexpr (kParams) {
      if (!a_stride && j < nc) A_s[j] = Ag[j];
    }
    // h_{-1}; the other two slots come from the cluster. Written through map like every write
    // into the ring (a grid-synchronised cluster's barrier copies its mailbox over the ring).
    clu.map(hv, r)[n + j] = p.h0 ? p.h0[b * N + j] : T(0);
  });
  clu.sync();

  int ipp = 0, ip = 1, ic = 2;  // ring slots of h_{t-2}, h_{t-1}, h_t
  T s = T(0);  // the squashed modulator of the last step: the same bits in every thread
  for (int64_t t = 0; t < p.T_; ++t) {
    const bool pending = t > 0;  // the update of step t-1 is still to be applied
    const bool ck = (t % p.K) == 0;
    T* ckH = ck ? o.ck_h + ((t / p.K) * B + b) * NN + j0 : nullptr;
    T* ckE = (ck && kElig) ? o.ck_e + ((t / p.K) * B + b) * NN + j0 : nullptr;
    const T* hpp = hv + ipp * n;
    const T* hp = hv + ip * n;
    blk.for_each(G * nc, [&](int k) {
      const int g = k / nc, jl = k - g * nc, j = j0 + jl;
      const int i0 = g * rows, i1 = (i0 + rows < n) ? i0 + rows : n;
      const T post = hp[j];
      T m = T(0);
      if constexpr (kMod) m = modulation_at<R>(p, j, s, eta);
      T acc = T(0);
      for (int i = i0; i < i1; ++i) {
        const int e = i * ld + jl;
        T hij = H[e];
        if (pending) {
          T eij = kElig ? E[e] : T(0);
          trace_forward_inv<R>(hij, eij, hpp[i], post, m, eta, clip, p.inv_clip);
          H[e] = hij;
          if constexpr (kElig) E[e] = eij;
        }
        if (ckH) {
          ckH[i * n + jl] = hij;
          if constexpr (kElig) ckE[i * n + jl] = E[e];
        }
        acc += hp[i] * (w[i * wld + jl] + A[i * ald + jl] * hij);
      }
      part[k] = acc;
    });
    blk.sync();
    T* hc = hv + ic * n;
    const T* u_t = p.u + (t * B + b) * N;
    const bool* c_t = p.clamp ? p.clamp + (t * B + b) * N : nullptr;
    blk.for_each(nc, [&](int jl) {
      const int j = j0 + jl;
      T a = u_t[j];
      for (int g = 0; g < G; ++g) a += part[g * nc + jl];
      const T y = (c_t && c_t[j]) ? u_t[j] : (p.act == 0 ? tanh_t(a) : act_forward(p.act, a));
      for (int q = 0; q < c; ++q) clu.map(hc, q)[j] = y;
    });
    clu.sync();
    // The output after the barrier, not before: the cluster barrier's release on sm_90 is a
    // MEMBAR.ALL.GPU that waits for the block's outstanding global stores (NOTES.md M9).
    blk.for_each(nc, [&](int jl) { o.h[(t * B + b) * N + j0 + jl] = hc[j0 + jl]; });
    if constexpr (kMod) {
      const T z =
          blk.template warp_sum_all<T>(n, [&](int j) { return hc[j] * p.mod_w[j]; }) + mod_b;
      s = p.squash == 0 ? tanh_t(z) : squash_forward(p.squash, z);
      if (r == 0) blk.single([&] { o.mod[t * B + b] = s; });
    }
    const int old = ipp;
    ipp = ip;
    ip = ic;
    ic = old;
  }
  // The update of the last step, and the final state of this block's columns.
  const T* hpp = hv + ipp * n;
  const T* hp = hv + ip * n;
  T* hT = o.hebb_T + b * NN + j0;
  T* eT = kElig ? o.elig_T + b * NN + j0 : nullptr;
  blk.for_each(n * nc, [&](int k) {
    const int i = k / nc, jl = k - i * nc, j = j0 + jl, e = i * ld + jl;
    T hij = H[e];
    T eij = kElig ? E[e] : T(0);
    T m = T(0);
    if constexpr (kMod) m = modulation_at<R>(p, j, s, eta);
    trace_forward_inv<R>(hij, eij, hpp[i], hp[j], m, eta, clip, p.inv_clip);
    hT[i * n + jl] = hij;
    if constexpr (kElig) eT[i * n + jl] = eij;
  });
}

// --------------------------------------------------------------------------------------------
// Backward

// The backward's index type within a sample: 32-bit for float32; float64 keeps 64-bit indices,
// because its kernels sit at the 128-register limit and with 32-bit ones ptxas spilled on sm_80
// (NOTES.md M7).
template <typename T>
using BwdIdx = std::conditional_t<sizeof(T) == 4, int, int64_t>;

// dst[j] += sum_w col[w, j] (warps in order); col is zeroed for the next use.
template <typename T, typename Blk>
HK_DEVICE void fold_columns(const Blk& blk, T* col, BwdIdx<T> N, T* dst) {
  const int W = blk.nwarps();
  blk.for_each(N, [&](BwdIdx<T> j) {
    T s = T(0);
    for (int w = 0; w < W; ++w) {
      s += col[w * N + j];
      col[w * N + j] = T(0);
    }
    dst[j] += s;
  });
}

// The trace-update adjoint of step t on its own (the last step of a chunk): pre adjoints to prev,
// post and modulation adjoints to the per-warp column partials.
template <Rule R, typename T, typename Blk>
HK_DEVICE void rule_pass(const Blk& blk, const RnnParams<T>& p, const T* Hs, const T* Es,
                         const T* hp, const T* hc, T mod, T* dH, T* dE, T* col_post, T* col_mod,
                         T* prev, T* deta_w, T eta) {
  constexpr bool kElig = has_eligibility(R);
  constexpr bool kMod = is_modulated(R);
  using I = BwdIdx<T>;
  const I N = static_cast<I>(p.N);  // offsets within the sample
  const T clip = p.clip;
  blk.for_each_row(N, [&](const auto& warp, I i, int w) {
    const T pre = hp[i];
    T* cpost = col_post + w * N;
    [[maybe_unused]] T* cmod = col_mod + w * N;
    const Vec<T, 2> r = warp.template sum<Vec<T, 2>>(N, [&](I j) {
      const I e = i * N + j;
      T m = T(0);
      if constexpr (kMod) m = modulation_at<R>(p, j, mod, eta);
      T unused = T(0);
      const TraceGrad<T> g = trace_backward_inv<R>(Hs[e], kElig ? Es[e] : T(0), pre, hc[j], m, eta,
                                                   clip, p.inv_clip, dH[e], kElig ? dE[e] : unused);
      cpost[j] += g.d_post;
      if constexpr (kMod) cmod[j] += g.d_mod;
      return Vec<T, 2>{{g.d_pre, g.d_eta}};
    });
    if (warp.leader()) {
      prev[i] += r[0];
      deta_w[w] += r[1];
    }
  });
}

// The inputs of step t-1's trace-update adjoint in the fused row pass.
template <typename T>
struct RowPassFused {
  const T* Hpp;  // trace before step t-1
  const T* Epp;  // eligibility before step t-1
  const T* hpp;  // h_{t-2}
  T mod;         // m_{t-1} before the fan-out
};

// One pass over the rows at step t: the mat-vec adjoint of step t and, when kFused, the
// trace-update adjoint of step t-1. Row sums go to prev (adjoint of h_{t-1}), prev2 (of h_{t-2})
// and the per-warp d eta; column sums to the per-warp partial rows. kPop (w or alpha per sample, a
// population): the w part of the mat-vec adjoint is left to w_row_dot, so that this pass keeps no
// per-sample w pointer live (the shared w is addressed from the kernel parameter with the trace's
// index; a per-sample one made the float64 backward spill at its 128 registers), and alpha is
// read at this sample's offset. The shared-parameter kernels (!kPop) are the code they were.
template <Rule R, bool kFused, bool kRowAlpha, bool kPop, typename T, typename Blk>
HK_DEVICE void row_pass(const Blk& blk, const RnnParams<T>& p, int64_t b, const T* Hp, const T* hp,
                        const T* da, T* dH, T* dE, T* dA, T* col_post, T* col_mod, T* col_A,
                        T* prev, T* prev2, T* deta_w, T eta, const RowPassFused<T>& f) {
  constexpr bool kElig = has_eligibility(R);
  constexpr bool kMod = is_modulated(R);
  using I = BwdIdx<T>;
  const I N = static_cast<I>(p.N);  // offsets within the sample
  const T clip = p.clip;
  blk.for_each_row(N, [&](const auto& warp, I i, int w) {
    const T x = hp[i];
    // Sample b's alpha row in a population (kPop), else the shared row.
    const T* Arow = kPop ? p.A + (b * p.a_bstride + i * p.a_stride) : p.A + i * p.a_stride;
    const T* Hrow = Hp + i * N;
    const T* wrow = p.w + i * N;  // shared w only (kPop: w_row_dot)
    T* dHrow = dH + i * N;
    [[maybe_unused]] T* cpost = col_post + w * N;
    [[maybe_unused]] T* cmod = col_mod + w * N;
    [[maybe_unused]] T* cA = col_A + w * N;
    [[maybe_unused]] const T pre = kFused ? f.hpp[i] : T(0);
    const Vec<T, 3> r = warp.template sum<Vec<T, 3>>(N, [&](I j) {
      const T hij = Hrow[j];
      const T xd = x * da[j];
      dHrow[j] += Arow[j] * xd;
      if constexpr (kRowAlpha)
        cA[j] += xd * hij;
      else
        dA[i * N + j] += xd * hij;
      Vec<T, 3> v{{((kPop ? T(0) : wrow[j]) + Arow[j] * hij) * da[j], T(0), T(0)}};
      if constexpr (kFused) {
        const I e = i * N + j;
        T m = T(0);
        if constexpr (kMod) m = modulation_at<R>(p, j, f.mod, eta);
        T unused = T(0);
        const TraceGrad<T> g =
            trace_backward_inv<R>(f.Hpp[e], kElig ? f.Epp[e] : T(0), pre, hp[j], m, eta, clip,
                                  p.inv_clip, dHrow[j], kElig ? dE[e] : unused);
        cpost[j] += g.d_post;
        if constexpr (kMod) cmod[j] += g.d_mod;
        v[1] = g.d_pre;
        v[2] = g.d_eta;
      }
      return v;
    });
    if (warp.leader()) {
      prev[i] += r[0];
      if constexpr (kFused) {
        prev2[i] += r[1];
        deta_w[w] += r[2];
      }
    }
  });
}

// x, opaque to the compiler on the device: an offset computed from it is recomputed where it is
// used instead of hoisted out of the step loop and kept live across the whole backward.
HK_DEVICE int64_t opaque(int64_t x) {
#if defined(__CUDA_ARCH__)
  asm volatile("" : "+l"(x));
#endif
  return x;
}

// sum_k w[b, i, k] da[k] (w of sample b, or the shared one), one thread, a plain loop.
template <typename T>
HK_DEVICE T w_row_dot(const RnnParams<T>& p, int64_t b, BwdIdx<T> i, const T* da) {
  using I = BwdIdx<T>;
  const I N = static_cast<I>(p.N);
  const T* wrow = p.w + (opaque(b) * p.w_bstride + i * N);
  T s = T(0);
#if defined(__CUDA_ARCH__)
#pragma unroll 1  // registers: this runs inside the backward's busiest loop nest
#endif
  for (I k = 0; k < N; ++k) s += wrow[k] * da[k];
  return s;
}

// row_pass with its run-time choice (alpha one row or [N, N]) as a template argument.
template <Rule R, bool kFused, bool kPop, typename T, typename Blk>
HK_DEVICE void row_pass_any(const Blk& blk, const RnnParams<T>& p, int64_t b, bool row_alpha,
                            const T* Hp, const T* hp, const T* da, T* dH, T* dE, T* dA, T* col_post,
                            T* col_mod, T* col_A, T* prev, T* prev2, T* deta_w, T eta,
                            const RowPassFused<T>& f) {
  if (row_alpha)
    row_pass<R, kFused, true, kPop>(blk, p, b, Hp, hp, da, dH, dE, dA, col_post, col_mod, col_A,
                                    prev, prev2, deta_w, eta, f);
  else
    row_pass<R, kFused, false, kPop>(blk, p, b, Hp, hp, da, dH, dE, dA, col_post, col_mod, col_A,
                                     prev, prev2, deta_w, eta, f);
}

// The shared w and alpha into their copies at w_s (shared memory): w [N, N], then alpha [N, N] or
// one row (row_params reads them there).
template <typename T, typename Blk>
HK_DEVICE void copy_params(const Blk& blk, const RnnParams<T>& p, T* w_s, bool row_alpha) {
  using I = BwdIdx<T>;
  const I n = static_cast<I>(p.N);
  T* A_s = w_s + n * n;
  blk.for_each(n * n, [&](I k) { w_s[k] = p.w[k]; });
  blk.for_each(row_alpha ? n : n * n, [&](I k) { A_s[k] = p.A[k]; });
}

// p with w and alpha read from elsewhere (their copies in shared memory) when kParams, else p
// itself (a reference: the other instantiations' code stays as it was).
// w_s: the copies' place (w [N, N], then alpha).
template <bool kParams, typename T>
HK_DEVICE decltype(auto) row_params(const RnnParams<T>& p, T* w_s) {
  if constexpr (kParams) {
    RnnParams<T> q = p;
    q.w = w_s;
    q.A = w_s + p.N * p.N;
    return q;
  } else {
    return (p);
  }
}

// kPop: w or alpha per sample (a population); the shared-parameter kernels (!kPop) are a separate
// instantiation with the code they had before populations, so that neither spills registers.
// kParams (pl.params_in_smem, shared parameters only): the vectors, the adjoint state, and the
// shared w and alpha live in shared memory, known at compile time (LDS/STS); w and alpha are
// copied there once and read from there in every step's row pass.
template <Rule R, bool kPop, bool kParams, typename T, typename Blk>
HK_DEVICE void backward_sample(const Blk& blk, const RnnParams<T>& p, const RnnBwdIn<T>& in,
                               const RnnBwdOut<T>& o, int64_t b, const Placement& pl, T* smem,
                               T* scratch) {
  static_assert(!(kPop && kParams), "a population's w and alpha stay in global memory");
  constexpr bool kElig = has_eligibility(R);
  constexpr bool kMod = is_modulated(R);
  const int64_t N = p.N, NN = N * N, B = p.B, T_ = p.T_, K = p.K;
  using I = BwdIdx<T>;
  const I n = static_cast<I>(N), nn = n * n;  // offsets within the sample
  const int W = blk.nwarps();
  T* gs = scratch + b * pl.scratch_per_sample;  // this sample's global scratch
  T* vec = (kParams || pl.vec_in_smem) ? smem : gs;
  T* Hbuf = gs + ((kParams || pl.vec_in_smem) ? 0 : bwd_vec_elems(N, blk.nthreads()));  // K traces
  T* Ebuf = Hbuf + K * NN;        // K eligibilities
  T* cur = vec;                   // adjoint of h_t
  T* prev = cur + N;              // adjoint of h_{t-1}
  T* prev2 = prev + N;            // adjoint of h_{t-2}
  T* dM = prev2 + N;              // adjoint of m_t (per post neuron)
  T* dMp = dM + N;                // adjoint of m_{t-1}
  T* da = dMp + N;                // adjoint of a_t
  T* zeros = da + N;              // h_{-1} when h0 is not given
  T* dAcol = zeros + N;           // [N] d alpha of this sample when alpha is one shared row
  T* col_post = dAcol + N;        // [W, N] column partials: adjoint of post
  T* col_mod = col_post + W * N;  // [W, N]: adjoint of the modulation
  T* col_A = col_mod + W * N;     // [W, N]: d alpha (shared row)
  T* deta_w = col_A + W * N;      // [W]
  T* red = deta_w + W;            // block reductions
  T* state = red + kMaxWarps;
  T* dH = (kParams || pl.state_in_smem) ? state : o.dH0 + b * NN;
  T* dE = kElig ? ((kParams || pl.state_in_smem) ? state + NN : o.dE0 + b * NN) : nullptr;
  // What the row pass reads w and alpha through (it reads p.w, p.A): with kParams their copies
  // in shared memory after the adjoint state (row_params), else p itself.
  decltype(auto) pr = row_params<kParams>(p, state + (kElig ? 2 : 1) * NN);
  const bool row_alpha = p.a_stride == 0;
  T* dA = o.dA + b * (row_alpha ? N : NN);
  T* dmw = kMod ? o.dmw + b * N : nullptr;
  T* dfw = o.dfw ? o.dfw + b * N : nullptr;
  T* dfb = o.dfb ? o.dfb + b * N : nullptr;
  const T eta = p.eta ? p.eta[b * p.eta_bstride] : T(0);  // this sample's
  const T clip = p.clip;

  {
    const T* gH = in.gH ? in.gH + b * NN : nullptr;
    const T* gE = in.gE ? in.gE + b * NN : nullptr;
    blk.for_each(nn, [&](I k) {
      dH[k] = gH ? gH[k] : T(0);
      if constexpr (kElig) dE[k] = gE ? gE[k] : T(0);
      if (!row_alpha) dA[k] = T(0);
    });
  }
  // Not inside the lambdas above: a name in a discarded statement is still captured, and the
  // other instantiations sit at the register limit (retro, float64 spilled on sm_90).
  if constexpr (kParams) copy_params(blk, p, state + (kElig ? 2 : 1) * NN, row_alpha);
  blk.for_each(8 * N + 3 * W * N + W, [&](int64_t k) { vec[k] = T(0); });
  blk.for_each(N, [&](int64_t j) {
    if (kMod) dmw[j] = T(0);
    if (dfw) {
      dfw[j] = T(0);
      dfb[j] = T(0);
    }
  });
  blk.sync();

  auto h_at = [&](int64_t t) -> const T* {
    return t < 0 ? (p.h0 ? p.h0 + b * N : zeros) : in.h + (t * B + b) * N;
  };
  T dmb = T(0);         // identical in every thread (block sums broadcast)
  T deta_unmod = T(0);  // the unmodulated neurons' part of d eta (their modulation is eta)

  const int64_t n_chunks = (T_ + K - 1) / K;
  for (int64_t c = n_chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * K, t1 = (t0 + K < T_) ? t0 + K : T_;
    // Recompute the traces before steps t0 .. t1-1 from the chunk's checkpoint.
    {
      const T* cH = in.ck_h + (c * B + b) * NN;
      const T* cE = kElig ? in.ck_e + (c * B + b) * NN : nullptr;
      blk.for_each(nn, [&](I k) {
        Hbuf[k] = cH[k];
        if constexpr (kElig) Ebuf[k] = cE[k];
      });
    }
    blk.sync();
    for (int64_t t = t0; t < t1 - 1; ++t) {
      const int64_t s = t - t0;
      const T* pre = h_at(t - 1);
      const T* post = h_at(t);
      const T mt = kMod ? in.mod[t * B + b] : T(0);
      // Step s's trace and eligibility, and step s + 1's (64-bit bases, 32-bit k).
      const T* Hs = Hbuf + s * NN;
      const T* Es = Ebuf + s * NN;
      T* Hn = Hbuf + (s + 1) * NN;
      T* En = Ebuf + (s + 1) * NN;
      blk.for_each(nn, [&](I k) {
        const I i = k / n, j = k - i * n;
        T hij = Hs[k];
        T eij = kElig ? Es[k] : T(0);
        T m = T(0);
        if constexpr (kMod) m = modulation_at<R>(p, j, mt, eta);
        trace_forward_inv<R>(hij, eij, pre[i], post[j], m, eta, clip, p.inv_clip);
        Hn[k] = hij;
        if constexpr (kElig) En[k] = eij;
      });
      blk.sync();
    }
    // The last step of the chunk: its trace-update adjoint could not be fused with the step after
    // it (that one lives in the next chunk), so it runs on its own.
    {
      const int64_t t = t1 - 1, s = t - t0;
      rule_pass<R>(blk, p, Hbuf + s * NN, Ebuf + s * NN, h_at(t - 1), h_at(t),
                   kMod ? in.mod[t * B + b] : T(0), dH, dE, col_post, col_mod, prev, deta_w, eta);
      blk.sync();
      fold_columns(blk, col_post, n, cur);
      if constexpr (kMod) fold_columns(blk, col_mod, n, dM);
      blk.sync();
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t s = t - t0;
      const T* hc = h_at(t);
      const T* hp = h_at(t - 1);
      // Complete the adjoint of h_t: the output gradient and the neuromodulator.
      if (in.gh) {
        const T* g = in.gh + (t * B + b) * N;
        blk.for_each(N, [&](int64_t j) { cur[j] += g[j]; });
        blk.sync();
      }
      if constexpr (kMod) {
        const T sm = in.mod[t * B + b];
        const int64_t n_mod = N - p.n_unmod;
        const T ds = blk.sum(
            N,
            [&](int64_t j) { return j >= n_mod ? T(0) : (p.fan_w ? dM[j] * p.fan_w[j] : dM[j]); },
            red);
        if constexpr (hard_rule(R) == Rule::Neuromod) {
          if (p.n_unmod > 0)
            deta_unmod += blk.sum(N, [&](int64_t j) { return j >= n_mod ? dM[j] : T(0); }, red);
        }
        const T dz = ds * squash_grad_from_output(p.squash, sm);
        dmb += dz;
        blk.for_each(N, [&](int64_t j) {
          if (dfw && j < n_mod) {
            dfw[j] += dM[j] * sm;
            dfb[j] += dM[j];
          }
          cur[j] += dz * p.mod_w[j];
          dmw[j] += dz * hc[j];
        });
        blk.sync();
      }
      // Through h_t = clamp ? u_t : tanh(a_t).
      const bool* c_t = p.clamp ? p.clamp + (t * B + b) * N : nullptr;
      blk.for_each(N, [&](int64_t j) {
        const bool clamped = c_t && c_t[j];
        const T d = clamped ? T(0) : cur[j] * act_grad_from_output(p.act, hc[j]);
        da[j] = d;
        o.du[(t * B + b) * N + j] = clamped ? cur[j] : d;
        o.da[(t * B + b) * N + j] = d;
      });
      blk.sync();
      const T* Hp = Hbuf + s * NN;
      // The trace-update adjoint of step t-1 joins this pass unless step t-1 is in the previous
      // chunk. The four variants are separate loops so that each keeps only its own values live.
      if (t > t0) {
        const RowPassFused<T> f{Hbuf + (s - 1) * NN, Ebuf + (s - 1) * NN, h_at(t - 2),
                                kMod ? in.mod[(t - 1) * B + b] : T(0)};
        row_pass_any<R, true, kPop>(blk, pr, b, row_alpha, Hp, hp, da, dH, dE, dA, col_post,
                                    col_mod, col_A, prev, prev2, deta_w, eta, f);
      } else {
        const RowPassFused<T> f{nullptr, nullptr, nullptr, T(0)};
        row_pass_any<R, false, kPop>(blk, pr, b, row_alpha, Hp, hp, da, dH, dE, dA, col_post,
                                     col_mod, col_A, prev, prev2, deta_w, eta, f);
      }
      blk.sync();
      // Column partials in; the adjoints of h_t and m_t are spent: zero them for their next use
      // (after the rotation below they hold h_{t-3} and m_{t-2}).
      {
        T* dMp_ = dMp;
        T* cur_ = cur;
        T* dM_ = dM;
        T* prev_ = prev;
        // 64-bit j here (N per step, not N * N): with a 32-bit one ptxas spilled in the gated
        // float32 population backward on sm_90.
        blk.for_each(N, [&](int64_t j) {
          T sp = T(0), sm = T(0), sa = T(0);
          for (int w = 0; w < W; ++w) {
            sp += col_post[w * N + j];
            col_post[w * N + j] = T(0);
            if (kMod) {
              sm += col_mod[w * N + j];
              col_mod[w * N + j] = T(0);
            }
            if (row_alpha) {
              sa += col_A[w * N + j];
              col_A[w * N + j] = T(0);
            }
          }
          // A population: the w part of the mat-vec adjoint, sum_k w[b, j, k] da[k], here rather
          // than in row_pass (kPop), where a per-sample w pointer made ptxas spill.
          if constexpr (kPop) sp += w_row_dot(p, b, j, da);
          prev_[j] += sp;
          if (kMod) dMp_[j] += sm;
          if (row_alpha) dAcol[j] += sa;
          cur_[j] = T(0);
          dM_[j] = T(0);
        });
        blk.sync();
      }
      T* spent = cur;
      cur = prev;
      prev = prev2;
      prev2 = spent;
      T* m = dM;
      dM = dMp;
      dMp = m;
    }
  }
  blk.for_each(N, [&](int64_t j) {
    o.dh0[b * N + j] = cur[j];
    if (row_alpha) dA[j] = dAcol[j];
  });
  if (kParams || pl.state_in_smem) {
    T* dH0 = o.dH0 + b * NN;
    T* dE0 = kElig ? o.dE0 + b * NN : nullptr;
    blk.for_each(nn, [&](I k) {
      dH0[k] = dH[k];
      if constexpr (kElig) dE0[k] = dE[k];
    });
  }
  blk.single([&] {
    T de = deta_unmod;
    for (int w = 0; w < W; ++w) de += deta_w[w];
    o.deta[b] = de;
    if (o.dmb) o.dmb[b] = dmb;
  });
}

// Whether the backward runs its population instantiation (kPop): w or alpha per sample.
template <typename T>
HK_HOST_DEVICE bool population(const RnnParams<T>& p) {
  return p.w_bstride != 0 || p.a_bstride != 0;
}

// --------------------------------------------------------------------------------------------
// Launch geometry and entry points, shared by the CUDA launch (csrc/cuda/plastic_rnn.cu) and the
// emulation (csrc/cpu/plastic_rnn_emulated.cpp): one block per sample on a one-dimensional grid.

HK_HOST_DEVICE Grid plastic_rnn_grid(int64_t B) { return {B, 1, 1}; }
HK_HOST_DEVICE int64_t plastic_rnn_sample_of(const BlockIdx& idx) { return idx.x; }

// kWhere: fwd_where(pl), as a template argument (forward_sample).
template <Rule R, int kWhere, typename T, typename Blk>
HK_DEVICE void plastic_rnn_forward_kernel(const Blk& blk, const RnnParams<T>& p,
                                          const RnnFwdOut<T>& o, const BlockIdx& idx,
                                          const Placement& pl, T* smem, T* scratch) {
  forward_sample<R, kWhere>(blk, p, o, plastic_rnn_sample_of(idx), pl, smem, scratch);
}

// The cluster forward's grid: c consecutive blocks per sample along x, one cluster of c each
// (block rank x % c, sample x / c).
HK_HOST_DEVICE Grid plastic_rnn_cluster_grid(int64_t B, int c) { return {B * c, 1, 1, c}; }

// kWhere: the ClusterPlacement's `where`, as a template argument (forward_cluster_sample).
template <Rule R, int kWhere, typename T, typename Blk, typename Clu>
HK_DEVICE void plastic_rnn_forward_cluster_kernel(const Blk& blk, const Clu& clu,
                                                  const RnnParams<T>& p, const RnnFwdOut<T>& o,
                                                  const BlockIdx& idx, T* smem) {
  forward_cluster_sample<R, kWhere>(blk, clu, p, o, idx.x / clu.size(), smem);
}

// kParams: pl.params_in_smem (shared parameters only), as a template argument.
template <Rule R, bool kPop, bool kParams, typename T, typename Blk>
HK_DEVICE void plastic_rnn_backward_kernel(const Blk& blk, const RnnParams<T>& p,
                                           const RnnBwdIn<T>& in, const RnnBwdOut<T>& o,
                                           const BlockIdx& idx, const Placement& pl, T* smem,
                                           T* scratch) {
  backward_sample<R, kPop, kParams>(blk, p, in, o, plastic_rnn_sample_of(idx), pl, smem, scratch);
}

// The instantiation a launch runs, chosen in one place for the CUDA launch and the emulation alike
// (host code): f(std::integral_constant<int, kWhere>) for the forward, and
// f(std::bool_constant<kPop>, std::bool_constant<kParams>) for the backward (a population's w and
// alpha stay in global memory, so kPop excludes kParams). Returns what f returns.
// visit_where: the same for a kWhere* value (the cluster forward's ClusterPlacement::where).
template <typename F>
decltype(auto) visit_where(int where, F&& f) {
  switch (where) {
    case kWhereParams: return f(std::integral_constant<int, kWhereParams>{});
    case kWhereState: return f(std::integral_constant<int, kWhereState>{});
    default: return f(std::integral_constant<int, kWhereRuntime>{});
  }
}

template <typename F>
decltype(auto) visit_forward_instantiation(const Placement& pl, F&& f) {
  return visit_where(fwd_where(pl), static_cast<F&&>(f));
}

template <typename T, typename F>
decltype(auto) visit_backward_instantiation(const RnnParams<T>& p, const Placement& pl, F&& f) {
  if (population(p)) return f(std::true_type{}, std::false_type{});
  if (pl.params_in_smem) return f(std::false_type{}, std::true_type{});
  return f(std::false_type{}, std::false_type{});
}

}  // namespace hebbkern::simt
