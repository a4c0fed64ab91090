// trace_update CPU kernels for x86-64 with AVX2 and FMA, picked at run time (trace_update.cpp).
// Library headers come before the target switch, as in plastic_rnn_isa_avx2.cpp.
#include "layer_kernel_args.h"

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define HEBBKERN_CPU_ISA isa_avx2
#include "trace_update_kernel.h"
#pragma GCC pop_options
#endif
