// The instruction sets the CPU kernels are compiled for, and the run-time choice between them.
//
// Each csrc/cpu/<family>_kernel.cpp is compiled once per instruction set by the build (setup.py and
// CMakeLists.txt: HEBBKERN_CPU_ISAS), as PyTorch compiles its CPU kernels: the same source, with
// its entry points in namespace hebbkern::cpu::isa_<name> (or <family namespace>::isa_<name>),
// chosen at run time by active_isa(). One wheel runs everywhere and still uses AVX2/AVX-512 where
// the CPU has them. isa_target.h is the per-instruction-set side; this header is the caller's side.
#pragma once

namespace hebbkern {
namespace cpu {

// Instruction sets the kernels are built for, in increasing order.
enum class Isa : int { Default = 0, Avx2 = 1, Avx512 = 2 };
Isa active_isa();  // the best the CPU supports, capped by $HEBBKERN_CPU_ISA
const char* isa_name(Isa isa);

}  // namespace cpu
}  // namespace hebbkern

// DECL(isa_<name>) for every instruction set the build compiles the kernels for: declares a
// family's entry points once per instruction set.
// HEBBKERN_CPU_DISPATCH(isa, ns, fn, args...): `return ns::isa_<name>::fn(args...)` for the
// instruction set `isa` (a cpu::Isa).
#if defined(__GNUC__) && defined(__x86_64__)
#define HEBBKERN_FOR_EACH_CPU_ISA(DECL) DECL(isa_default) DECL(isa_avx2) DECL(isa_avx512)
#define HEBBKERN_CPU_DISPATCH(isa, ns, fn, ...)                                \
  switch (isa) {                                                               \
    case ::hebbkern::cpu::Isa::Avx512: return ns::isa_avx512::fn(__VA_ARGS__); \
    case ::hebbkern::cpu::Isa::Avx2: return ns::isa_avx2::fn(__VA_ARGS__);     \
    default: return ns::isa_default::fn(__VA_ARGS__);                          \
  }
#else
#define HEBBKERN_FOR_EACH_CPU_ISA(DECL) DECL(isa_default)
#define HEBBKERN_CPU_DISPATCH(isa, ns, fn, ...) return ns::isa_default::fn(__VA_ARGS__);
#endif
