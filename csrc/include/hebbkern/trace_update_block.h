// trace_update with a per-sample trace [B, M, K] (SPEC.md's rules through plastic_rules.h) as the
// work of one thread block, written against simt.h like plastic_rnn_block.h: the CUDA kernels of
// csrc/cuda/trace_update.cu run it, csrc/cpu/trace_update_emulated.cpp runs it on the CPU for the
// tests.
//
// Grid: B * R blocks; block (b, r) owns the rows i = r * W + w, r * W + w + R * W, ... of sample b
// (W warps per block, warp w). Row sums (the gradient of pre) are warp butterflies; column sums
// (the gradients of post and eta) go to per-warp partial rows, which the block adds in warp order
// into its own [2, K] slot of `cols`; the caller then sums the R slots of each sample in a fixed
// order. No atomics: the gradients are bit-reproducible.
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

}  // namespace hebbkern::simt
