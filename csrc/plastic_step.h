// Declarations of the plastic_step kernels (one step of SPEC.md section 1), shared by csrc/ops.cpp
// (registration) and the per-device sources (csrc/cpu/plastic_step.cpp).
#pragma once

#include <torch/types.h>

#include <string>
#include <tuple>

#include "hebbkern/plastic_rules.h"

namespace hebbkern {

Rule parse_rule(const std::string& name);
// The rule with the variant code of SPEC.md section 1.1 checked and applied (csrc/ops.cpp).
Rule parse_rule(const std::string& name, int64_t variant, int64_t N);

// Outputs: h_new [B, N], hebb_new [B, N, N], elig_new ([B, N, N] for retro, else [0]),
// mod [B] (the neuromodulator tanh(h_new . mod_w + mod_b), modulated rules only, else [0]).
using StepFwdOut = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// Gradients of u, h, hebb, elig, w, alpha, eta, mod_w, mod_b, fanout_w, fanout_b; a gradient whose
// input does not take part in the rule is an empty tensor.
using StepBwdOut =
    std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
               at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

StepFwdOut plastic_step_fwd_cpu(
    const at::Tensor& u, const at::Tensor& h, const at::Tensor& hebb,
    const std::optional<at::Tensor>& elig, const at::Tensor& w, const at::Tensor& alpha,
    const std::optional<at::Tensor>& clamp_mask, const std::optional<at::Tensor>& eta,
    const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
    const std::optional<at::Tensor>& fanout_w, const std::optional<at::Tensor>& fanout_b,
    const std::string& rule, double clip, int64_t variant);

StepBwdOut plastic_step_bwd_cpu(
    const std::optional<at::Tensor>& grad_h, const std::optional<at::Tensor>& grad_hebb,
    const std::optional<at::Tensor>& grad_elig, const at::Tensor& u, const at::Tensor& h,
    const at::Tensor& hebb, const std::optional<at::Tensor>& elig, const at::Tensor& w,
    const at::Tensor& alpha, const at::Tensor& h_new, const at::Tensor& mod,
    const std::optional<at::Tensor>& clamp_mask, const std::optional<at::Tensor>& eta,
    const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
    const std::optional<at::Tensor>& fanout_w, const std::optional<at::Tensor>& fanout_b,
    const std::string& rule, double clip, int64_t variant);

// The same step with w, alpha and the traces stored [post, pre] (layout "post_pre"): the kernels
// read that layout where it lies (no transposed copy of the trace). Same arguments and outputs.
StepFwdOut plastic_step_fwd_post_pre_cpu(
    const at::Tensor& u, const at::Tensor& h, const at::Tensor& hebb,
    const std::optional<at::Tensor>& elig, const at::Tensor& w, const at::Tensor& alpha,
    const std::optional<at::Tensor>& clamp_mask, const std::optional<at::Tensor>& eta,
    const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
    const std::optional<at::Tensor>& fanout_w, const std::optional<at::Tensor>& fanout_b,
    const std::string& rule, double clip, int64_t variant);

StepBwdOut plastic_step_bwd_post_pre_cpu(
    const std::optional<at::Tensor>& grad_h, const std::optional<at::Tensor>& grad_hebb,
    const std::optional<at::Tensor>& grad_elig, const at::Tensor& u, const at::Tensor& h,
    const at::Tensor& hebb, const std::optional<at::Tensor>& elig, const at::Tensor& w,
    const at::Tensor& alpha, const at::Tensor& h_new, const at::Tensor& mod,
    const std::optional<at::Tensor>& clamp_mask, const std::optional<at::Tensor>& eta,
    const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
    const std::optional<at::Tensor>& fanout_w, const std::optional<at::Tensor>& fanout_b,
    const std::string& rule, double clip, int64_t variant);

}  // namespace hebbkern
