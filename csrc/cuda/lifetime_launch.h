// Entry point of the CUDA lifetime kernel (csrc/cuda/lifetime.cu) for csrc/lifetime_simt.cpp.
// No torch here: nvcc alone compiles and checks it.
#pragma once

#include <cuda_runtime_api.h>

#include "hebbkern/lifetime_block.h"

namespace hebbkern::cuda_kernels {

// One block per individual, simt::lifetime_geometry(B).
template <typename T>
cudaError_t launch_lifetime(const simt::LifetimeArgs<T>& a, cudaStream_t stream);

}  // namespace hebbkern::cuda_kernels
