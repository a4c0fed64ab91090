// Declarations of the hebbian kernels (SPEC.md section 4), shared by csrc/ops.cpp (registration)
// and csrc/cpu/hebbian.cpp.
#pragma once

#include <torch/types.h>

#include <string>

namespace hebbkern {

// dw of a linear weight w [N, D] from x [B, D] and y [B, N]; rule "hebb", "instar" or "oja".
at::Tensor hebbian_update_linear(const at::Tensor& w, const at::Tensor& x, const at::Tensor& y,
                                 const std::string& rule);

// dw of a conv2d weight w [C_out, C_in/groups, kh, kw] from x [B, C_in, H, W] and
// y [B, C_out, H_out, W_out].
at::Tensor hebbian_update_conv2d(const at::Tensor& w, const at::Tensor& x, const at::Tensor& y,
                                 const std::string& rule, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

}  // namespace hebbkern
