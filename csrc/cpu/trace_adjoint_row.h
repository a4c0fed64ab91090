// The adjoint of one row of the trace update, shared by the CPU row kernels (row_kernel.h, used
// by plastic_rnn_kernel.cpp and plastic_step_kernel.cpp) and plastic_lstm_kernel.cpp, which does
// not include row_kernel.h (its vec_math.h tanh would change the LSTM's float32 results).
//
// Included after isa_target.h: compiled for the including source's instruction set, with
// internal linkage. Needs hebbkern/plastic_rules.h (trace_backward), included before the switch.
#pragma once

#ifndef HEBBKERN_CPU_ISA
#error "include isa_target.h before trace_adjoint_row.h"
#endif

namespace hebbkern {
namespace cpu {
namespace HEBBKERN_CPU_ISA {
namespace {

// Adjoint of step t's trace update for one row, in place on (dH, dE). Adds dpre to *pre_adj, dpost
// to post_adj[j], dmod to dM[j]; returns the row's contribution to d eta.
template <Rule R, typename T>
inline T rule_adjoint_row(const T* __restrict__ Hrow, const T* __restrict__ Erow, T pre,
                          const T* __restrict__ post, const T* __restrict__ M, T eta, T clip,
                          T* __restrict__ dHrow, T* __restrict__ dErow, T* pre_adj,
                          T* __restrict__ post_adj, T* __restrict__ dM, int64_t N) {
  T dpre = 0, deta = 0;
  if constexpr (has_eligibility(R)) {
#pragma omp simd reduction(+ : dpre, deta)
    for (int64_t j = 0; j < N; ++j) {
      const TraceGrad<T> g =
          trace_backward<R>(Hrow[j], Erow[j], pre, post[j], M[j], eta, clip, dHrow[j], dErow[j]);
      dpre += g.d_pre;
      post_adj[j] += g.d_post;
      dM[j] += g.d_mod;
      deta += g.d_eta;
    }
  } else {
#pragma omp simd reduction(+ : dpre, deta)
    for (int64_t j = 0; j < N; ++j) {
      T unused = T(0);
      const TraceGrad<T> g =
          trace_backward<R>(Hrow[j], T(0), pre, post[j], M[j], eta, clip, dHrow[j], unused);
      dpre += g.d_pre;
      post_adj[j] += g.d_post;
      if constexpr (is_modulated(R)) dM[j] += g.d_mod;
      deta += g.d_eta;
    }
  }
  *pre_adj += dpre;
  return deta;
}

}  // namespace
}  // namespace HEBBKERN_CPU_ISA
}  // namespace cpu
}  // namespace hebbkern
