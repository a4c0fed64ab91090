// Torch-facing side of the lifetime block kernel (hebbkern/lifetime_block.h): its CPU emulation
// for the tests (hebbkern::_lifetime_emulated_fwd) and, in builds with CUDA, the CUDA
// implementation of hebbkern::lifetime_fwd. Both take the grid from simt::lifetime_geometry().
#include <ATen/Parallel.h>
#include <torch/types.h>

#include "hebbkern/lifetime_block.h"
#include "lifetime.h"

#ifdef HEBBKERN_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "cuda/lifetime_launch.h"
#endif

namespace hebbkern {

namespace {

struct Buffers {
  at::Tensor w, pi, stimuli, targets, keys;
  at::Tensor trial_loss, trial_response, x, r, p, e, mean_loss, weff, delta, scalars;
};

Buffers allocate(const at::Tensor& w, const at::Tensor& pi, const at::Tensor& stimuli,
                 const at::Tensor& targets, const at::Tensor& noise_key) {
  const int64_t B = w.size(0), N = w.size(1), nt = stimuli.size(1);
  const auto dt = w.scalar_type();
  auto opt = w.options();
  Buffers z;
  z.w = w.contiguous();
  z.pi = pi.to(dt).contiguous();
  z.stimuli = stimuli.to(dt).contiguous();
  z.targets = targets.to(dt).contiguous();
  z.keys = noise_key.contiguous();
  z.trial_loss = at::empty({B, nt}, opt);
  z.trial_response = at::empty({B, nt}, opt.dtype(at::kLong));
  z.x = at::empty({B, N}, opt);
  z.r = at::empty({B, N}, opt);
  z.p = at::empty({B, N, N}, opt);
  z.e = at::empty({B, N, N}, opt);
  z.mean_loss = at::empty({B, 4}, opt);
  z.weff = at::empty({B, N, N}, opt);
  z.delta = at::empty({B, N}, opt);
  z.scalars = at::empty({B, simt::kLifetimeScalars}, opt);
  return z;
}

template <typename T>
simt::LifetimeArgs<T> make_args(Buffers& z, int64_t seed, at::IntArrayRef ints,
                                at::ArrayRef<double> floats) {
  simt::LifetimeArgs<T> a{};
  a.w = z.w.data_ptr<T>();
  a.pi = z.pi.data_ptr<T>();
  a.stimuli = z.stimuli.data_ptr<T>();
  a.targets = z.targets.data_ptr<T>();
  a.keys = z.keys.data_ptr<int64_t>();
  a.trial_loss = z.trial_loss.data_ptr<T>();
  a.trial_response = z.trial_response.data_ptr<int64_t>();
  a.x = z.x.data_ptr<T>();
  a.r = z.r.data_ptr<T>();
  a.p = z.p.data_ptr<T>();
  a.e = z.e.data_ptr<T>();
  a.mean_loss = z.mean_loss.data_ptr<T>();
  a.weff = z.weff.data_ptr<T>();
  a.delta = z.delta.data_ptr<T>();
  a.scalars = z.scalars.data_ptr<T>();
  a.B = z.w.size(0);
  a.N = z.w.size(1);
  a.n_trials = z.stimuli.size(1);
  a.seed = static_cast<uint64_t>(seed);
  for (int i = 0; i < lifetime::kNumInts; ++i) a.iv[i] = ints[i];
  for (int i = 0; i < lifetime::kNumFloats; ++i) a.fv[i] = floats[i];
  return a;
}

LifetimeOutputs outputs(const Buffers& z) {
  return {z.trial_loss, z.trial_response, z.x, z.r, z.p, z.e, z.mean_loss};
}

}  // namespace

LifetimeOutputs lifetime_emulated_fwd(const at::Tensor& w, const at::Tensor& pi,
                                      const at::Tensor& stimuli, const at::Tensor& targets,
                                      const at::Tensor& noise_key, int64_t seed,
                                      at::IntArrayRef ints, at::ArrayRef<double> floats,
                                      bool reverse) {
  lifetime_check(w, pi, stimuli, targets, noise_key, seed, ints, floats);
  TORCH_CHECK_VALUE(w.device().is_cpu(), "hebbkern::_lifetime_emulated_fwd: w must be on the CPU");
  Buffers z = allocate(w, pi, stimuli, targets, noise_key);
  const simt::LifetimeGeometry g = simt::lifetime_geometry(w.size(0));
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "lifetime_emulated", [&] {
    const auto a = make_args<scalar_t>(z, seed, ints, floats);
    at::parallel_for(0, g.blocks, 1, [&](int64_t k0, int64_t k1) {
      const simt::EmuBlock blk{g.threads, reverse};
      for (int64_t q = k0; q < k1; ++q) {
        const int64_t k = reverse ? k1 - 1 - (q - k0) : q;  // blocks in varied orders
        simt::lifetime_block<scalar_t>(blk, a, k);
      }
    });
  });
  return outputs(z);
}

#ifdef HEBBKERN_WITH_CUDA
LifetimeOutputs lifetime_fwd_cuda(const at::Tensor& w, const at::Tensor& pi,
                                  const at::Tensor& stimuli, const at::Tensor& targets,
                                  const at::Tensor& noise_key, int64_t seed, at::IntArrayRef ints,
                                  at::ArrayRef<double> floats) {
  lifetime_check(w, pi, stimuli, targets, noise_key, seed, ints, floats);
  TORCH_CHECK_VALUE(w.device().is_cuda(), "hebbkern::lifetime_fwd: w must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(w.device());
  Buffers z = allocate(w, pi, stimuli, targets, noise_key);
  if (w.size(0) == 0) return outputs(z);
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "lifetime_cuda", [&] {
    const auto a = make_args<scalar_t>(z, seed, ints, floats);
    const cudaError_t err =
        cuda_kernels::launch_lifetime<scalar_t>(a, c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err == cudaSuccess,
                "hebbkern::lifetime: CUDA kernel launch failed: ", cudaGetErrorString(err));
  });
  return outputs(z);
}
#endif

}  // namespace hebbkern
