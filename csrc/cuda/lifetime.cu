// CUDA kernel of the lifetime op: the block body of hebbkern/lifetime_block.h, one block per
// individual (the emulation in csrc/lifetime_simt.cpp runs the same body on the same grid).
#include "cuda/lifetime_launch.h"

namespace hebbkern::cuda_kernels {

namespace {

template <typename T>
__global__ void __launch_bounds__(simt::kLifetimeThreads)
    lifetime_fwd_kernel(const simt::LifetimeArgs<T> a) {
  simt::lifetime_block<T>(simt::CudaBlock{}, a, blockIdx.x);
}

}  // namespace

template <typename T>
cudaError_t launch_lifetime(const simt::LifetimeArgs<T>& a, cudaStream_t stream) {
  const simt::LifetimeGeometry g = simt::lifetime_geometry(a.B);
  lifetime_fwd_kernel<T><<<static_cast<unsigned>(g.blocks), g.threads, 0, stream>>>(a);
  return cudaGetLastError();
}

template cudaError_t launch_lifetime<float>(const simt::LifetimeArgs<float>&, cudaStream_t);
template cudaError_t launch_lifetime<double>(const simt::LifetimeArgs<double>&, cudaStream_t);

}  // namespace hebbkern::cuda_kernels
