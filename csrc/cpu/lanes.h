// Row sums for the CPU row kernels, kept in vector registers.
//
// Why not `#pragma omp simd reduction(+ : s)`: GCC (12) compiles its end to the L lane partials
// stored to the stack and added back one after the other (L - 1 dependent scalar adds, about 60
// cycles per row with AVX-512 floats), then a scalar loop over the N mod L leftover elements. In
// plastic_step's post_pre forward mat-vec (a dot product per row) that epilogue took most of the
// time (benchmarks/NOTES.md P11). Here (lane_sum) the term stays scalar code, vectorised by `omp
// simd` over the L lanes of a group; each group's terms are added to a vector accumulator (GCC
// vector extensions); the leftover N mod L elements run as one more full-width group that overlaps
// the last one, its lanes already done set to zero; at the end the accumulator's halves are added
// in registers, log2(L) times. Array-only forms
// of the same (an accumulator array, a tree over it) made GCC keep the partials on the stack, or
// read them back through store-forwarding stalls (P11).
//
// Used where it was measured to pay: the post_pre forward mat-vec (-11% for the forward op alone,
// -3% for the maze agent loop). The backward's trace pass (three sums per row, stores in its body)
// was measured slower in the agent loop in this form and keeps its `omp simd` reductions.
//
// Summation order: element k's term goes to lane k mod L (a leftover to its lane in the
// overlapping group), the lanes are added as a tree. It depends on N and the instruction set only,
// never on the thread count.
//
// Included after isa_target.h: compiled for the including source's instruction set (its
// HEBBKERN_CPU_VEC_BYTES), with internal linkage.
#pragma once

#ifndef HEBBKERN_CPU_ISA
#error "include isa_target.h before lanes.h"
#endif

#include <cstdint>
#include <cstring>
#include <utility>

// The term given to lane_sum: inlined, so that the loop around it vectorises.
#define HK_VEC_LAMBDA __attribute__((always_inline))

namespace hebbkern {
namespace cpu {
namespace HEBBKERN_CPU_ISA {
namespace {

// Native vectors of the instruction set (HEBBKERN_CPU_VEC_BYTES, set by isa_target.h), as GCC
// vector extensions (an alias template would drop the attribute on the dependent type, hence the
// specialisations). V: a native vector; U: the same loaded or stored at any element alignment.
// Also used by fop_kernel.cpp.
template <typename T>
struct Vec;
template <>
struct Vec<float> {
  typedef float V __attribute__((vector_size(HEBBKERN_CPU_VEC_BYTES)));
  typedef float U __attribute__((vector_size(HEBBKERN_CPU_VEC_BYTES), aligned(4), may_alias));
};
template <>
struct Vec<double> {
  typedef double V __attribute__((vector_size(HEBBKERN_CPU_VEC_BYTES)));
  typedef double U __attribute__((vector_size(HEBBKERN_CPU_VEC_BYTES), aligned(8), may_alias));
};

// Elements of T in one native vector.
template <typename T>
constexpr int64_t kVecLanes = HEBBKERN_CPU_VEC_BYTES / sizeof(T);

template <typename V, std::size_t... I>
__attribute__((always_inline)) inline auto add_halves(V v, std::index_sequence<I...>) {
  return __builtin_shufflevector(v, v, I...) + __builtin_shufflevector(v, v, (I + sizeof...(I))...);
}

// The sum of v's elements: its halves added, recursively.
template <typename T, typename V>
__attribute__((always_inline)) inline T vec_total(V v) {
  constexpr std::size_t n = sizeof(V) / sizeof(T);
  if constexpr (n == 1) {
    return v[0];
  } else {
    return vec_total<T>(add_halves(v, std::make_index_sequence<n / 2>{}));
  }
}

// The sum of term(k) over k in [0, N) (term: a loop body of scalar code, inlined). Full groups of
// L elements run as one vector iteration each, their terms added to a vector accumulator; the
// leftover N mod L run first, as the group [N - L, N) with its lanes before the leftovers (which
// the last full group does) set to zero; for N < L, a short loop. The terms go through a small
// array that the vectoriser writes as one vector and the accumulator reads back whole.
template <typename T, typename Term>
__attribute__((always_inline)) inline T lane_sum(int64_t N, Term&& term) {
  using V = typename Vec<T>::V;
  constexpr int L = kVecLanes<T>;
  V acc = {};
  T put[L];
  auto add = [&]() __attribute__((always_inline)) {
    V v;
    std::memcpy(&v, put, sizeof v);
    acc += v;
  };
  const int64_t full = N - N % L;
  if (N < L) {
    for (int l = 0; l < L; ++l) put[l] = l < N ? term(l) : T(0);
    add();
    return vec_total<T>(acc);
  }
  if (full < N) {
    const int64_t start = N - L;
    const int skip = static_cast<int>(full - start);
#pragma omp simd
    for (int l = 0; l < L; ++l) put[l] = l >= skip ? term(start + l) : T(0);
    add();
  }
  for (int64_t k0 = 0; k0 < full; k0 += L) {
#pragma omp simd
    for (int l = 0; l < L; ++l) put[l] = term(k0 + l);
    add();
  }
  return vec_total<T>(acc);
}

}  // namespace
}  // namespace HEBBKERN_CPU_ISA
}  // namespace cpu
}  // namespace hebbkern
