// Device-independent parts of the trace_update ops, shared by the CPU kernels
// (csrc/cpu/trace_update.cpp) and the CUDA ones (csrc/trace_update_simt.cpp): rule names, argument
// checks, the shared-trace case (GEMMs and element-wise ATen ops, which run on any device) and the
// reduction of eta's gradient to eta's shape.
#pragma once

#include <torch/types.h>

#include <string>
#include <tuple>

#include "hebbkern/plastic_rules.h"

namespace hebbkern::trace_update_common {

enum class TraceRule { Hebb, Oja, Add, Clip };

TraceRule parse_trace_rule(const std::string& name);

// The clip bound the rule math sees: "add" is "clip" without a bound.
double bound(TraceRule r, double clip);

// Checks shapes, dtypes and devices (the raw ops are safe to call with any tensors); returns eta
// as [B, K].
at::Tensor check_and_expand_eta(const at::Tensor& trace, const at::Tensor& pre,
                                const at::Tensor& post, const at::Tensor& eta, TraceRule r,
                                double clip);

// The element-wise rule of plastic_rules.h that computes a TraceRule ("add": Clip, no bound).
Rule kernel_rule(TraceRule r);

at::Tensor reduce_like(const at::Tensor& dE, const at::Tensor& eta);

// A shared trace [M, K]: the batch enters through sums over samples (GEMMs). `E` is eta as [B, K],
// `c` the bound.
at::Tensor shared_forward(const at::Tensor& trace, const at::Tensor& pre, const at::Tensor& post,
                          const at::Tensor& eta, const at::Tensor& E, TraceRule r, double c);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> shared_backward(
    const at::Tensor& grad, const at::Tensor& trace, const at::Tensor& pre, const at::Tensor& post,
    const at::Tensor& eta, const at::Tensor& E, TraceRule r, double c);

}  // namespace hebbkern::trace_update_common
