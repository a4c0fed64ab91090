// plastic_rnn CPU kernels for the baseline instruction set of the build target.
#include <cmath>
#include <cstring>

#include "plastic_rnn_kernel_args.h"
#include "vec_math.h"

#define HEBBKERN_CPU_ISA isa_default
#include "plastic_rnn_kernel.h"
