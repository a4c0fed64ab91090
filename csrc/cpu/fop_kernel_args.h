// Arguments of the FOP row kernels (fop_kernel.h) and their per-instruction-set entry points.
#pragma once

#include <cstdint>

#include "isa.h"

namespace hebbkern::fop_cpu {

enum class Base : int { Sgd = 0, Momentum = 1, Adam = 2 };

// Rows per L1 block of the row kernels, and the largest d they take (larger d goes to BLAS).
constexpr int64_t kRows = 64;
constexpr int64_t kMaxD = 64;
// The largest d of the transpose-free row kernels (one row of D in kSmallD lanes).
constexpr int64_t kSmallD = 16;

template <typename T>
struct StepArgs {
  T* w;
  const T* g;
  T* b1;       // momentum buffer / exp_avg (null for plain SGD)
  T* b2;       // exp_avg_sq (Adam only)
  T* prev;     // where D is kept for the next hypergradient (SGD, Adam; null otherwise)
  const T* P;  // M M^T, [d, d] row-major (row kernels only; rows of kSmallD lanes for d <= kSmallD)
  int64_t d;
  Base base;
  bool first;  // step 1: the momentum buffer starts as the gradient
  T lr, momentum, beta1, beta2, eps, wd;
  T bc1, bc2_sqrt;  // Adam's bias corrections at this step: 1 - beta1^t, sqrt(1 - beta2^t)
};

template <typename T>
struct HyperArgs {
  const T* dprev;  // D_{t-1}
  const T* g;
  const T* w;
  T wd;
  int64_t d;
};

#define HEBBKERN_FOP_DECLARE(ISA)                                                                \
  namespace ISA {                                                                                \
  void step_rows(const StepArgs<float>& a, int64_t r0, int64_t r1);                              \
  void step_rows(const StepArgs<double>& a, int64_t r0, int64_t r1);                             \
  void step_elements(const StepArgs<float>& a, int64_t i0, int64_t i1, bool store);              \
  void step_elements(const StepArgs<double>& a, int64_t i0, int64_t i1, bool store);             \
  void hyper_rows(const HyperArgs<float>& a, int64_t r0, int64_t r1, double* S, float* lanes);   \
  void hyper_rows(const HyperArgs<double>& a, int64_t r0, int64_t r1, double* S, double* lanes); \
  void small_pass1(const StepArgs<float>& a, int64_t r0, int64_t r1, double* S);                 \
  void small_pass1(const StepArgs<double>& a, int64_t r0, int64_t r1, double* S);                \
  void small_pass2(const StepArgs<float>& a, int64_t r0, int64_t r1);                            \
  void small_pass2(const StepArgs<double>& a, int64_t r0, int64_t r1);                           \
  }

HEBBKERN_FOR_EACH_CPU_ISA(HEBBKERN_FOP_DECLARE)
#undef HEBBKERN_FOP_DECLARE

}  // namespace hebbkern::fop_cpu
