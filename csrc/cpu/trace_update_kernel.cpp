// Loops of the CPU trace_update kernels, compiled once per instruction set by the build
// (isa_target.h); the entry points are declared in trace_update.cpp. Internal linkage only, so the
// per-ISA copies never merge.
#include <cstdint>

#include "hebbkern/plastic_rules.h"

// Everything below is compiled for this compilation's instruction set (isa_target.h).
#include "isa_target.h"

namespace hebbkern {
namespace cpu {
namespace HEBBKERN_CPU_ISA {
namespace {

template <Rule R, typename T>
void per_sample_forward(const T* H, const T* pre, const T* post, const T* E, T* out, T clip,
                        int64_t M, int64_t K, int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    const T* __restrict__ po = post + b * K;
    const T* __restrict__ e = E + b * K;
    for (int64_t i = 0; i < M; ++i) {
      const T x = pre[b * M + i];
      const T* __restrict__ Hrow = H + (b * M + i) * K;
      T* __restrict__ orow = out + (b * M + i) * K;
#pragma omp simd
      for (int64_t j = 0; j < K; ++j) {
        T hv = Hrow[j], unused = T(0);
        trace_forward<R>(hv, unused, x, po[j], T(0), e[j], clip);
        orow[j] = hv;
      }
    }
  }
}

template <Rule R, typename T>
void per_sample_backward(const T* G, const T* H, const T* pre, const T* post, const T* E, T* dH,
                         T* dpre, T* dpost, T* dE, T clip, int64_t M, int64_t K, int64_t b0,
                         int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    const T* __restrict__ po = post + b * K;
    const T* __restrict__ e = E + b * K;
    T* __restrict__ dpo = dpost + b * K;
    T* __restrict__ de = dE + b * K;
    for (int64_t j = 0; j < K; ++j) dpo[j] = de[j] = T(0);
    for (int64_t i = 0; i < M; ++i) {
      const T x = pre[b * M + i];
      const T* __restrict__ Hrow = H + (b * M + i) * K;
      const T* __restrict__ Grow = G + (b * M + i) * K;
      T* __restrict__ dHrow = dH + (b * M + i) * K;
      T dx = 0;
#pragma omp simd reduction(+ : dx)
      for (int64_t j = 0; j < K; ++j) {
        T d = Grow[j], unused = T(0);
        const TraceGrad<T> g =
            trace_backward<R>(Hrow[j], T(0), x, po[j], T(0), e[j], clip, d, unused);
        dHrow[j] = d;
        dx += g.d_pre;
        dpo[j] += g.d_post;
        de[j] += g.d_eta;
      }
      dpre[b * M + i] = dx;
    }
  }
}

template <typename T>
void trace_update_forward_t(Rule r, const T* H, const T* pre, const T* post, const T* E, T* out,
                            T clip, int64_t M, int64_t K, int64_t b0, int64_t b1) {
  switch (r) {
    case Rule::Hebb:
      return per_sample_forward<Rule::Hebb>(H, pre, post, E, out, clip, M, K, b0, b1);
    case Rule::Oja: return per_sample_forward<Rule::Oja>(H, pre, post, E, out, clip, M, K, b0, b1);
    default: return per_sample_forward<Rule::Clip>(H, pre, post, E, out, clip, M, K, b0, b1);
  }
}

template <typename T>
void trace_update_backward_t(Rule r, const T* G, const T* H, const T* pre, const T* post,
                             const T* E, T* dH, T* dpre, T* dpost, T* dE, T clip, int64_t M,
                             int64_t K, int64_t b0, int64_t b1) {
  switch (r) {
    case Rule::Hebb:
      return per_sample_backward<Rule::Hebb>(G, H, pre, post, E, dH, dpre, dpost, dE, clip, M, K,
                                             b0, b1);
    case Rule::Oja:
      return per_sample_backward<Rule::Oja>(G, H, pre, post, E, dH, dpre, dpost, dE, clip, M, K, b0,
                                            b1);
    default:
      return per_sample_backward<Rule::Clip>(G, H, pre, post, E, dH, dpre, dpost, dE, clip, M, K,
                                             b0, b1);
  }
}

}  // namespace

#define HEBBKERN_TRACE_UPDATE_ENTRIES(T)                                                         \
  void trace_update_forward(Rule r, const T* H, const T* pre, const T* post, const T* E, T* out, \
                            T clip, int64_t M, int64_t K, int64_t b0, int64_t b1) {              \
    trace_update_forward_t<T>(r, H, pre, post, E, out, clip, M, K, b0, b1);                      \
  }                                                                                              \
  void trace_update_backward(Rule r, const T* G, const T* H, const T* pre, const T* post,        \
                             const T* E, T* dH, T* dpre, T* dpost, T* dE, T clip, int64_t M,     \
                             int64_t K, int64_t b0, int64_t b1) {                                \
    trace_update_backward_t<T>(r, G, H, pre, post, E, dH, dpre, dpost, dE, clip, M, K, b0, b1);  \
  }
HEBBKERN_TRACE_UPDATE_ENTRIES(float)
HEBBKERN_TRACE_UPDATE_ENTRIES(double)
#undef HEBBKERN_TRACE_UPDATE_ENTRIES

}  // namespace HEBBKERN_CPU_ISA
}  // namespace cpu
}  // namespace hebbkern

HEBBKERN_CPU_ISA_END
