// trace_update with a per-sample trace [B, M, K] (SPEC.md's rules through plastic_rules.h) as the
// work of one thread block, written against simt.h like plastic_rnn_block.h: the CUDA kernels of
// csrc/cuda/trace_update.cu run it, csrc/cpu/trace_update_emulated.cpp runs it on the CPU for the
// tests.
//
// Grid: B * R blocks (trace_update_grid); block (b, r) owns the rows i = r * W + w, r * W + w + R *
// W, ... of sample b (W warps per block, warp w). Row sums (the gradient of pre) are warp
// butterflies; column sums (the gradients of post and eta) go to per-warp partial rows, which the
// block adds in warp order into its own [2, K] slot of `cols`; the caller then sums the R slots of
// each sample in a fixed order. No atomics: the gradients are bit-reproducible.
#pragma once

#include <cstdint>

#include "hebbkern/plastic_rules.h"
#include "hebbkern/simt.h"

namespace hebbkern::simt {

template <typename T>
struct TraceUpdateArgs {
  int64_t B, M, K;
  int64_t R;      // blocks per sample
  const T* H;     // [B, M, K] the trace
  const T* pre;   // [B, M]
  const T* post;  // [B, K]
  const T* E;     // [B, K] eta per sample and post neuron
  T clip;         // +inf for "add"
};

// Elements of per-block scratch the backward needs: per-warp partial rows of dpost and deta.
HK_HOST_DEVICE int64_t trace_update_scratch(int64_t K, int threads) {
  return 2 * (threads / kWarpSize) * K;
}

// The launch geometry of both kernels, for the CUDA launch and the emulation alike: a
// one-dimensional grid of B * R blocks (x has no 65535 cap, unlike y and z).
HK_HOST_DEVICE Grid trace_update_grid(int64_t B, int64_t R) { return {B * R, 1, 1}; }

// Which sample b and row split r a block of trace_update_grid works on.
struct TraceUpdateBlockPos {
  int64_t b, r, linear;
};
HK_HOST_DEVICE TraceUpdateBlockPos trace_update_block_pos(int64_t R, const BlockIdx& idx) {
  return {idx.x / R, idx.x % R, idx.x};
}

template <Rule R, typename T, typename Blk>
HK_DEVICE void trace_update_forward_block(const Blk& blk, const TraceUpdateArgs<T>& a, int64_t b,
                                          int64_t r, T* out) {
  const int64_t M = a.M, K = a.K, W = blk.nwarps();
  const T* post = a.post + b * K;
  const T* E = a.E + b * K;
  blk.for_each_warp([&](const auto& warp, int w) {
    for (int64_t i = r * W + w; i < M; i += a.R * W) {
      const T x = a.pre[b * M + i];
      const T* Hrow = a.H + (b * M + i) * K;
      T* orow = out + (b * M + i) * K;
      warp.for_each(K, [&](int64_t j) {
        T hv = Hrow[j], unused = T(0);
        trace_forward<R>(hv, unused, x, post[j], T(0), E[j], a.clip);
        orow[j] = hv;
      });
    }
  });
}

// `part`: this block's [W, 2, K] scratch; `cols`: [B, R, 2, K], this block writes slot (b, r).
template <Rule R, typename T, typename Blk>
HK_DEVICE void trace_update_backward_block(const Blk& blk, const TraceUpdateArgs<T>& a, int64_t b,
                                           int64_t r, const T* G, T* dH, T* dpre, T* part,
                                           T* cols) {
  const int64_t M = a.M, K = a.K, W = blk.nwarps();
  const T* post = a.post + b * K;
  const T* E = a.E + b * K;
  blk.for_each(2 * W * K, [&](int64_t k) { part[k] = T(0); });
  blk.sync();
  blk.for_each_warp([&](const auto& warp, int w) {
    T* cpost = part + 2 * w * K;
    T* ceta = cpost + K;
    for (int64_t i = r * W + w; i < M; i += a.R * W) {
      const T x = a.pre[b * M + i];
      const int64_t row = (b * M + i) * K;
      const T dx = warp.template sum<T>(K, [&](int64_t j) {
        T d = G[row + j], unused = T(0);
        const TraceGrad<T> g =
            trace_backward<R>(a.H[row + j], T(0), x, post[j], T(0), E[j], a.clip, d, unused);
        dH[row + j] = d;
        cpost[j] += g.d_post;
        ceta[j] += g.d_eta;
        return g.d_pre;
      });
      if (warp.leader()) dpre[b * M + i] = dx;
    }
  });
  blk.sync();
  T* slot = cols + (b * a.R + r) * 2 * K;
  blk.for_each(2 * K, [&](int64_t k) {
    T s = T(0);
    for (int64_t w = 0; w < W; ++w) s += part[2 * w * K + k];
    slot[k] = s;
  });
}

// The kernels' entry points: block `idx` of trace_update_grid(a.B, a.R). `smem_part`: the
// backward's partial rows in shared memory, or nullptr to use this block's slot of `part`
// ([blocks, trace_update_scratch(K, threads)]).
template <Rule R, typename T, typename Blk>
HK_DEVICE void trace_update_forward_kernel(const Blk& blk, const TraceUpdateArgs<T>& a,
                                           const BlockIdx& idx, T* out) {
  const TraceUpdateBlockPos pos = trace_update_block_pos(a.R, idx);
  trace_update_forward_block<R>(blk, a, pos.b, pos.r, out);
}

template <Rule R, typename T, typename Blk>
HK_DEVICE void trace_update_backward_kernel(const Blk& blk, const TraceUpdateArgs<T>& a,
                                            const BlockIdx& idx, const T* G, T* dH, T* dpre,
                                            T* smem_part, T* part, T* cols) {
  const TraceUpdateBlockPos pos = trace_update_block_pos(a.R, idx);
  T* mine = smem_part != nullptr ? smem_part
                                 : part + pos.linear * trace_update_scratch(a.K, blk.nthreads());
  trace_update_backward_block<R>(blk, a, pos.b, pos.r, G, dH, dpre, mine, cols);
}

}  // namespace hebbkern::simt
