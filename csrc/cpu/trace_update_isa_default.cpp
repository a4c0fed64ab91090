// trace_update CPU kernels for the baseline instruction set of the build target.
#include "layer_kernel_args.h"

#define HEBBKERN_CPU_ISA isa_default
#include "trace_update_kernel.h"
