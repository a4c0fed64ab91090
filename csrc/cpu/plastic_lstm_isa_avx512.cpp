// plastic_lstm CPU kernels for x86-64 with AVX-512, picked at run time.
// Library headers are included before the target switch so that only hebbkern's own kernels (all
// with internal linkage) are compiled for this instruction set.
#include <math.h>

#include <cstdint>

#include "plastic_lstm_kernel_args.h"

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512")
#define HEBBKERN_CPU_ISA isa_avx512
#include "plastic_lstm_kernel.h"
#pragma GCC pop_options
#endif
