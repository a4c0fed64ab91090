// Vectorisable float tanh for the CPU kernels.
//
// libm's tanhf is a scalar call (about 10 ns here), and the forward evaluates N of them per sample
// and step: about a fifth of the forward's time at N = 128 (benchmarks/NOTES.md). This version is
// branch-free arithmetic that `#pragma omp simd` loops vectorise (with -fno-trapping-math, which
// lets the compiler compute both sides of a select; setup.py and CMakeLists.txt pass it). It
// follows Cephes' tanhf: an odd polynomial for |x| < 0.625 and 1 - 2 / (exp(2|x|) + 1) above, with
// Cephes' expf. Maximum error against double-precision tanh is checked by
// csrc/tests/test_vec_math.cpp. NaN propagates, tanh(+-inf) = +-1. Included before any `#pragma GCC
// target`, so every ISA build inlines the same (internal) definition.
#pragma once

#include <cstdint>
#include <cstring>

// Forced inline: the vectoriser only handles these inside a loop body; as calls they would keep
// the loop scalar.
#define HK_VEC_INLINE static inline __attribute__((always_inline))

namespace hebbkern {
namespace cpu {

// exp(x) for x in [0, 20] (all that tanh needs). Rounding and 2^n use float and integer bit
// arithmetic only (no float-to-int conversion), which keeps the loops vectorisable.
HK_VEC_INLINE float exp_small_range(float x) {
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float t = x * 1.44269504088896341f + kRound;
  int32_t t_bits;
  std::memcpy(&t_bits, &t, sizeof t_bits);
  const int32_t n = t_bits - 0x4B400000;  // the integer itself, from the mantissa bits
  const float fn = t - kRound;
  float r = x - fn * 0.693359375f;  // x - n ln 2, in two parts (Cody-Waite)
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t scale_bits = (n + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return p * scale;
}

HK_VEC_INLINE float tanh_vec(float x) {
  const bool nan = x != x;
  float a = x < 0.0f ? -x : x;
  a = nan ? 0.0f : (a > 10.0f ? 10.0f : a);  // tanh(10) rounds to 1 in float; exp stays in range
  const float z = a * a;
  float s = -5.70498872745e-3f;
  s = s * z + 2.06390887954e-2f;
  s = s * z - 5.37397155531e-2f;
  s = s * z + 1.33314422036e-1f;
  s = s * z - 3.33332819422e-1f;
  s = s * z * a + a;
  const float l = 1.0f - 2.0f / (exp_small_range(a + a) + 1.0f);
  const float r = a < 0.625f ? s : l;
  return nan ? x : (x < 0.0f ? -r : r);
}

}  // namespace cpu
}  // namespace hebbkern
