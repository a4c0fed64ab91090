// Plain argument structs of the CPU plastic_rnn kernels and the per-ISA entry points.
//
// The kernels are compiled once per instruction set (plastic_rnn_isa_*.cpp) and picked at run time,
// so one wheel runs everywhere and still uses AVX2/AVX-512 where the CPU has them. Only these POD
// structs cross between the torch-facing code and the ISA-specific translation units.
#pragma once

#include <cstdint>

#include "hebbkern/plastic_rnn_io.h"
#include "hebbkern/plastic_rules.h"

namespace hebbkern {
namespace cpu {

template <typename T>
struct RnnArgs : RnnInputs<T> {
  T eta, mod_b;
};

// The pointer structs are shared with the CUDA kernels (hebbkern/plastic_rnn_io.h).
template <typename T>
using FwdOutPtrs = RnnFwdOut<T>;
template <typename T>
using BwdInPtrs = RnnBwdIn<T>;
template <typename T>
using BwdOutPtrs = RnnBwdOut<T>;

// Instruction sets the kernels are built for, in increasing order.
enum class Isa : int { Default = 0, Avx2 = 1, Avx512 = 2 };
Isa active_isa();  // the best the CPU supports, capped by $HEBBKERN_CPU_ISA
const char* isa_name(Isa isa);

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

HEBBKERN_DECLARE_CPU_ISA(isa_default)
HEBBKERN_DECLARE_CPU_ISA(isa_avx2)
HEBBKERN_DECLARE_CPU_ISA(isa_avx512)

}  // namespace cpu
}  // namespace hebbkern
