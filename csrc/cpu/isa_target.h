// The instruction set of one compilation of a CPU kernel source (csrc/cpu/<family>_kernel.cpp).
//
// The build compiles each kernel source once per instruction set, defining one of
// HEBBKERN_CPU_ISA_{DEFAULT,AVX2,AVX512} (setup.py: a generated two-line file per instruction set;
// CMakeLists.txt: one object library per instruction set). A kernel source includes its library
// headers first and this header after them, so only hebbkern's own code (all with internal linkage
// but the entry points) is compiled for the instruction set, and ends with HEBBKERN_CPU_ISA_END.
// Defines HEBBKERN_CPU_ISA, the namespace of the entry points, and HEBBKERN_CPU_VEC_BYTES, the
// width of a native vector.
#if defined(HEBBKERN_CPU_ISA_DEFAULT)
#define HEBBKERN_CPU_ISA isa_default
#define HEBBKERN_CPU_VEC_BYTES 16
#define HEBBKERN_CPU_ISA_END
#elif !(defined(__GNUC__) && defined(__x86_64__))
#error "the AVX2/AVX-512 kernels are for x86-64 with GCC or Clang"
#elif defined(HEBBKERN_CPU_ISA_AVX2)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define HEBBKERN_CPU_ISA isa_avx2
#define HEBBKERN_CPU_VEC_BYTES 32
#define HEBBKERN_CPU_ISA_END _Pragma("GCC pop_options")
#elif defined(HEBBKERN_CPU_ISA_AVX512)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512")
#define HEBBKERN_CPU_ISA isa_avx512
#define HEBBKERN_CPU_VEC_BYTES 64
#define HEBBKERN_CPU_ISA_END _Pragma("GCC pop_options")
#else
#error "a CPU kernel source is compiled by the build once per instruction set (see isa.h)"
#endif
