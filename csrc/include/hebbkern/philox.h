// Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011; the constants of the Random123 library), a counter-based generator: the output is a pure
// function of (counter, key), so a CPU kernel, a CUDA kernel, its CPU emulation and a torch
// reference draw the same bits wherever and in whatever order they run.
//
// hebbkern's lifetime op keys it by (seed, individual, step, neuron); the layout is SPEC.md
// section 10 and its torch twin is hebbkern/reference/philox.py. Nothing here depends on torch.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define HK_PHILOX_HD __host__ __device__ __forceinline__
#else
#define HK_PHILOX_HD inline
#endif

namespace hebbkern {
namespace philox {

struct U32x4 {
  uint32_t v[4];
};

constexpr uint32_t kMul0 = 0xD2511F53u;
constexpr uint32_t kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u;
constexpr uint32_t kWeyl1 = 0xBB67AE85u;

HK_PHILOX_HD void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// Ten rounds; the key is bumped by the Weyl constants between rounds.
HK_PHILOX_HD U32x4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                 uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kWeyl0;
      k1 += kWeyl1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kMul0, c0, hi0, lo0);
    mulhilo(kMul1, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  return U32x4{{c0, c1, c2, c3}};
}

// A word to a uniform in [0, 1) on a 2^-24 grid: exact in float32 and float64 alike.
HK_PHILOX_HD double to_unit(uint32_t w) { return static_cast<double>(w >> 8) * (1.0 / 16777216.0); }

}  // namespace philox
}  // namespace hebbkern
