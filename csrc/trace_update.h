// Declarations of the trace_update kernels (a Hebbian trace update for custom layers), shared by
// csrc/ops.cpp (registration), csrc/cpu/trace_update.cpp and csrc/trace_update_simt.cpp.
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

// The CUDA kernels (csrc/trace_update_simt.cpp, csrc/cuda/trace_update.cu); same contract.
// Declared in every build, defined only in builds with CUDA.
at::Tensor trace_update_fwd_cuda(const at::Tensor& trace, const at::Tensor& pre,
                                 const at::Tensor& post, const at::Tensor& eta,
                                 const std::string& rule, double clip);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> trace_update_bwd_cuda(
    const at::Tensor& grad, const at::Tensor& trace, const at::Tensor& pre, const at::Tensor& post,
    const at::Tensor& eta, const std::string& rule, double clip);

// The same CUDA kernels run on the CPU by the block emulation, for the tests.
at::Tensor trace_update_emulated_fwd(const at::Tensor& trace, const at::Tensor& pre,
                                     const at::Tensor& post, const at::Tensor& eta,
                                     const std::string& rule, double clip, int64_t threads,
                                     int64_t blocks_per_sample);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> trace_update_emulated_bwd(
    const at::Tensor& grad, const at::Tensor& trace, const at::Tensor& pre, const at::Tensor& post,
    const at::Tensor& eta, const std::string& rule, double clip, int64_t threads,
    int64_t blocks_per_sample, bool reverse);

}  // namespace hebbkern
