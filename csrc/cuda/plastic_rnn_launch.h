// Entry points of the CUDA plastic_rnn kernels (csrc/cuda/plastic_rnn.cu) for the torch-facing
// code (csrc/plastic_rnn_simt.cpp). Nothing here includes torch, so the kernels compile, and their
// register and shared-memory use is checked, with nvcc alone
// (tests/test_cuda_build.py).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "hebbkern/plastic_rnn_block.h"

namespace hebbkern::cuda_kernels {

// Threads per block: 16 warps. The kernels are compiled with __launch_bounds__ for it.
constexpr int kThreads = 512;

// Shared memory one block may use on `device` (the opt-in maximum: 227 KiB on sm_90, 163 KiB on
// sm_80), or -1 on error.
int64_t smem_budget(int device);

// One block per sample, all T steps in one launch. The caller allocates `scratch` with
// B * pl.scratch_per_sample elements.
template <typename T>
cudaError_t launch_forward(Rule rule, const simt::RnnParams<T>& p, const RnnFwdOut<T>& o,
                           const simt::Placement& pl, T* scratch, cudaStream_t stream);
template <typename T>
cudaError_t launch_backward(Rule rule, const simt::RnnParams<T>& p, const RnnBwdIn<T>& in,
                            const RnnBwdOut<T>& o, const simt::Placement& pl, T* scratch,
                            cudaStream_t stream);

}  // namespace hebbkern::cuda_kernels
