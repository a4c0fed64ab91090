// Entry points of the CUDA trace_update kernels (csrc/cuda/trace_update.cu) for the torch-facing
// code (csrc/trace_update_simt.cpp). No torch here: nvcc alone compiles and checks them.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "hebbkern/trace_update_block.h"

namespace hebbkern::cuda_kernels {

constexpr int kTraceUpdateThreads = 256;

// Grid of B * a.R blocks. The backward's per-warp partial rows live in dynamic shared memory when
// `part_in_smem` (2 * 8 * K elements), else in `part` ([B * R] blocks of that size).
template <typename T>
cudaError_t launch_trace_update_forward(Rule rule, const simt::TraceUpdateArgs<T>& a, T* out,
                                        cudaStream_t stream);
template <typename T>
cudaError_t launch_trace_update_backward(Rule rule, const simt::TraceUpdateArgs<T>& a, const T* G,
                                         T* dH, T* dpre, T* part, bool part_in_smem, T* cols,
                                         cudaStream_t stream);

}  // namespace hebbkern::cuda_kernels
