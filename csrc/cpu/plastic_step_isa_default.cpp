// plastic_step CPU kernels for the baseline instruction set of the build target.
#include <cmath>
#include <cstring>

#include "plastic_step_kernel_args.h"
#include "vec_math.h"

#define HEBBKERN_CPU_ISA isa_default
#include "plastic_step_kernel.h"
