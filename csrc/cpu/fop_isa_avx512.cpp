// FOP row kernels for x86-64 with AVX512, picked at run time (fop.cpp). Library headers come
// before the target switch so that only hebbkern's own kernels are compiled for AVX512.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "fop_kernel_args.h"

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
#define HEBBKERN_FOP_ISA isa_avx512
#define HEBBKERN_FOP_VEC_BYTES 64
#include "fop_kernel.h"
#pragma GCC pop_options
#endif
