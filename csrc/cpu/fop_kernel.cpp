// The FOP row kernels, compiled once per instruction set by the build (isa_target.h: a
// `#pragma GCC target` region, with HEBBKERN_CPU_ISA naming the namespace). Loops are written so
// the compiler vectorises them: fixed-width lane accumulators instead of float reductions, and
// blocks of kRows rows transposed into L1 buffers so that the small [d, d] products run along rows.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "fop_kernel_args.h"

// Everything below is compiled for this compilation's instruction set (isa_target.h).
#include "isa_target.h"
#include "lanes.h"

namespace hebbkern::fop_cpu::HEBBKERN_CPU_ISA {

namespace {

constexpr int64_t kLanes = 16;

// The base optimiser at element i given its penalised gradient g and the previous direction old:
// updates the moments (Adam) and returns D_t. The row kernels call it with the previous direction
// they already hold; direction() reads it from the momentum buffer.
template <typename T, Base B>
inline T next_direction(const StepArgs<T>& a, int64_t i, T g, T old) {
  if constexpr (B == Base::Adam) {
    const T m = a.b1[i] * a.beta1 + (T(1) - a.beta1) * g;
    const T s = a.b2[i] * a.beta2 + (T(1) - a.beta2) * g * g;
    a.b1[i] = m;
    a.b2[i] = s;
    return (m / a.bc1) / (std::sqrt(s) / a.bc2_sqrt + a.eps);
  } else if constexpr (B == Base::Momentum) {
    return a.first ? g : old * a.momentum + g;
  } else {
    return g;
  }
}

// The base optimiser at element i: updates its state and returns this step's direction.
template <typename T, Base B>
inline T direction(const StepArgs<T>& a, int64_t i) {
  const T g = a.wd == T(0) ? a.g[i] : a.g[i] + a.wd * a.w[i];
  const T d = next_direction<T, B>(a, i, g, B == Base::Momentum ? a.b1[i] : T(0));
  if constexpr (B == Base::Momentum) a.b1[i] = d;
  return d;
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

// ---- Row kernels for d <= kSmallD (3x3 conv weights: d = 9; 1x1: d = 1) --------------------
//
// One row of D is one kSmallD-lane vector, so the [d, d] products need no transposes. Pass 1 reads
// the kept direction D_{t-1} and G, accumulates S = D_{t-1}^T G and updates the base optimiser's
// state in place, leaving D_t where D_{t-1} was (the momentum buffer, or `prev`); pass 2 reads D_t
// and W and writes W -= lr * D_t P. D = 0: d known only at run time.

// The direction buffer: D_{t-1} on entry of pass 1, D_t after it.
template <typename T, Base B>
inline T* dir_buffer(const StepArgs<T>& a) {
  return B == Base::Momentum ? a.b1 : a.prev;
}

// Native vectors (Vec<T>::V, ::U) and their lanes (kVecLanes<T>): lanes.h. Written out with GCC
// vector extensions, since plain loops over the kSmallD lanes get re-vectorised across rows with
// permutes.
using cpu::HEBBKERN_CPU_ISA::kVecLanes;
using cpu::HEBBKERN_CPU_ISA::Vec;

// Vectors per row of d (all kSmallD lanes when d is known only at run time), and rows of the
// per-row arrays.
template <typename T, int D>
constexpr int64_t kRowVecs = ((D > 0 ? D : kSmallD) + kVecLanes<T> - 1) / kVecLanes<T>;
template <int D>
constexpr int64_t kRowsOf = D > 0 ? D : kSmallD;

// Software prefetch of the next block's n elements from e0 (the row loops between the streaming
// loops leave the hardware prefetchers idle): pass 1 reads the direction buffer and the gradient
// (and the weights with weight decay, the moments for Adam), pass 2 the direction buffer and W.
template <typename T, Base B>
inline void prefetch_block(const StepArgs<T>& a, const T* db, int64_t e0, int64_t n, bool pass1) {
  constexpr int64_t kLine = 64 / sizeof(T);
  for (int64_t e = e0; e < e0 + n; e += kLine) {
    __builtin_prefetch(db + e);
    if (pass1) {
      __builtin_prefetch(a.g + e);
      if (a.wd != T(0)) __builtin_prefetch(a.w + e);
      if constexpr (B == Base::Adam) {
        __builtin_prefetch(a.b1 + e);
        __builtin_prefetch(a.b2 + e);
      }
    } else {
      __builtin_prefetch(a.w + e);
    }
  }
}

// Pass 1 over rows [r0, r1); S (d x d, row-major, in double) accumulated when not null.
template <typename T, Base B, int D>
void small_pass1(const StepArgs<T>& args, int64_t r0, int64_t r1, double* S) {
  using V = typename Vec<T>::V;
  using U = typename Vec<T>::U;
  constexpr int64_t L = kVecLanes<T>, NV = kRowVecs<T, D>;
  const StepArgs<T> a = args;  // see elementwise()
  const int64_t d = D > 0 ? D : a.d;
  T* const db = dir_buffer<T, B>(a);
  T gb[kRows * kSmallD + kSmallD], old[kRows * kSmallD + kSmallD];
  for (int64_t rb = r0; rb < r1; rb += kRows) {
    const int64_t nr = std::min(kRows, r1 - rb);
    const int64_t e0 = rb * d, n = nr * d;
    prefetch_block<T, B>(a, db, e0 + n, std::min(n, (r1 - rb - nr) * d), true);
    for (int64_t e = 0; e < n; ++e) {
      const int64_t i = e0 + e;
      const T g = a.wd == T(0) ? a.g[i] : a.g[i] + a.wd * a.w[i];
      const T o = db[i];
      gb[e] = g;
      old[e] = o;
      db[i] = next_direction<T, B>(a, i, g, o);
    }
    if (S == nullptr) continue;
    // Zero padding: the lanes past the last row (or past n for d = 1) read zeros.
    for (int64_t l = 0; l < kSmallD; ++l) gb[n + l] = old[n + l] = T(0);
    if constexpr (D == 1) {
      V acc = {};
      for (int64_t e = 0; e < n; e += L) acc += *(const U*)(old + e) * *(const U*)(gb + e);
      double s = 0;
      for (int64_t l = 0; l < L; ++l) s += acc[l];
      S[0] += s;
    } else {
      // Row j of S += D_{t-1}[r, j] * G[r, :] over NV vectors (lanes past d read the next row
      // and are dropped).
      V acc[kRowsOf<D>][NV] = {};
      for (int64_t r = 0; r < nr; ++r) {
        const T* x = old + r * d;
        const T* y = gb + r * d;
        V yv[NV];
        for (int64_t v = 0; v < NV; ++v) yv[v] = *(const U*)(y + v * L);
        for (int64_t j = 0; j < d; ++j)
          for (int64_t v = 0; v < NV; ++v) acc[j][v] += x[j] * yv[v];
      }
      for (int64_t j = 0; j < d; ++j)
        for (int64_t k = 0; k < d; ++k) S[j * d + k] += acc[j][k / L][k % L];
    }
  }
}

// Pass 2 over rows [r0, r1): W -= lr * D_t P, with P given as d rows of kSmallD lanes (zeros past
// d).
template <typename T, Base B, int D>
void small_pass2(const StepArgs<T>& args, int64_t r0, int64_t r1) {
  using V = typename Vec<T>::V;
  using U = typename Vec<T>::U;
  constexpr int64_t L = kVecLanes<T>, NV = kRowVecs<T, D>;
  const StepArgs<T> a = args;  // see elementwise()
  const int64_t d = D > 0 ? D : a.d;
  const T* const db = dir_buffer<T, B>(a);
  if constexpr (D == 1) {
    const T c = a.lr * a.P[0];
    for (int64_t i = r0; i < r1; ++i) a.w[i] -= c * db[i];
    return;
  }
  T out[kRows * kSmallD + kSmallD];
  V p[kRowsOf<D>][NV];
  for (int64_t j = 0; j < d; ++j)
    for (int64_t v = 0; v < NV; ++v) p[j][v] = *(const U*)(a.P + j * kSmallD + v * L);
  for (int64_t rb = r0; rb < r1; rb += kRows) {
    const int64_t nr = std::min(kRows, r1 - rb);
    const int64_t e0 = rb * d, n = nr * d;
    prefetch_block<T, B>(a, db, e0 + n, std::min(n, (r1 - rb - nr) * d), false);
    const T* x = db + e0;
    // Each row's lanes past d spill into the next row's place and are overwritten by it.
    for (int64_t r = 0; r < nr; ++r) {
      V o[NV] = {};
      for (int64_t j = 0; j < d; ++j)
        for (int64_t v = 0; v < NV; ++v) o[v] += x[r * d + j] * p[j][v];
      for (int64_t v = 0; v < NV; ++v) *(U*)(out + r * d + v * L) = o[v];
    }
    T* w = a.w + e0;
    for (int64_t e = 0; e < n; ++e) w[e] -= a.lr * out[e];
  }
}

template <typename T, int D>
void small_pass1_b(const StepArgs<T>& a, int64_t r0, int64_t r1, double* S) {
  switch (a.base) {
    case Base::Adam: return small_pass1<T, Base::Adam, D>(a, r0, r1, S);
    case Base::Momentum: return small_pass1<T, Base::Momentum, D>(a, r0, r1, S);
    default: return small_pass1<T, Base::Sgd, D>(a, r0, r1, S);
  }
}

template <typename T>
void small_pass1_t(const StepArgs<T>& a, int64_t r0, int64_t r1, double* S) {
  switch (a.d) {
    case 1: return small_pass1_b<T, 1>(a, r0, r1, S);
    case 9: return small_pass1_b<T, 9>(a, r0, r1, S);
    default: return small_pass1_b<T, 0>(a, r0, r1, S);
  }
}

template <typename T>
void small_pass2_t(const StepArgs<T>& a, int64_t r0, int64_t r1) {
  // Pass 2 only reads the direction buffer: which one depends on the base, nothing else does.
  switch (a.d) {
    case 1:
      return a.base == Base::Momentum ? small_pass2<T, Base::Momentum, 1>(a, r0, r1)
                                      : small_pass2<T, Base::Sgd, 1>(a, r0, r1);
    case 9:
      return a.base == Base::Momentum ? small_pass2<T, Base::Momentum, 9>(a, r0, r1)
                                      : small_pass2<T, Base::Sgd, 9>(a, r0, r1);
    default:
      return a.base == Base::Momentum ? small_pass2<T, Base::Momentum, 0>(a, r0, r1)
                                      : small_pass2<T, Base::Sgd, 0>(a, r0, r1);
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
void small_pass1(const StepArgs<float>& a, int64_t r0, int64_t r1, double* S) {
  small_pass1_t(a, r0, r1, S);
}
void small_pass1(const StepArgs<double>& a, int64_t r0, int64_t r1, double* S) {
  small_pass1_t(a, r0, r1, S);
}
void small_pass2(const StepArgs<float>& a, int64_t r0, int64_t r1) { small_pass2_t(a, r0, r1); }
void small_pass2(const StepArgs<double>& a, int64_t r0, int64_t r1) { small_pass2_t(a, r0, r1); }

}  // namespace hebbkern::fop_cpu::HEBBKERN_CPU_ISA

HEBBKERN_CPU_ISA_END
