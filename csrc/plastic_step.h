// Types of the plastic_step kernels (one step of SPEC.md section 1), shared by csrc/ops.cpp and the
// per-device sources (csrc/cpu/plastic_step.cpp).
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

// The CPU kernels of plastic_step_fwd/bwd and plastic_step_fwd/bwd_post_pre are registered with
// TORCH_LIBRARY_IMPL where they are defined (csrc/cpu/plastic_step.cpp), against the schemas in
// csrc/ops.cpp: each signature is written once, next to its body.

}  // namespace hebbkern
