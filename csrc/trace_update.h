// Declarations of the trace_update kernels (a Hebbian trace update for custom layers), shared by
// csrc/ops.cpp (registration) and csrc/cpu/trace_update.cpp.
#pragma once

#include <torch/types.h>

#include <string>
#include <tuple>

namespace hebbkern {

at::Tensor trace_update_fwd_cpu(const at::Tensor& trace, const at::Tensor& pre,
                                const at::Tensor& post, const at::Tensor& eta,
                                const std::string& rule, double clip);

// Gradients of trace, pre, post, eta (eta's gradient has eta's shape).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> trace_update_bwd_cpu(
    const at::Tensor& grad, const at::Tensor& trace, const at::Tensor& pre, const at::Tensor& post,
    const at::Tensor& eta, const std::string& rule, double clip);

}  // namespace hebbkern
