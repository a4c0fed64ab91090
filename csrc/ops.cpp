// Schemas of hebbkern's custom ops and their per-device implementations. Fake (meta) kernels and
// autograd are registered from Python (hebbkern/ops/), next to the functional API. This file has no
// Python dependency, so libtorch users link the same registrations (CMakeLists.txt).
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/library.h>

#include <utility>

#include "fop.h"
#include "hebbian.h"
#include "lifetime.h"
#include "plastic_linear.h"
#include "plastic_lstm.h"
#include "plastic_rnn.h"
#include "plastic_step.h"

namespace hebbkern {

// trace_update's rule names (parse_trace_rule) are another set, with their own message.
Rule parse_rule(const std::string& name) {
  static constexpr std::pair<const char*, Rule> kNames[] = {
      {"hebb", Rule::Hebb},         {"oja", Rule::Oja},     {"clip", Rule::Clip},
      {"neuromod", Rule::Neuromod}, {"retro", Rule::Retro}, {"gated", Rule::Gated}};
  for (const auto& [rule_name, rule] : kNames) {
    if (name == rule_name) return rule;
  }
  TORCH_CHECK_VALUE(false, "hebbkern: unknown rule '", name,
                    "' (expected one of hebb, oja, clip, neuromod, retro, gated)");
}

Rule parse_rule(const std::string& name, int64_t variant, int64_t N) {
  const Rule rule = parse_rule(name);
  TORCH_CHECK_VALUE(variant >= 0 && variant_act(variant) <= static_cast<int>(Act::Identity) &&
                        variant_squash(variant) <= static_cast<int>(Squash::Identity) &&
                        ((variant >> 6) & 3) == 0,
                    "hebbkern: invalid variant code ", variant, " (hebbkern/_variants.py)");
  TORCH_CHECK_VALUE(!variant_soft(variant) || soft_rule(rule) != rule, "hebbkern: rule '", name,
                    "' has no soft clip");
  const int64_t unmod = variant_unmodulated(variant);
  TORCH_CHECK_VALUE(unmod == 0 || (rule == Rule::Neuromod && unmod <= N), "hebbkern: ", unmod,
                    " unmodulated neurons: only rule 'neuromod' with at most N = ", N);
  return variant_soft(variant) ? soft_rule(rule) : rule;
}

TORCH_LIBRARY(hebbkern, m) {
  m.def(
      "plastic_rnn_fwd(Tensor u, Tensor w, Tensor alpha, Tensor? h0, Tensor? hebb0, Tensor? elig0, "
      "Tensor? clamp_mask, Tensor? eta, Tensor? mod_w, Tensor? mod_b, Tensor? fanout_w, "
      "Tensor? fanout_b, str rule, float clip, int ckpt_every, int variant=0) "
      "-> (Tensor h, Tensor hebb, Tensor elig, Tensor hebb_ckpt, Tensor elig_ckpt, Tensor mod)");
  m.def(
      "plastic_rnn_bwd(Tensor? grad_h, Tensor? grad_hebb, Tensor? grad_elig, Tensor u, Tensor w, "
      "Tensor alpha, Tensor? h0, Tensor h, Tensor hebb_ckpt, Tensor elig_ckpt, Tensor mod, "
      "Tensor? clamp_mask, Tensor? eta, Tensor? mod_w, Tensor? mod_b, Tensor? fanout_w, "
      "Tensor? fanout_b, str rule, float clip, int ckpt_every, int variant=0) "
      "-> (Tensor du, Tensor dw, Tensor dalpha, Tensor dh0, Tensor dhebb0, Tensor delig0, "
      "Tensor deta, Tensor dmod_w, Tensor dmod_b, Tensor dfanout_w, Tensor dfanout_b)");
  // The CUDA kernels of plastic_rnn_fwd/bwd run on the CPU by the block emulation (tests only).
  m.def(
      "_plastic_rnn_emulated_fwd(Tensor u, Tensor w, Tensor alpha, Tensor? h0, Tensor? hebb0, "
      "Tensor? elig0, Tensor? clamp_mask, Tensor? eta, Tensor? mod_w, Tensor? mod_b, "
      "Tensor? fanout_w, Tensor? fanout_b, str rule, float clip, int ckpt_every, int threads, "
      "int smem_budget, bool reverse, int variant=0) "
      "-> (Tensor h, Tensor hebb, Tensor elig, Tensor hebb_ckpt, Tensor elig_ckpt, Tensor mod)");
  // The cluster forward (several blocks per sample) emulated: `cluster` blocks per sample (0: the
  // launch rule's choice for a device of `sm_count` SMs and clusters up to `cluster_max`);
  // `global_sync`: the blocks synchronise through global memory (sm_80's CudaGridCluster: mailboxes
  // copied into shared memory at every barrier) instead of a thread-block cluster's DSMEM.
  m.def(
      "_plastic_rnn_emulated_fwd_cluster(Tensor u, Tensor w, Tensor alpha, Tensor? h0, "
      "Tensor? hebb0, Tensor? elig0, Tensor? clamp_mask, Tensor? eta, Tensor? mod_w, "
      "Tensor? mod_b, Tensor? fanout_w, Tensor? fanout_b, str rule, float clip, int ckpt_every, "
      "int threads, int smem_budget, bool reverse, int cluster, int sm_count, int cluster_max, "
      "bool global_sync=False, int variant=0) "
      "-> (Tensor h, Tensor hebb, Tensor elig, Tensor hebb_ckpt, Tensor elig_ckpt, Tensor mod)");
  m.def(
      "_plastic_rnn_emulated_bwd(Tensor? grad_h, Tensor? grad_hebb, Tensor? grad_elig, Tensor u, "
      "Tensor w, Tensor alpha, Tensor? h0, Tensor h, Tensor hebb_ckpt, Tensor elig_ckpt, "
      "Tensor mod, Tensor? clamp_mask, Tensor? eta, Tensor? mod_w, Tensor? mod_b, "
      "Tensor? fanout_w, Tensor? fanout_b, str rule, float clip, int ckpt_every, int threads, "
      "int smem_budget, bool reverse, int variant=0) "
      "-> (Tensor du, Tensor dw, Tensor dalpha, Tensor dh0, Tensor dhebb0, Tensor delig0, "
      "Tensor deta, Tensor dmod_w, Tensor dmod_b, Tensor dfanout_w, Tensor dfanout_b)");
  // The cluster backward (several blocks per sample) emulated, as the forward's.
  m.def(
      "_plastic_rnn_emulated_bwd_cluster(Tensor? grad_h, Tensor? grad_hebb, Tensor? grad_elig, "
      "Tensor u, Tensor w, Tensor alpha, Tensor? h0, Tensor h, Tensor hebb_ckpt, "
      "Tensor elig_ckpt, Tensor mod, Tensor? clamp_mask, Tensor? eta, Tensor? mod_w, "
      "Tensor? mod_b, Tensor? fanout_w, Tensor? fanout_b, str rule, float clip, int ckpt_every, "
      "int threads, int smem_budget, bool reverse, int cluster, int sm_count, int cluster_max, "
      "bool global_sync=False, int variant=0) "
      "-> (Tensor du, Tensor dw, Tensor dalpha, Tensor dh0, Tensor dhebb0, Tensor delig0, "
      "Tensor deta, Tensor dmod_w, Tensor dmod_b, Tensor dfanout_w, Tensor dfanout_b)");
  m.def(
      "_plastic_rnn_placement(int N, int K, bool elig, bool backward, int threads, int "
      "smem_budget, "
      "int elem_bytes, int params=0) -> int[]",
      &plastic_rnn_placement);
  // The forward's launch rule: [blocks per sample, where (kWhere*), shared bytes per block].
  m.def(
      "_plastic_rnn_cluster_plan(int B, int N, bool elig, bool row_alpha, int threads, "
      "int smem_budget, int elem_bytes, int sm_count, int cluster_max, bool global_sync=False) "
      "-> int[]",
      &plastic_rnn_cluster_plan);
  // The backward's launch rule: [blocks per sample, where (kBwd*), shared bytes per block, scratch
  // elements per block].
  m.def(
      "_plastic_rnn_cluster_plan_bwd(int B, int N, int K, bool elig, int threads, "
      "int cluster_threads, int smem_budget, int elem_bytes, int sm_count, int cluster_max, "
      "bool global_sync=False) -> int[]",
      &plastic_rnn_cluster_plan_bwd);
  m.def(
      "fop_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] precond, Tensor(c!)[] prev_dir, "
      "Tensor(d!)[] buf1, Tensor(e!)[] buf2, Tensor(f!)[] steps, str base, float lr, "
      "float hyper_lr, float momentum, float beta1, float beta2, float eps, float weight_decay) "
      "-> ()");
  m.def("hebbian_update_linear(Tensor w, Tensor x, Tensor y, str rule) -> Tensor");
  m.def(
      "hebbian_update_conv2d(Tensor w, Tensor x, Tensor y, str rule, int[2] stride, "
      "int[2] padding, int[2] dilation, int groups) -> Tensor");
  m.def(
      "plastic_step_fwd(Tensor u, Tensor h, Tensor hebb, Tensor? elig, Tensor w, Tensor alpha, "
      "Tensor? clamp_mask, Tensor? eta, Tensor? mod_w, Tensor? mod_b, Tensor? fanout_w, "
      "Tensor? fanout_b, str rule, float clip, int variant=0) "
      "-> (Tensor h_new, Tensor hebb_new, Tensor elig_new, Tensor mod)");
  m.def(
      "plastic_step_bwd(Tensor? grad_h, Tensor? grad_hebb, Tensor? grad_elig, Tensor u, Tensor h, "
      "Tensor hebb, Tensor? elig, Tensor w, Tensor alpha, Tensor h_new, Tensor mod, "
      "Tensor? clamp_mask, Tensor? eta, Tensor? mod_w, Tensor? mod_b, Tensor? fanout_w, "
      "Tensor? fanout_b, str rule, float clip, int variant=0) "
      "-> (Tensor du, Tensor dh, Tensor dhebb, Tensor delig, Tensor dw, Tensor dalpha, "
      "Tensor deta, Tensor dmod_w, Tensor dmod_b, Tensor dfanout_w, Tensor dfanout_b)");
  // plastic_step with w, alpha and the traces stored [post, pre] (layout "post_pre"): separate ops
  // with the schemas above, so that a backend without a native post_pre kernel needs no change.
  m.def(
      "plastic_step_fwd_post_pre(Tensor u, Tensor h, Tensor hebb, Tensor? elig, Tensor w, "
      "Tensor alpha, Tensor? clamp_mask, Tensor? eta, Tensor? mod_w, Tensor? mod_b, "
      "Tensor? fanout_w, Tensor? fanout_b, str rule, float clip, int variant=0) "
      "-> (Tensor h_new, Tensor hebb_new, Tensor elig_new, Tensor mod)");
  m.def(
      "plastic_step_bwd_post_pre(Tensor? grad_h, Tensor? grad_hebb, Tensor? grad_elig, Tensor u, "
      "Tensor h, Tensor hebb, Tensor? elig, Tensor w, Tensor alpha, Tensor h_new, Tensor mod, "
      "Tensor? clamp_mask, Tensor? eta, Tensor? mod_w, Tensor? mod_b, Tensor? fanout_w, "
      "Tensor? fanout_b, str rule, float clip, int variant=0) "
      "-> (Tensor du, Tensor dh, Tensor dhebb, Tensor delig, Tensor dw, Tensor dalpha, "
      "Tensor deta, Tensor dmod_w, Tensor dmod_b, Tensor dfanout_w, Tensor dfanout_b)");
  m.def("plastic_linear_fwd(Tensor x, Tensor w, Tensor alpha, Tensor hebb) -> Tensor");
  m.def(
      "plastic_linear_bwd(Tensor grad_z, Tensor x, Tensor w, Tensor alpha, Tensor hebb) "
      "-> (Tensor dx, Tensor dw, Tensor dalpha, Tensor dhebb)");
  m.def(
      "trace_update_fwd(Tensor trace, Tensor pre, Tensor post, Tensor eta, str rule, float clip) "
      "-> Tensor");
  m.def(
      "trace_update_bwd(Tensor grad, Tensor trace, Tensor pre, Tensor post, Tensor eta, str rule, "
      "float clip) -> (Tensor dtrace, Tensor dpre, Tensor dpost, Tensor deta)");
  // The CUDA kernels of trace_update_fwd/bwd run on the CPU by the block emulation (tests only).
  m.def(
      "_trace_update_emulated_fwd(Tensor trace, Tensor pre, Tensor post, Tensor eta, str rule, "
      "float clip, int threads, int blocks_per_sample) -> Tensor");
  m.def(
      "_trace_update_emulated_bwd(Tensor grad, Tensor trace, Tensor pre, Tensor post, Tensor eta, "
      "str rule, float clip, int threads, int blocks_per_sample, bool reverse) "
      "-> (Tensor dtrace, Tensor dpre, Tensor dpost, Tensor deta)");
  m.def(
      "plastic_lstm_fwd(Tensor u, Tensor wh, Tensor alpha, Tensor? h0, Tensor? c0, Tensor? hebb0, "
      "Tensor? elig0, Tensor? eta, Tensor? mod_w, Tensor? mod_b, Tensor? fanout_w, "
      "Tensor? fanout_b, str rule, float clip, int ckpt_every, int variant=0) "
      "-> (Tensor h, Tensor c, Tensor gates, Tensor hebb, Tensor elig, Tensor hebb_ckpt, "
      "Tensor elig_ckpt, Tensor mod)");
  m.def(
      "plastic_lstm_bwd(Tensor? grad_h, Tensor? grad_c, Tensor? grad_hebb, Tensor? grad_elig, "
      "Tensor wh, Tensor alpha, Tensor? h0, Tensor? c0, Tensor h, Tensor c, Tensor gates, "
      "Tensor hebb_ckpt, Tensor elig_ckpt, Tensor mod, Tensor? eta, Tensor? mod_w, Tensor? mod_b, "
      "Tensor? fanout_w, Tensor? fanout_b, str rule, float clip, int ckpt_every, "
      "int variant=0) "
      "-> (Tensor du, Tensor dwh, Tensor dalpha, Tensor dh0, Tensor dc0, Tensor dhebb0, "
      "Tensor delig0, Tensor deta, Tensor dmod_w, Tensor dmod_b, Tensor dfanout_w, "
      "Tensor dfanout_b)");
  // A population's lifetimes of the evolved plastic network (forward only, no autograd).
  m.def(
      "lifetime_fwd(Tensor w, Tensor pi, Tensor stimuli, Tensor targets, Tensor noise_key, "
      "int seed, int[] schedule, float[] constants) "
      "-> (Tensor trial_loss, Tensor trial_response, Tensor x, Tensor r, Tensor p, Tensor e, "
      "Tensor mean_loss)");
  // The CUDA kernel of lifetime_fwd run on the CPU by the block emulation (tests only).
  m.def(
      "_lifetime_emulated_fwd(Tensor w, Tensor pi, Tensor stimuli, Tensor targets, "
      "Tensor noise_key, int seed, int[] schedule, float[] constants, bool reverse) "
      "-> (Tensor trial_loss, Tensor trial_response, Tensor x, Tensor r, Tensor p, Tensor e, "
      "Tensor mean_loss)");
}

// The backward ops have no derivative of their own (their forward ops' autograd is registered
// from Python). Without an Autograd kernel, torch backpropagates through them with a warning and a
// silently zero second derivative; this fallback makes a double backward raise instead.
TORCH_LIBRARY_IMPL(hebbkern, Autograd, m) {
  for (const char* op : {"plastic_rnn_bwd", "_plastic_rnn_emulated_bwd", "plastic_step_bwd",
                         "plastic_step_bwd_post_pre", "plastic_linear_bwd", "trace_update_bwd",
                         "_trace_update_emulated_bwd", "plastic_lstm_bwd"}) {
    m.impl(op, torch::autograd::autogradNotImplementedFallback());
  }
}

TORCH_LIBRARY_IMPL(hebbkern, CPU, m) {
  m.impl("fop_step_", &fop_step_cpu);
  m.impl("hebbian_update_linear", &hebbian_update_linear);
  m.impl("hebbian_update_conv2d", &hebbian_update_conv2d);
  m.impl("plastic_linear_fwd", &plastic_linear_fwd_cpu);
  m.impl("plastic_linear_bwd", &plastic_linear_bwd_cpu);
  m.impl("lifetime_fwd", &lifetime_fwd_cpu);
  m.impl("_lifetime_emulated_fwd", &lifetime_emulated_fwd);
}

#ifdef HEBBKERN_WITH_CUDA
// lifetime: the block kernel of csrc/cuda/ (plastic_rnn's and trace_update's register in
// csrc/<family>_simt.cpp). The hebbian kernels call ATen (cuBLAS, cuDNN's weight gradient) for
// the heavy part, so the same functions serve CUDA tensors.
TORCH_LIBRARY_IMPL(hebbkern, CUDA, m) {
  m.impl("lifetime_fwd", &lifetime_fwd_cuda);
  m.impl("hebbian_update_linear", &hebbian_update_linear);
  m.impl("hebbian_update_conv2d", &hebbian_update_conv2d);
}
#endif

}  // namespace hebbkern
