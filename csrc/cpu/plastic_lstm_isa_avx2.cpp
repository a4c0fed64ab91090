// plastic_lstm CPU kernels for x86-64 with AVX2 and FMA, picked at run time.
// Library headers are included before the target switch so that only hebbkern's own kernels (all
// with internal linkage) are compiled for this instruction set.
#include <math.h>

#include <cstdint>

#include "plastic_lstm_kernel_args.h"

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define HEBBKERN_CPU_ISA isa_avx2
#include "plastic_lstm_kernel.h"
#pragma GCC pop_options
#endif
