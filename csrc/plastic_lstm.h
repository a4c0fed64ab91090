// Types of the plastic_lstm ops (SPEC.md section 2) shared by csrc/ops.cpp and the per-device
// sources; the CPU kernels register where they are defined (csrc/cpu/plastic_lstm.cpp).
#pragma once

#include <torch/types.h>

#include <optional>
#include <string>
#include <tuple>

#include "hebbkern/plastic_rules.h"

namespace hebbkern {

Rule parse_rule(const std::string& name);  // csrc/ops.cpp

// The plastic LSTM's variants of SPEC.md section 2.1 as one int (hebbkern/ops/plastic_lstm.py
// writes it; 0 is section 2): 1 * (clip_mode == "read") + 2 * post, post numbered as below.
enum class LstmPost : int { Candidate = 0, Drive = 1, Cell = 2, Hidden = 3 };
constexpr bool lstm_read_clip(int64_t variant) { return (variant & 1) != 0; }
constexpr LstmPost lstm_post(int64_t variant) { return static_cast<LstmPost>((variant >> 1) & 3); }

// Outputs: h [T,B,N], c [T,B,N], gates [T,B,4N] (activated i, f, g, o; post "drive": [T,B,5N],
// the fifth block the drive), hebb_T [B,N,N],
// elig_T ([B,N,N] for retro, else [0]), hebb_ckpt [C,B,N,N] (trace before steps 0, K, 2K, ...),
// elig_ckpt (same, retro only, else [0]), mod [T,B] (tanh(h_t . mod_w + mod_b), modulated rules).
using LstmFwdOut = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                              at::Tensor, at::Tensor, at::Tensor>;

// Gradients of u, wh, alpha, h0, c0, hebb0, elig0, eta, mod_w, mod_b, fanout_w, fanout_b; a
// gradient whose input does not take part in the rule is an empty tensor.
using LstmBwdOut =
    std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
               at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

}  // namespace hebbkern
