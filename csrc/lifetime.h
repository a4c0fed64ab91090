// Declarations of the lifetime kernels (a population's lifetimes of the evolved plastic network,
// SPEC.md section 10), shared by csrc/ops.cpp and csrc/cpu/lifetime.cpp.
#pragma once

#include <torch/types.h>

#include <tuple>
#include <vector>

namespace hebbkern {

// Shapes, dtypes and the schedule's order (TORCH_CHECK_VALUE / TYPE; the Python op checks first).
void lifetime_check(const at::Tensor& w, const at::Tensor& pi, const at::Tensor& stimuli,
                    const at::Tensor& targets, const at::Tensor& noise_key, int64_t seed,
                    at::IntArrayRef ints, at::ArrayRef<double> floats);

using LifetimeOutputs =
    std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// Returns (trial_loss [B, n_trials], trial_response [B, n_trials] int64, x [B, N], r [B, N],
// p [B, N, N], e [B, N, N], mean_loss [B, 4]).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
lifetime_fwd_cpu(const at::Tensor& w, const at::Tensor& pi, const at::Tensor& stimuli,
                 const at::Tensor& targets, const at::Tensor& noise_key, int64_t seed,
                 at::IntArrayRef ints, at::ArrayRef<double> floats);

}  // namespace hebbkern

namespace hebbkern {

// The block kernel (hebbkern/lifetime_block.h) run on the CPU by the emulation (tests), with items
// in reverse order when `reverse`; and on CUDA tensors (builds with CUDA only).
LifetimeOutputs lifetime_emulated_fwd(const at::Tensor& w, const at::Tensor& pi,
                                      const at::Tensor& stimuli, const at::Tensor& targets,
                                      const at::Tensor& noise_key, int64_t seed,
                                      at::IntArrayRef ints, at::ArrayRef<double> floats,
                                      bool reverse);
LifetimeOutputs lifetime_fwd_cuda(const at::Tensor& w, const at::Tensor& pi,
                                  const at::Tensor& stimuli, const at::Tensor& targets,
                                  const at::Tensor& noise_key, int64_t seed, at::IntArrayRef ints,
                                  at::ArrayRef<double> floats);

}  // namespace hebbkern
