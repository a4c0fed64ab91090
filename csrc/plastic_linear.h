// Declarations of the plastic_linear kernels (SPEC.md section 3: z = x (w + alpha * H)), shared by
// csrc/ops.cpp (registration) and csrc/cpu/plastic_linear.cpp.
#pragma once

#include <torch/types.h>

#include <tuple>

namespace hebbkern {

at::Tensor plastic_linear_fwd_cpu(const at::Tensor& x, const at::Tensor& w, const at::Tensor& alpha,
                                  const at::Tensor& hebb);

// Gradients of x, w, alpha, hebb.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> plastic_linear_bwd_cpu(
    const at::Tensor& grad_z, const at::Tensor& x, const at::Tensor& w, const at::Tensor& alpha,
    const at::Tensor& hebb);

}  // namespace hebbkern
