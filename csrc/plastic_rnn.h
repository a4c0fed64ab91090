// Types shared by the plastic_rnn kernels of every device (csrc/cpu/plastic_rnn.cpp;
// csrc/plastic_rnn_simt.cpp for CUDA and its emulation) and the placement query of csrc/ops.cpp.
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

// The kernels (plastic_rnn_fwd/bwd on CPU: csrc/cpu/plastic_rnn.cpp; on CUDA and the block
// emulation _plastic_rnn_emulated_fwd/bwd: csrc/plastic_rnn_simt.cpp) are registered with
// TORCH_LIBRARY_IMPL where they are defined, against the schemas in csrc/ops.cpp: each signature
// is written once, next to its body.

// Where the CUDA kernels keep a block's working set for a shape (simt::place), as
// [vec_in_smem, state_in_smem, smem_bytes, scratch_elements_per_sample, params_in_smem] (params:
// elements of w and alpha the forward may keep on chip): for reports and tests.
std::vector<int64_t> plastic_rnn_placement(int64_t N, int64_t K, bool elig, bool backward,
                                           int64_t threads, int64_t smem_budget, int64_t elem_bytes,
                                           int64_t params);

// The forward's launch rule (simt::plan_cluster) for a device of `sm_count` SMs and clusters up to
// `cluster_max` blocks (`global_sync`: blocks synchronised through global memory, below sm_90), as
// [blocks per sample, where (simt::kWhere*), shared bytes per block]: for reports and tests (the
// rule's boundaries).
std::vector<int64_t> plastic_rnn_cluster_plan(int64_t B, int64_t N, bool elig, bool row_alpha,
                                              int64_t threads, int64_t smem_budget,
                                              int64_t elem_bytes, int64_t sm_count,
                                              int64_t cluster_max, bool global_sync);

// The backward's launch rule (simt::plan_cluster_bwd; `threads`: the one-block backward's block
// size, `cluster_threads`: the cluster backward's), as [blocks per sample, where (simt::kBwd*),
// shared bytes per block, scratch elements per block (c = 1: per sample)]: for reports and tests.
std::vector<int64_t> plastic_rnn_cluster_plan_bwd(int64_t B, int64_t N, int64_t K, bool elig,
                                                  int64_t threads, int64_t cluster_threads,
                                                  int64_t smem_budget, int64_t elem_bytes,
                                                  int64_t sm_count, int64_t cluster_max,
                                                  bool global_sync);

}  // namespace hebbkern
