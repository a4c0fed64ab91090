// The run-time choice of instruction set for every CPU kernel family (isa.h).
#include "isa.h"

#include <cstdlib>
#include <cstring>

namespace hebbkern {
namespace cpu {

Isa detected_isa() {
#if defined(__GNUC__) && defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
  return Isa::Default;
}

Isa active_isa() {
  static const Isa best = detected_isa();
  // HEBBKERN_CPU_ISA=default|avx2|avx512 caps the choice (tests run every variant this way).
  const char* cap = std::getenv("HEBBKERN_CPU_ISA");
  if (cap == nullptr || *cap == '\0') return best;
  Isa want = Isa::Avx512;
  if (std::strcmp(cap, "default") == 0)
    want = Isa::Default;
  else if (std::strcmp(cap, "avx2") == 0)
    want = Isa::Avx2;
  return static_cast<int>(want) < static_cast<int>(best) ? want : best;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "default";
  }
}

}  // namespace cpu
}  // namespace hebbkern
