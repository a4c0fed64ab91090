// Declarations of the plastic_rnn kernels, shared by csrc/ops.cpp (registration) and the
// per-device sources (csrc/cpu/plastic_rnn.cpp; csrc/plastic_rnn_simt.cpp for CUDA).
#pragma once

#include <torch/types.h>

#include <string>
#include <tuple>
#include <vector>

#include "hebbkern/plastic_rules.h"

namespace hebbkern {

Rule parse_rule(const std::string& name);
// The rule with the variant code of SPEC.md section 1.1 checked and applied (csrc/ops.cpp).
Rule parse_rule(const std::string& name, int64_t variant, int64_t N);

// Outputs: h [T,B,N], hebb_T [B,N,N], elig_T ([B,N,N] for retro, else [0]),
// hebb_ckpt [C,B,N,N] (trace before steps 0, K, 2K, ...), elig_ckpt (same, retro only, else [0]),
// mod [T,B] (the neuromodulator tanh(h_t . mod_w + mod_b), modulated rules only, else [0]).
using FwdOut = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// Gradients of u, w, alpha, h0, hebb0, elig0, eta, mod_w, mod_b, fanout_w, fanout_b; a gradient
// whose input does not take part in the rule is an empty tensor.
using BwdOut = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                          at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

FwdOut plastic_rnn_fwd_cpu(
    const at::Tensor& u, const at::Tensor& w, const at::Tensor& alpha,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& hebb0,
    const std::optional<at::Tensor>& elig0, const std::optional<at::Tensor>& clamp_mask,
    const std::optional<at::Tensor>& eta, const std::optional<at::Tensor>& mod_w,
    const std::optional<at::Tensor>& mod_b, const std::optional<at::Tensor>& fanout_w,
    const std::optional<at::Tensor>& fanout_b, const std::string& rule, double clip,
    int64_t ckpt_every, int64_t variant);

BwdOut plastic_rnn_bwd_cpu(
    const std::optional<at::Tensor>& grad_h, const std::optional<at::Tensor>& grad_hebb,
    const std::optional<at::Tensor>& grad_elig, const at::Tensor& u, const at::Tensor& w,
    const at::Tensor& alpha, const std::optional<at::Tensor>& h0, const at::Tensor& h,
    const at::Tensor& hebb_ckpt, const at::Tensor& elig_ckpt, const at::Tensor& mod,
    const std::optional<at::Tensor>& clamp_mask, const std::optional<at::Tensor>& eta,
    const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
    const std::optional<at::Tensor>& fanout_w, const std::optional<at::Tensor>& fanout_b,
    const std::string& rule, double clip, int64_t ckpt_every, int64_t variant);

// The CUDA kernels (csrc/plastic_rnn_simt.cpp, csrc/cuda/plastic_rnn.cu); same contract as the CPU
// ones. Declared in every build, defined only in builds with CUDA.
FwdOut plastic_rnn_fwd_cuda(
    const at::Tensor& u, const at::Tensor& w, const at::Tensor& alpha,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& hebb0,
    const std::optional<at::Tensor>& elig0, const std::optional<at::Tensor>& clamp_mask,
    const std::optional<at::Tensor>& eta, const std::optional<at::Tensor>& mod_w,
    const std::optional<at::Tensor>& mod_b, const std::optional<at::Tensor>& fanout_w,
    const std::optional<at::Tensor>& fanout_b, const std::string& rule, double clip,
    int64_t ckpt_every, int64_t variant);

BwdOut plastic_rnn_bwd_cuda(
    const std::optional<at::Tensor>& grad_h, const std::optional<at::Tensor>& grad_hebb,
    const std::optional<at::Tensor>& grad_elig, const at::Tensor& u, const at::Tensor& w,
    const at::Tensor& alpha, const std::optional<at::Tensor>& h0, const at::Tensor& h,
    const at::Tensor& hebb_ckpt, const at::Tensor& elig_ckpt, const at::Tensor& mod,
    const std::optional<at::Tensor>& clamp_mask, const std::optional<at::Tensor>& eta,
    const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
    const std::optional<at::Tensor>& fanout_w, const std::optional<at::Tensor>& fanout_b,
    const std::string& rule, double clip, int64_t ckpt_every, int64_t variant);

// The same CUDA kernels run on the CPU by the block emulation, for the tests: `threads` per
// block, `smem_budget` bytes of shared memory, `reverse` runs items, warps and lanes last to first.
FwdOut plastic_rnn_emulated_fwd(
    const at::Tensor& u, const at::Tensor& w, const at::Tensor& alpha,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& hebb0,
    const std::optional<at::Tensor>& elig0, const std::optional<at::Tensor>& clamp_mask,
    const std::optional<at::Tensor>& eta, const std::optional<at::Tensor>& mod_w,
    const std::optional<at::Tensor>& mod_b, const std::optional<at::Tensor>& fanout_w,
    const std::optional<at::Tensor>& fanout_b, const std::string& rule, double clip,
    int64_t ckpt_every, int64_t threads, int64_t smem_budget, bool reverse, int64_t variant);

BwdOut plastic_rnn_emulated_bwd(
    const std::optional<at::Tensor>& grad_h, const std::optional<at::Tensor>& grad_hebb,
    const std::optional<at::Tensor>& grad_elig, const at::Tensor& u, const at::Tensor& w,
    const at::Tensor& alpha, const std::optional<at::Tensor>& h0, const at::Tensor& h,
    const at::Tensor& hebb_ckpt, const at::Tensor& elig_ckpt, const at::Tensor& mod,
    const std::optional<at::Tensor>& clamp_mask, const std::optional<at::Tensor>& eta,
    const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
    const std::optional<at::Tensor>& fanout_w, const std::optional<at::Tensor>& fanout_b,
    const std::string& rule, double clip, int64_t ckpt_every, int64_t threads, int64_t smem_budget,
    bool reverse, int64_t variant);

// Where the CUDA kernels keep a block's working set for a shape (simt::place), as
// [vec_in_smem, state_in_smem, smem_bytes, scratch_elements_per_sample]: for reports and tests.
std::vector<int64_t> plastic_rnn_placement(int64_t N, int64_t K, bool elig, bool backward,
                                           int64_t threads, int64_t smem_budget,
                                           int64_t elem_bytes);

}  // namespace hebbkern
