// Plain argument structs of the CPU plastic_rnn kernels and the per-ISA entry points.
//
// The kernels (plastic_rnn_kernel.cpp) are compiled once per instruction set and picked at run
// time (isa.h). Only these POD structs cross between the torch-facing code and the ISA-specific
// translation units.
#pragma once

#include <cstdint>

#include "hebbkern/plastic_rnn_io.h"
#include "hebbkern/plastic_rules.h"
#include "isa.h"

namespace hebbkern {
namespace cpu {

template <typename T>
struct RnnArgs : RnnInputs<T> {
  T eta, mod_b;
  const T* etas;  // [B]: one eta per sample (eta_bstride 1), else null and `eta` is shared
};

// Sample b's arguments: its own w, alpha and eta where they are given per sample (a population);
// the kernels then run every sample as if its parameters were the shared ones.
template <typename T>
RnnArgs<T> sample_args(const RnnArgs<T>& p, int64_t b) {
  RnnArgs<T> s = p;
  s.w = p.w + b * p.w_bstride;
  s.A = p.A + b * p.a_bstride;
  if (p.etas) s.eta = p.etas[b];
  return s;
}

// The pointer structs are shared with the CUDA kernels (hebbkern/plastic_rnn_io.h).
template <typename T>
using FwdOutPtrs = RnnFwdOut<T>;
template <typename T>
using BwdInPtrs = RnnBwdIn<T>;
template <typename T>
using BwdOutPtrs = RnnBwdOut<T>;

inline int64_t forward_scratch_size(int64_t N) { return 3 * N; }
inline int64_t backward_scratch_size(int64_t N, int64_t K, bool elig) {
  return (elig ? 2 : 1) * K * N * N + 10 * N;
}

#define HEBBKERN_DECLARE_CPU_ISA(ns)                                                      \
  namespace ns {                                                                          \
  void forward(Rule r, const RnnArgs<float>& p, const FwdOutPtrs<float>& o, int64_t b0,   \
               int64_t b1, float* scratch);                                               \
  void forward(Rule r, const RnnArgs<double>& p, const FwdOutPtrs<double>& o, int64_t b0, \
               int64_t b1, double* scratch);                                              \
  void backward(Rule r, const RnnArgs<float>& p, const BwdInPtrs<float>& in,              \
                const BwdOutPtrs<float>& o, int64_t b0, int64_t b1, float* scratch);      \
  void backward(Rule r, const RnnArgs<double>& p, const BwdInPtrs<double>& in,            \
                const BwdOutPtrs<double>& o, int64_t b0, int64_t b1, double* scratch);    \
  }

HEBBKERN_FOR_EACH_CPU_ISA(HEBBKERN_DECLARE_CPU_ISA)

}  // namespace cpu
}  // namespace hebbkern
