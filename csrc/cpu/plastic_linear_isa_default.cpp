// plastic_linear CPU kernels for the baseline instruction set of the build target.
#include "layer_kernel_args.h"

#define HEBBKERN_CPU_ISA isa_default
#include "plastic_linear_kernel.h"
