// plastic_step CPU kernels for x86-64 with AVX-512 (F, VL, BW, DQ), picked at run time
// (plastic_step.cpp). Library headers come before the target switch, as in
// plastic_rnn_isa_avx2.cpp.
#include <cmath>
#include <cstring>

#include "plastic_step_kernel_args.h"
#include "vec_math.h"

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512")
#define HEBBKERN_CPU_ISA isa_avx512
#include "plastic_step_kernel.h"
#pragma GCC pop_options
#endif
