// CUDA kernels of trace_update with a per-sample trace: the block bodies of trace_update_block.h
// on a grid of B * R blocks (the emulation in csrc/cpu/trace_update_emulated.cpp runs the same
// bodies).
#include "cuda/trace_update_launch.h"

namespace hebbkern::cuda_kernels {

namespace {

// Both kernels read their block's index through the same geometry as the launch below and the
// emulation (simt::trace_update_grid, trace_update_block_pos).
template <Rule R, typename T>
__global__ void __launch_bounds__(kTraceUpdateThreads)
    trace_update_fwd_kernel(const simt::TraceUpdateArgs<T> a, T* out) {
  simt::trace_update_forward_kernel<R>(simt::CudaBlock{}, a, simt::cuda_block_index(), out);
}

template <Rule R, typename T>
__global__ void __launch_bounds__(kTraceUpdateThreads)
    trace_update_bwd_kernel(const simt::TraceUpdateArgs<T> a, const T* G, T* dH, T* dpre, T* part,
                            bool part_in_smem, T* cols) {
  extern __shared__ __align__(16) unsigned char smem[];
  simt::trace_update_backward_kernel<R>(simt::CudaBlock{}, a, simt::cuda_block_index(), G, dH, dpre,
                                        part_in_smem ? reinterpret_cast<T*>(smem) : nullptr, part,
                                        cols);
}

// The launch's grid, from the function the emulation enumerates.
template <typename T>
cudaError_t grid_of(const simt::TraceUpdateArgs<T>& a, dim3* g) {
  const simt::Grid gr = simt::trace_update_grid(a.B, a.R);
  if (!simt::grid_fits_cuda(gr)) return cudaErrorInvalidConfiguration;
  *g = simt::to_dim3(gr);
  return cudaSuccess;
}

}  // namespace

template <typename T>
cudaError_t launch_trace_update_forward(Rule rule, const simt::TraceUpdateArgs<T>& a, T* out,
                                        cudaStream_t stream) {
  dim3 g;
  if (const cudaError_t e = grid_of(a, &g); e != cudaSuccess) return e;
  switch (rule) {
    case Rule::Hebb:
      trace_update_fwd_kernel<Rule::Hebb, T><<<g, kTraceUpdateThreads, 0, stream>>>(a, out);
      break;
    case Rule::Oja:
      trace_update_fwd_kernel<Rule::Oja, T><<<g, kTraceUpdateThreads, 0, stream>>>(a, out);
      break;
    default: trace_update_fwd_kernel<Rule::Clip, T><<<g, kTraceUpdateThreads, 0, stream>>>(a, out);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_trace_update_backward(Rule rule, const simt::TraceUpdateArgs<T>& a, const T* G,
                                         T* dH, T* dpre, T* part, bool part_in_smem, T* cols,
                                         cudaStream_t stream) {
  dim3 g;
  if (const cudaError_t e = grid_of(a, &g); e != cudaSuccess) return e;
  const size_t smem =
      part_in_smem ? sizeof(T) * simt::trace_update_scratch(a.K, kTraceUpdateThreads) : 0;
  switch (rule) {
    case Rule::Hebb:
      trace_update_bwd_kernel<Rule::Hebb, T>
          <<<g, kTraceUpdateThreads, smem, stream>>>(a, G, dH, dpre, part, part_in_smem, cols);
      break;
    case Rule::Oja:
      trace_update_bwd_kernel<Rule::Oja, T>
          <<<g, kTraceUpdateThreads, smem, stream>>>(a, G, dH, dpre, part, part_in_smem, cols);
      break;
    default:
      trace_update_bwd_kernel<Rule::Clip, T>
          <<<g, kTraceUpdateThreads, smem, stream>>>(a, G, dH, dpre, part, part_in_smem, cols);
  }
  return cudaGetLastError();
}

#define HEBBKERN_INSTANTIATE(T)                                                                  \
  template cudaError_t launch_trace_update_forward<T>(Rule, const simt::TraceUpdateArgs<T>&, T*, \
                                                      cudaStream_t);                             \
  template cudaError_t launch_trace_update_backward<T>(                                          \
      Rule, const simt::TraceUpdateArgs<T>&, const T*, T*, T*, T*, bool, T*, cudaStream_t);
HEBBKERN_INSTANTIATE(float)
HEBBKERN_INSTANTIATE(double)
#undef HEBBKERN_INSTANTIATE

}  // namespace hebbkern::cuda_kernels
