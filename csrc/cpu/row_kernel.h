// Pieces of the CPU row kernels that the plastic families share (plastic_rnn_kernel.cpp,
// plastic_step_kernel.cpp, plastic_lstm_kernel.cpp).
//
// Included by a kernel source after isa_target.h, so everything here is compiled for that source's
// instruction set, with internal linkage (the unnamed namespace inside HEBBKERN_CPU_ISA). It
// includes no library header: the kernel source includes <cmath>, hebbkern/plastic_rules.h and
// vec_math.h before the target switch.
#pragma once

#ifndef HEBBKERN_CPU_ISA
#error "include isa_target.h before row_kernel.h"
#endif

#include "trace_adjoint_row.h"

namespace hebbkern {
namespace cpu {
namespace HEBBKERN_CPU_ISA {
namespace {

// Calls f(std::integral_constant<Rule, r>{}) (plastic_rules.h): one instantiation of the kernels
// per rule.
template <typename F>
void with_rule(Rule r, F&& f) {
  visit_rule(r, f);
}

inline float tanh_any(float x) { return tanh_vec(x); }  // vectorisable (vec_math.h)
inline double tanh_any(double x) { return std::tanh(x); }

// m_t[j] = fanout_w[j] * s + fanout_b[j] (or s without fan-out), for arguments p with N, fan_w,
// fan_b.
// The last p.n_unmod neurons are not modulated (SPEC.md section 1.1): they take p.eta.
template <typename P, typename T>
inline void fanout(const P& p, T s, T* M) {
  const int64_t n_mod = p.N - p.n_unmod;
  if (p.fan_w) {
    for (int64_t j = 0; j < n_mod; ++j) M[j] = p.fan_w[j] * s + p.fan_b[j];
  } else {
    for (int64_t j = 0; j < n_mod; ++j) M[j] = s;
  }
  for (int64_t j = n_mod; j < p.N; ++j) M[j] = p.eta;
}

// Adjoint of s = squash(z) and of the fan-out m[j] = fanout_w[j] s + fanout_b[j] (j < n_mod),
// given dM, the adjoint of the modulation per post neuron. Adds to dfw/dfb (when given, per
// sample rows), returns dz; *deta gets the unmodulated neurons' part (their M is eta).
template <typename P, typename T>
inline T modulator_adjoint(const P& p, T s, const T* dM, T* dfw, T* dfb, T* deta) {
  const int64_t n_mod = p.N - p.n_unmod;
  T ds = 0;
  for (int64_t j = 0; j < n_mod; ++j) ds += p.fan_w ? dM[j] * p.fan_w[j] : dM[j];
  if (dfw) {
    for (int64_t j = 0; j < n_mod; ++j) {
      dfw[j] += dM[j] * s;
      dfb[j] += dM[j];
    }
  }
  T de = 0;
  for (int64_t j = n_mod; j < p.N; ++j) de += dM[j];
  *deta += de;
  return ds * squash_grad_from_output(p.squash, s);
}

// h = f(a) (or u where the clamp mask is set) for the activations other than tanh.
template <typename T>
inline void activation_other(int act, const T* __restrict__ a, const T* __restrict__ u,
                             const bool* __restrict__ c, T* __restrict__ h, int64_t N) {
  for (int64_t j = 0; j < N; ++j) {
    const T y = act_forward(act, a[j]);
    h[j] = (c && c[j]) ? u[j] : y;
  }
}

// Adjoint of a_t = u_t + h_{t-1} (w + A * H_{t-1}) for one row: adds to dH and dA, returns the
// row's contribution to the adjoint of h_{t-1}[i]. SET_DA: writes dA's row instead of adding to it
// (the first sample of a group in plastic_step_kernel.cpp).
template <bool SET_DA = false, typename T>
inline T matvec_adjoint_row(const T* __restrict__ Hrow, const T* __restrict__ wrow,
                            const T* __restrict__ Arow, T x, const T* __restrict__ da,
                            T* __restrict__ dHrow, T* __restrict__ dArow, int64_t N) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < N; ++j) {
    const T xd = x * da[j];
    dHrow[j] += Arow[j] * xd;
    if constexpr (SET_DA) {
      dArow[j] = xd * Hrow[j];
    } else {
      dArow[j] += xd * Hrow[j];
    }
    acc += (wrow[j] + Arow[j] * Hrow[j]) * da[j];
  }
  return acc;
}

}  // namespace
}  // namespace HEBBKERN_CPU_ISA
}  // namespace cpu
}  // namespace hebbkern
