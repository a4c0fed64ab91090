// Per-ISA entry points of the CPU kernels of trace_update and plastic_linear (their loops are in
// trace_update_kernel.h and plastic_linear_kernel.h), compiled once per instruction set by
// {trace_update,plastic_linear}_isa_*.cpp and picked at run time by cpu::active_isa(), as for
// plastic_rnn and plastic_step.
#pragma once

#include <cstdint>

#include "hebbkern/plastic_rules.h"
#include "plastic_rnn_kernel_args.h"  // cpu::Isa, cpu::active_isa()

namespace hebbkern {
namespace cpu {

#define HEBBKERN_DECLARE_LAYER_ISA_T(T)                                                          \
  void trace_update_forward(Rule r, const T* H, const T* pre, const T* post, const T* E, T* out, \
                            T clip, int64_t M, int64_t K, int64_t b0, int64_t b1);               \
  void trace_update_backward(Rule r, const T* G, const T* H, const T* pre, const T* post,        \
                             const T* E, T* dH, T* dpre, T* dpost, T* dE, T clip, int64_t M,     \
                             int64_t K, int64_t b0, int64_t b1);                                 \
  void plastic_linear_forward(const T* x, const T* A, const T* H, T* z, int64_t M, int64_t K,    \
                              int64_t b0, int64_t b1);                                           \
  void plastic_linear_backward(const T* x, const T* g, const T* A, const T* H, T* dx, T* dA,     \
                               T* dH, int64_t B, int64_t M, int64_t K, int64_t i0, int64_t i1);

#define HEBBKERN_DECLARE_LAYER_ISA(ns) \
  namespace ns {                       \
  HEBBKERN_DECLARE_LAYER_ISA_T(float)  \
  HEBBKERN_DECLARE_LAYER_ISA_T(double) \
  }

HEBBKERN_DECLARE_LAYER_ISA(isa_default)
HEBBKERN_DECLARE_LAYER_ISA(isa_avx2)
HEBBKERN_DECLARE_LAYER_ISA(isa_avx512)

}  // namespace cpu
}  // namespace hebbkern
