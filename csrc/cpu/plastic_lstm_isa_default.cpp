// plastic_lstm CPU kernels for the baseline instruction set of the build target.
// Library headers are included before the target switch so that only hebbkern's own kernels (all
// with internal linkage) are compiled for this instruction set.
#include <math.h>

#include <cstdint>

#include "plastic_lstm_kernel_args.h"

#define HEBBKERN_CPU_ISA isa_default
#include "plastic_lstm_kernel.h"
