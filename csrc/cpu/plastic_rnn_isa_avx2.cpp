// plastic_rnn CPU kernels for x86-64 with AVX2 and FMA, picked at run time (plastic_rnn.cpp).
// Library headers are included before the target switch so that only hebbkern's own kernels (all
// with internal linkage) are compiled for AVX2.
#include <cmath>
#include <cstring>

#include "plastic_rnn_kernel_args.h"
#include "vec_math.h"

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define HEBBKERN_CPU_ISA isa_avx2
#include "plastic_rnn_kernel.h"
#pragma GCC pop_options
#endif
