// FOP row kernels for any x86-64 (or other) CPU: the baseline instruction set.
#include <cmath>

#include "fop_kernel_args.h"

#define HEBBKERN_FOP_ISA isa_default
#include "fop_kernel.h"
