// Schemas of hebbkern's custom ops and their per-device implementations. Fake (meta) kernels and
// autograd are registered from Python (hebbkern/ops/), next to the functional API. This file has no
// Python dependency, so libtorch users link the same registrations (CMakeLists.txt).
#include <torch/library.h>

#include "plastic_lstm.h"
#include "plastic_rnn.h"

namespace hebbkern {

Rule parse_rule(const std::string& name) {
  if (name == "hebb") return Rule::Hebb;
  if (name == "oja") return Rule::Oja;
  if (name == "clip") return Rule::Clip;
  if (name == "neuromod") return Rule::Neuromod;
  if (name == "retro") return Rule::Retro;
  TORCH_CHECK_VALUE(false, "hebbkern: unknown rule '", name,
                    "' (expected one of hebb, oja, clip, neuromod, retro)");
}

TORCH_LIBRARY(hebbkern, m) {
  m.def(
      "plastic_rnn_fwd(Tensor u, Tensor w, Tensor alpha, Tensor? h0, Tensor? hebb0, Tensor? elig0, "
      "Tensor? clamp_mask, Tensor? eta, Tensor? mod_w, Tensor? mod_b, Tensor? fanout_w, "
      "Tensor? fanout_b, str rule, float clip, int ckpt_every) "
      "-> (Tensor h, Tensor hebb, Tensor elig, Tensor hebb_ckpt, Tensor elig_ckpt, Tensor mod)");
  m.def(
      "plastic_rnn_bwd(Tensor? grad_h, Tensor? grad_hebb, Tensor? grad_elig, Tensor u, Tensor w, "
      "Tensor alpha, Tensor? h0, Tensor h, Tensor hebb_ckpt, Tensor elig_ckpt, Tensor mod, "
      "Tensor? clamp_mask, Tensor? eta, Tensor? mod_w, Tensor? mod_b, Tensor? fanout_w, "
      "Tensor? fanout_b, str rule, float clip, int ckpt_every) "
      "-> (Tensor du, Tensor dw, Tensor dalpha, Tensor dh0, Tensor dhebb0, Tensor delig0, "
      "Tensor deta, Tensor dmod_w, Tensor dmod_b, Tensor dfanout_w, Tensor dfanout_b)");
  m.def(
      "plastic_lstm_fwd(Tensor u, Tensor wh, Tensor alpha, Tensor? h0, Tensor? c0, Tensor? hebb0, "
      "Tensor? elig0, Tensor? eta, Tensor? mod_w, Tensor? mod_b, Tensor? fanout_w, "
      "Tensor? fanout_b, str rule, float clip, int ckpt_every) "
      "-> (Tensor h, Tensor c, Tensor gates, Tensor hebb, Tensor elig, Tensor hebb_ckpt, "
      "Tensor elig_ckpt, Tensor mod)");
  m.def(
      "plastic_lstm_bwd(Tensor? grad_h, Tensor? grad_c, Tensor? grad_hebb, Tensor? grad_elig, "
      "Tensor wh, Tensor alpha, Tensor? h0, Tensor? c0, Tensor h, Tensor c, Tensor gates, "
      "Tensor hebb_ckpt, Tensor elig_ckpt, Tensor mod, Tensor? eta, Tensor? mod_w, Tensor? mod_b, "
      "Tensor? fanout_w, Tensor? fanout_b, str rule, float clip, int ckpt_every) "
      "-> (Tensor du, Tensor dwh, Tensor dalpha, Tensor dh0, Tensor dc0, Tensor dhebb0, "
      "Tensor delig0, Tensor deta, Tensor dmod_w, Tensor dmod_b, Tensor dfanout_w, "
      "Tensor dfanout_b)");
}

TORCH_LIBRARY_IMPL(hebbkern, CPU, m) {
  m.impl("plastic_rnn_fwd", &plastic_rnn_fwd_cpu);
  m.impl("plastic_rnn_bwd", &plastic_rnn_bwd_cpu);
  m.impl("plastic_lstm_fwd", &plastic_lstm_fwd_cpu);
  m.impl("plastic_lstm_bwd", &plastic_lstm_bwd_cpu);
}

}  // namespace hebbkern
