// The FOP row kernels, compiled once per instruction set (fop_isa_*.cpp include this header inside
// a `#pragma GCC target` region, with HEBBKERN_FOP_ISA naming the namespace). Loops are written so
// the compiler vectorises them: fixed-width lane accumulators instead of float reductions, and
// blocks of kRows rows transposed into L1 buffers so that the small [d, d] products run along rows.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "fop_kernel_args.h"

namespace hebbkern::fop_cpu::HEBBKERN_FOP_ISA {

namespace {

constexpr int64_t kLanes = 16;

// The base optimiser at element i: updates its state and returns this step's direction.
template <typename T, Base B>
inline T direction(const StepArgs<T>& a, int64_t i) {
  const T g = a.wd == T(0) ? a.g[i] : a.g[i] + a.wd * a.w[i];
  if constexpr (B == Base::Adam) {
    const T m = a.b1[i] * a.beta1 + (T(1) - a.beta1) * g;
    const T s = a.b2[i] * a.beta2 + (T(1) - a.beta2) * g * g;
    a.b1[i] = m;
    a.b2[i] = s;
    return (m / a.bc1) / (std::sqrt(s) / a.bc2_sqrt + a.eps);
  } else if constexpr (B == Base::Momentum) {
    const T b = a.first ? g : a.b1[i] * a.momentum + g;
    a.b1[i] = b;
    return b;
  } else {
    return g;
  }
}

// Elements [i0, i1) without preconditioning (P = None): W -= lr * D; with `store` (the large-d
// path), D is written to the previous-direction buffer for the GEMM that follows instead.
template <typename T, Base B>
void elementwise(const StepArgs<T>& args, int64_t i0, int64_t i1, bool store) {
  // A local copy: stores through the state pointers cannot alias its scalars, so the loop keeps
  // them in registers and vectorises.
  const StepArgs<T> a = args;
  if (store) {
    T* out = B == Base::Momentum ? a.b1 : a.prev;
    for (int64_t i = i0; i < i1; ++i) {
      const T d = direction<T, B>(a, i);
      if constexpr (B != Base::Momentum) out[i] = d;
    }
    return;
  }
  for (int64_t i = i0; i < i1; ++i) a.w[i] -= a.lr * direction<T, B>(a, i);
}

// Rows [r0, r1) of a preconditioned parameter with d <= kMaxD: the base update, D (kept in
// `prev` where the next hypergradient needs it), then W_row -= lr * D_row P.
template <typename T, Base B>
void rows(const StepArgs<T>& args, int64_t r0, int64_t r1) {
  const StepArgs<T> a = args;  // see elementwise()
  const int64_t d = a.d;
  T dir[kRows * kMaxD], dt[kRows * kMaxD], out[kRows];
  for (int64_t rb = r0; rb < r1; rb += kRows) {
    const int64_t nr = std::min(kRows, r1 - rb);
    const int64_t e0 = rb * d, n = nr * d;
    for (int64_t e = 0; e < n; ++e) dir[e] = direction<T, B>(a, e0 + e);
    if (a.prev != nullptr) std::copy(dir, dir + n, a.prev + e0);
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t j = 0; j < d; ++j) dt[j * kRows + r] = dir[r * d + j];
    for (int64_t k = 0; k < d; ++k) {
      for (int64_t r = 0; r < nr; ++r) out[r] = T(0);
      for (int64_t j = 0; j < d; ++j) {
        const T p = a.P[j * d + k];
        const T* col = dt + j * kRows;
        for (int64_t r = 0; r < nr; ++r) out[r] += p * col[r];
      }
      T* w = a.w + e0 + k;
      for (int64_t r = 0; r < nr; ++r) w[r * d] -= a.lr * out[r];
    }
  }
}

template <typename T>
void step_rows_t(const StepArgs<T>& a, int64_t r0, int64_t r1) {
  switch (a.base) {
    case Base::Adam: return rows<T, Base::Adam>(a, r0, r1);
    case Base::Momentum: return rows<T, Base::Momentum>(a, r0, r1);
    default: return rows<T, Base::Sgd>(a, r0, r1);
  }
}

template <typename T>
void step_elements_t(const StepArgs<T>& a, int64_t i0, int64_t i1, bool store) {
  switch (a.base) {
    case Base::Adam: return elementwise<T, Base::Adam>(a, i0, i1, store);
    case Base::Momentum: return elementwise<T, Base::Momentum>(a, i0, i1, store);
    default: return elementwise<T, Base::Sgd>(a, i0, i1, store);
  }
}

// S += D^T G over rows [r0, r1) (d <= kMaxD), G = g + wd * w formed on the fly. Each (j, k) pair
// accumulates in kLanes independent lanes (vectorisable, no float reduction), folded into the
// double S once per call.
template <typename T>
void hyper_rows_t(const HyperArgs<T>& args, int64_t r0, int64_t r1, double* S, T* lanes) {
  const HyperArgs<T> a = args;  // see elementwise()
  const int64_t d = a.d;
  T dt[kRows * kMaxD], gt[kRows * kMaxD];
  std::fill(lanes, lanes + d * d * kLanes, T(0));
  for (int64_t rb = r0; rb < r1; rb += kRows) {
    const int64_t nr = std::min(kRows, r1 - rb);
    const int64_t e0 = rb * d;
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t j = 0; j < d; ++j) {
        const int64_t i = e0 + r * d + j;
        dt[j * kRows + r] = a.dprev[i];
        gt[j * kRows + r] = a.wd == T(0) ? a.g[i] : a.g[i] + a.wd * a.w[i];
      }
    const int64_t padded = (nr + kLanes - 1) / kLanes * kLanes;
    for (int64_t j = 0; j < d; ++j)
      for (int64_t r = nr; r < padded; ++r) dt[j * kRows + r] = gt[j * kRows + r] = T(0);
    for (int64_t j = 0; j < d; ++j)
      for (int64_t k = 0; k < d; ++k) {
        T* __restrict acc = lanes + (j * d + k) * kLanes;
        const T* __restrict x = dt + j * kRows;
        const T* __restrict y = gt + k * kRows;
        T sum[kLanes];
        for (int64_t l = 0; l < kLanes; ++l) sum[l] = acc[l];
        for (int64_t r = 0; r < padded; r += kLanes)
          for (int64_t l = 0; l < kLanes; ++l) sum[l] += x[r + l] * y[r + l];
        for (int64_t l = 0; l < kLanes; ++l) acc[l] = sum[l];
      }
  }
  for (int64_t jk = 0; jk < d * d; ++jk) {
    double s = 0;
    for (int64_t l = 0; l < kLanes; ++l) s += lanes[jk * kLanes + l];
    S[jk] += s;
  }
}

}  // namespace

void step_rows(const StepArgs<float>& a, int64_t r0, int64_t r1) { step_rows_t(a, r0, r1); }
void step_rows(const StepArgs<double>& a, int64_t r0, int64_t r1) { step_rows_t(a, r0, r1); }
void step_elements(const StepArgs<float>& a, int64_t i0, int64_t i1, bool store) {
  step_elements_t(a, i0, i1, store);
}
void step_elements(const StepArgs<double>& a, int64_t i0, int64_t i1, bool store) {
  step_elements_t(a, i0, i1, store);
}
void hyper_rows(const HyperArgs<float>& a, int64_t r0, int64_t r1, double* S, float* lanes) {
  hyper_rows_t(a, r0, r1, S, lanes);
}
void hyper_rows(const HyperArgs<double>& a, int64_t r0, int64_t r1, double* S, double* lanes) {
  hyper_rows_t(a, r0, r1, S, lanes);
}

}  // namespace hebbkern::fop_cpu::HEBBKERN_FOP_ISA
