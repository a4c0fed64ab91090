// CUDA kernels of the plastic recurrent layer: one thread block per sample runs all T steps of
// the forward (or of the backward) in one launch, with the trace in shared memory when it fits.
// The kernel bodies are plastic_rnn_block.h, also run on the CPU by the emulation the tests use.
#include "cuda/plastic_rnn_launch.h"

namespace hebbkern::cuda_kernels {

namespace {

template <Rule R, typename T>
__global__ void __launch_bounds__(kThreads, 1)
    plastic_rnn_fwd_kernel(const simt::RnnParams<T> p, const RnnFwdOut<T> o,
                           const simt::Placement pl, T* scratch) {
  extern __shared__ __align__(16) unsigned char smem[];
  simt::forward_sample<R>(simt::CudaBlock{}, p, o, blockIdx.x, pl, reinterpret_cast<T*>(smem),
                          scratch);
}

template <Rule R, typename T>
__global__ void __launch_bounds__(kThreads, 1)
    plastic_rnn_bwd_kernel(const simt::RnnParams<T> p, const RnnBwdIn<T> in, const RnnBwdOut<T> o,
                           const simt::Placement pl, T* scratch) {
  extern __shared__ __align__(16) unsigned char smem[];
  simt::backward_sample<R>(simt::CudaBlock{}, p, in, o, blockIdx.x, pl, reinterpret_cast<T*>(smem),
                           scratch);
}

// Above 48 KiB of dynamic shared memory a kernel must opt in.
template <typename K>
cudaError_t allow_smem(K kernel, int64_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(bytes));
}

template <Rule R, typename T>
cudaError_t forward_rule(const simt::RnnParams<T>& p, const RnnFwdOut<T>& o,
                         const simt::Placement& pl, T* scratch, cudaStream_t stream) {
  const auto kernel = plastic_rnn_fwd_kernel<R, T>;
  if (const cudaError_t e = allow_smem(kernel, pl.smem_bytes); e != cudaSuccess) return e;
  kernel<<<static_cast<unsigned>(p.B), pl.threads, pl.smem_bytes, stream>>>(p, o, pl, scratch);
  return cudaGetLastError();
}

template <Rule R, typename T>
cudaError_t backward_rule(const simt::RnnParams<T>& p, const RnnBwdIn<T>& in, const RnnBwdOut<T>& o,
                          const simt::Placement& pl, T* scratch, cudaStream_t stream) {
  const auto kernel = plastic_rnn_bwd_kernel<R, T>;
  if (const cudaError_t e = allow_smem(kernel, pl.smem_bytes); e != cudaSuccess) return e;
  kernel<<<static_cast<unsigned>(p.B), pl.threads, pl.smem_bytes, stream>>>(p, in, o, pl, scratch);
  return cudaGetLastError();
}

}  // namespace

int64_t smem_budget(int device) {
  int bytes = 0;
  if (cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
      cudaSuccess)
    return -1;
  return bytes;
}

template <typename T>
cudaError_t launch_forward(Rule rule, const simt::RnnParams<T>& p, const RnnFwdOut<T>& o,
                           const simt::Placement& pl, T* scratch, cudaStream_t stream) {
  switch (rule) {
    case Rule::Hebb: return forward_rule<Rule::Hebb>(p, o, pl, scratch, stream);
    case Rule::Oja: return forward_rule<Rule::Oja>(p, o, pl, scratch, stream);
    case Rule::Clip: return forward_rule<Rule::Clip>(p, o, pl, scratch, stream);
    case Rule::Neuromod: return forward_rule<Rule::Neuromod>(p, o, pl, scratch, stream);
    case Rule::Retro: return forward_rule<Rule::Retro>(p, o, pl, scratch, stream);
  }
  return cudaErrorInvalidValue;
}

template <typename T>
cudaError_t launch_backward(Rule rule, const simt::RnnParams<T>& p, const RnnBwdIn<T>& in,
                            const RnnBwdOut<T>& o, const simt::Placement& pl, T* scratch,
                            cudaStream_t stream) {
  switch (rule) {
    case Rule::Hebb: return backward_rule<Rule::Hebb>(p, in, o, pl, scratch, stream);
    case Rule::Oja: return backward_rule<Rule::Oja>(p, in, o, pl, scratch, stream);
    case Rule::Clip: return backward_rule<Rule::Clip>(p, in, o, pl, scratch, stream);
    case Rule::Neuromod: return backward_rule<Rule::Neuromod>(p, in, o, pl, scratch, stream);
    case Rule::Retro: return backward_rule<Rule::Retro>(p, in, o, pl, scratch, stream);
  }
  return cudaErrorInvalidValue;
}

#define HEBBKERN_INSTANTIATE(T)                                                                \
  template cudaError_t launch_forward<T>(Rule, const simt::RnnParams<T>&, const RnnFwdOut<T>&, \
                                         const simt::Placement&, T*, cudaStream_t);            \
  template cudaError_t launch_backward<T>(Rule, const simt::RnnParams<T>&, const RnnBwdIn<T>&, \
                                          const RnnBwdOut<T>&, const simt::Placement&, T*,     \
                                          cudaStream_t);
HEBBKERN_INSTANTIATE(float)
HEBBKERN_INSTANTIATE(double)
#undef HEBBKERN_INSTANTIATE

}  // namespace hebbkern::cuda_kernels
