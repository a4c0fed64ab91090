// Row sums for the CPU row kernels, kept in vector registers.
//
// Why not `#pragma omp simd reduction(+ : s)`: GCC (12) compiles its end to the L lane partials
// stored to the stack and added back one after the other (L - 1 dependent scalar adds, about 60
// cycles per row with AVX-512 floats), then a scalar loop over the N mod L leftover elements. In
// plastic_step's post_pre forward mat-vec (a dot product per row) that epilogue took most of the
// time (benchmarks/NOTES.md P11). Here the loop body stays scalar code, vectorised by `omp simd`
// over the L lanes of a group; it writes each term to its lane of a small array, and the group's
// terms are added to vector accumulators (GCC vector extensions); the leftover N mod L elements
// run as one more full-width group that overlaps the last one, its lanes already done switched
// off; at the end the accumulator's halves are added in registers, log2(L) times. Array-only forms
// of the same (an accumulator array, a tree over it) made GCC keep the partials on the stack, or
// read them back through store-forwarding stalls (P11).
//
// Used where it was measured to pay: the post_pre forward mat-vec (-11% for the forward op alone,
// -3% for the maze agent loop). The backward's trace pass, with three sums per row and stores in
// its body, was measured slower in the agent loop with it and keeps its `omp simd` reductions.
//
// Summation order: element k's term goes to lane k mod L (the leftovers to their lane in the
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

// A lambda given to for_lanes: inlined, so that the loop around it vectorises.
#define HK_VEC_LAMBDA __attribute__((always_inline))

namespace hebbkern {
namespace cpu {
namespace HEBBKERN_CPU_ISA {
namespace {

// Elements of T in one native vector.
template <typename T>
constexpr int kLanes = HEBBKERN_CPU_VEC_BYTES / sizeof(T);

// One native vector of T (a GCC/Clang vector extension type; an alias template would drop the
// attribute on the dependent type, hence the specialisations).
template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(HEBBKERN_CPU_VEC_BYTES)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(HEBBKERN_CPU_VEC_BYTES)));
};

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

// K row sums. The body of for_lanes writes sum i's term of element k to put[i][l] (every call,
// every i: see for_lanes); total(i) is sum i at the end.
template <typename T, int K>
struct Lanes {
  using V = typename VecOf<T>::type;
  V acc[K] = {};
  T put[K][kLanes<T>];

  __attribute__((always_inline)) void add() {
    for (int i = 0; i < K; ++i) {
      V v;
      std::memcpy(&v, put[i], sizeof v);
      acc[i] += v;
    }
  }
  __attribute__((always_inline)) T total(int i) const { return vec_total<T>(acc[i]); }
};

// body(k, l, on) for every k in [0, N), with l the lane of k. Full groups of L elements run as one
// vector iteration each (on = true). The leftover N mod L run as the group [N - L, N), whose lanes
// before the leftovers the last full group already did: there on = false, and the body must store
// nothing and put zeros (`s.put[i][l] = on ? x : T(0)`). For N < L, a short loop.
template <typename T, int K, typename Body>
__attribute__((always_inline)) inline void for_lanes(int64_t N, Lanes<T, K>& s, Body&& body) {
  constexpr int L = kLanes<T>;
  const int64_t full = N - N % L;
  if (N < L) {
    for (int l = 0; l < L; ++l)
      for (int i = 0; i < K; ++i) s.put[i][l] = T(0);
    for (int l = 0; l < N; ++l) body(l, l, true);
    s.add();
    return;
  }
  if (full < N) {
    // The leftovers first, as the group [N - L, N) with the lanes before `full` off: the full
    // group that overlaps it comes last, when this group's stores have left the store buffer (the
    // other order made an accumulated output's load wait for them: NOTES P11).
    const int64_t start = N - L;
    const int skip = static_cast<int>(full - start);
#pragma omp simd
    for (int l = 0; l < L; ++l) body(start + l, l, l >= skip);
    s.add();
  }
  for (int64_t k0 = 0; k0 < full; k0 += L) {
#pragma omp simd
    for (int l = 0; l < L; ++l) body(k0 + l, l, true);
    s.add();
  }
}

}  // namespace
}  // namespace HEBBKERN_CPU_ISA
}  // namespace cpu
}  // namespace hebbkern
