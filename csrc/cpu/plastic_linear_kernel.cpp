// Loops of the CPU plastic_linear kernels, compiled once per instruction set by the build
// (isa_target.h); the entry points are declared in plastic_linear.cpp. Internal linkage only, so
// the per-ISA copies never merge.
#include <cstdint>

#include "hebbkern/plastic_rules.h"

// Everything below is compiled for this compilation's instruction set (isa_target.h).
#include "isa_target.h"

namespace hebbkern {
namespace cpu {
namespace HEBBKERN_CPU_ISA {
namespace {

// z[b, :] += sum_i x[b, i] * (A[i, :] * H[b, i, :]) for samples b0 .. b1-1.
template <typename T>
void plastic_part(const T* xp, const T* Ap, const T* Hp, T* zp, int64_t M, int64_t K, int64_t b0,
                  int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    T* __restrict__ zb = zp + b * K;
    for (int64_t i = 0; i < M; ++i) {
      const T xi = xp[b * M + i];
      const T* __restrict__ Arow = Ap + i * K;
      const T* __restrict__ Hrow = Hp + (b * M + i) * K;
#pragma omp simd
      for (int64_t j = 0; j < K; ++j) zb[j] += xi * Arow[j] * Hrow[j];
    }
  }
}

// Rows i0 .. i1-1 of the backward pass over a per-sample trace: writes dH and dA (summed over b in
// order), adds the plastic part of dx.
template <typename T>
void plastic_part_backward(const T* xp, const T* gp, const T* Ap, const T* Hp, T* dxp, T* dAp,
                           T* dHp, int64_t B, int64_t M, int64_t K, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) {
    const T* __restrict__ Arow = Ap + i * K;
    T* __restrict__ dArow = dAp + i * K;
    for (int64_t j = 0; j < K; ++j) dArow[j] = T(0);
    for (int64_t b = 0; b < B; ++b) {
      const T xi = xp[b * M + i];
      const T* __restrict__ g = gp + b * K;
      const T* __restrict__ Hrow = Hp + (b * M + i) * K;
      T* __restrict__ dHrow = dHp + (b * M + i) * K;
      T acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t j = 0; j < K; ++j) {
        const T xg = xi * g[j];
        dHrow[j] = Arow[j] * xg;
        dArow[j] += xg * Hrow[j];
        acc += Arow[j] * Hrow[j] * g[j];
      }
      dxp[b * M + i] += acc;
    }
  }
}

}  // namespace

#define HEBBKERN_PLASTIC_LINEAR_ENTRIES(T)                                                       \
  void plastic_linear_forward(const T* x, const T* A, const T* H, T* z, int64_t M, int64_t K,    \
                              int64_t b0, int64_t b1) {                                          \
    plastic_part<T>(x, A, H, z, M, K, b0, b1);                                                   \
  }                                                                                              \
  void plastic_linear_backward(const T* x, const T* g, const T* A, const T* H, T* dx, T* dA,     \
                               T* dH, int64_t B, int64_t M, int64_t K, int64_t i0, int64_t i1) { \
    plastic_part_backward<T>(x, g, A, H, dx, dA, dH, B, M, K, i0, i1);                           \
  }
HEBBKERN_PLASTIC_LINEAR_ENTRIES(float)
HEBBKERN_PLASTIC_LINEAR_ENTRIES(double)
#undef HEBBKERN_PLASTIC_LINEAR_ENTRIES

}  // namespace HEBBKERN_CPU_ISA
}  // namespace cpu
}  // namespace hebbkern

HEBBKERN_CPU_ISA_END
