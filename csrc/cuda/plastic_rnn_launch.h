// Entry points of the CUDA plastic_rnn kernels (csrc/cuda/plastic_rnn.cu) for the torch-facing
// code (csrc/plastic_rnn_simt.cpp). Nothing here includes torch, so the kernels compile, and their
// register and shared-memory use is checked, with nvcc alone
// (tests/test_cuda_build.py).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "hebbkern/plastic_rnn_block.h"
#include "hebbkern/plastic_rnn_cluster_backward.h"

namespace hebbkern::cuda_kernels {

// Threads per block: 16 warps. The kernels are compiled with __launch_bounds__ for it.
constexpr int kThreads = 512;

// Shared memory one block may use on `device` (the opt-in maximum: 227 KiB on sm_90, 163 KiB on
// sm_80), or -1 on error.
int64_t smem_budget(int device);

// What the device offers the launch rules (simt::plan_cluster, plan_cluster_bwd): its SM count,
// and the largest cluster. Where the cluster kernels loaded for the device are sm_90's: 16 where a
// cluster of 16 blocks of the largest shared memory can be resident (non-portable size), else 8.
// Where they are compiled for an earlier architecture (their blocks synchronise through global
// memory, simt::CudaGridCluster) and the device takes cooperative launches: 16 and global_sync
// (the rules then keep B * c <= sm_count). Else 1. Queried once per device; {0, 0} on error.
simt::LaunchCaps launch_caps(int device);

// The cluster forward (plastic_rnn_block.h, forward_cluster_sample): pl.c blocks per sample. With
// mb.mail null, a thread-block cluster each (sm_90 code); else a cooperative launch whose blocks
// synchronise through `mb` (code below sm_90): mb.mail holds B * pl.c * mb.bytes bytes, mb.arrivals
// B zeros (simt::Mailbox).
template <typename T>
cudaError_t launch_forward_cluster(Rule rule, const simt::RnnParams<T>& p, const RnnFwdOut<T>& o,
                                   const simt::ClusterPlacement& pl, const simt::Mailbox& mb,
                                   cudaStream_t stream);

// The cluster backward (plastic_rnn_cluster_backward.h): pl.c blocks per sample, as the forward;
// `scratch` holds B * pl.c * pl.scratch_per_block elements.
template <typename T>
cudaError_t launch_backward_cluster(Rule rule, const simt::RnnParams<T>& p, const RnnBwdIn<T>& in,
                                    const RnnBwdOut<T>& o, const simt::ClusterBwdPlacement& pl,
                                    const simt::Mailbox& mb, T* scratch, cudaStream_t stream);

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
