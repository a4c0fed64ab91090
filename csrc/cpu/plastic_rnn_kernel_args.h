// Plain argument structs of the CPU plastic_rnn kernels and the per-ISA entry points.
//
// The kernels are compiled once per instruction set (plastic_rnn_isa_*.cpp) and picked at run time,
// so one wheel runs everywhere and still uses AVX2/AVX-512 where the CPU has them. Only these POD
// structs cross between the torch-facing code and the ISA-specific translation units.
#pragma once

#include <cstdint>

#include "hebbkern/plastic_rules.h"

namespace hebbkern {
namespace cpu {

template <typename T>
struct RnnArgs {
  int64_t T_, B, N, K;  // steps, batch, neurons, checkpoint interval
  const T* u;           // [T, B, N]
  const T* w;           // [N, N]
  const T* A;           // alpha: row i at A + i * a_stride
  int64_t a_stride;     // N (per connection) or 0 (per post neuron, scalar: one shared row)
  const T* h0;          // [B, N] or null (zeros)
  const T* hebb0;       // [B, N, N] or null
  const T* elig0;       // [B, N, N] or null
  const bool* clamp;    // [T, B, N] or null
  const T* mod_w;       // [N] or null
  const T* fan_w;       // [N] or null
  const T* fan_b;       // [N] or null
  T eta, mod_b, clip;
};

template <typename T>
struct FwdOutPtrs {
  T* h;       // [T, B, N]
  T* hebb_T;  // [B, N, N]
  T* elig_T;  // [B, N, N] (retro)
  T* ck_h;    // [C, B, N, N]
  T* ck_e;    // [C, B, N, N] (retro)
  T* mod;     // [T, B] (modulated rules)
};

template <typename T>
struct BwdInPtrs {
  const T* gh;    // [T, B, N] or null
  const T* gH;    // [B, N, N] or null
  const T* gE;    // [B, N, N] or null
  const T* h;     // [T, B, N]
  const T* ck_h;  // [C, B, N, N]
  const T* ck_e;  // [C, B, N, N] (retro)
  const T* mod;   // [T, B] (modulated rules)
};

template <typename T>
struct BwdOutPtrs {
  // Per-sample accumulators, reduced over the batch afterwards (thread-count independent).
  T* dA;    // [B, N, N] (alpha per connection) or [B, N] (per neuron, scalar)
  T* deta;  // [B]
  T* dmw;   // [B, N] (modulated rules)
  T* dmb;   // [B]    (modulated rules)
  T* dfw;   // [B, N] (fan-out)
  T* dfb;   // [B, N] (fan-out)
  // Gradients.
  T* du;   // [T, B, N]
  T* da;   // [T, B, N]: adjoint of the drive a_t, for the dw GEMM
  T* dh0;  // [B, N]
  T* dH0;  // [B, N, N]
  T* dE0;  // [B, N, N] (retro)
};

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
