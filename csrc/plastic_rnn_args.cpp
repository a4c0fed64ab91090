// See plastic_rnn_args.h. The checks were written for the CPU kernels first; every other
// implementation of the ops reuses them so that all of them reject the same inputs.
#include "plastic_rnn_args.h"

namespace hebbkern::rnn_args {

bool given(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

at::Tensor empty_like_opts(const at::Tensor& ref) { return at::empty({0}, ref.options()); }

at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->contiguous() : at::Tensor();
}

void check_arg(const char* name, const at::Tensor& t, const at::Tensor& u, at::IntArrayRef shape) {
  TORCH_CHECK_TYPE(t.scalar_type() == u.scalar_type(), "hebbkern::plastic_rnn: ", name,
                   " must have the dtype of u (", u.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == u.device(), "hebbkern::plastic_rnn: ", name,
                    " must be on the device of u (", u.device(), "), got ", t.device());
  TORCH_CHECK_VALUE(t.sizes() == shape, "hebbkern::plastic_rnn: ", name, " must have shape ", shape,
                    ", got ", t.sizes());
}

void check_opt(const char* name, const std::optional<at::Tensor>& t, const at::Tensor& u,
               at::IntArrayRef shape, bool used, const char* rules) {
  if (!given(t)) return;
  TORCH_CHECK_VALUE(used, "hebbkern::plastic_rnn: ", name, " is only used by ", rules);
  check_arg(name, *t, u, shape);
}

void check_scalar(const char* name, const std::optional<at::Tensor>& t, const at::Tensor& u,
                  bool used, const char* rules) {
  if (!given(t)) return;
  TORCH_CHECK_VALUE(used, "hebbkern::plastic_rnn: ", name, " is only used by ", rules);
  check_arg(name, *t, u, t->sizes());
  TORCH_CHECK_VALUE(t->numel() == 1, "hebbkern::plastic_rnn: ", name,
                    " must have one element, got shape ", t->sizes());
}

Rule checked_rule(const std::string& rule, int64_t variant, const at::Tensor& u,
                  int64_t ckpt_every) {
  const Rule r = parse_rule(rule, variant, u.dim() == 3 ? u.size(2) : 0);
  TORCH_CHECK_VALUE(ckpt_every >= 1, "hebbkern::plastic_rnn: ckpt_every must be >= 1");
  return r;
}

Prepared prepare(TensorArg u, TensorArg w, TensorArg alpha, OptTensorArg h0, OptTensorArg hebb0,
                 OptTensorArg elig0, const PlasticOptions& opt, Rule rule, double clip,
                 bool read_scalars, int64_t variant) {
  const auto& [clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b] = opt;
  TORCH_CHECK_VALUE(u.dim() == 3 && u.size(0) >= 1 && u.size(2) >= 1,
                    "hebbkern::plastic_rnn: u must be [T, B, N] with T, N >= 1, got ", u.sizes());
  TORCH_CHECK_TYPE(u.scalar_type() == at::kFloat || u.scalar_type() == at::kDouble,
                   "hebbkern::plastic_rnn: the kernels compute in float32 or float64, got ",
                   u.scalar_type());
  TORCH_CHECK_VALUE(clip > 0, "hebbkern::plastic_rnn: clip must be > 0, got ", clip);
  const int64_t B = u.size(1), N = u.size(2);
  const bool modulated = is_modulated(rule), retro = has_eligibility(rule);
  // Per-sample parameters (a population): w [B, N, N], alpha [B, N, N] / [B, 1, N] / [B, 1, 1],
  // eta [B]; each independently of the others.
  if (w.dim() == 3)
    check_arg("w", w, u, {B, N, N});
  else
    check_arg("w", w, u, {N, N});
  TORCH_CHECK_VALUE(alpha.dim() <= 3,
                    "hebbkern::plastic_rnn: alpha must be [N, N], [N], 0-dim, [B, N, N], "
                    "[B, 1, N] or [B, 1, 1]");
  const bool alpha_per_sample = alpha.dim() == 3;
  // Per connection: [N, N] or [B, N, N] (at N = 1 every kind is the same one number).
  const bool alpha_per_connection =
      alpha.dim() == 2 || (alpha_per_sample && alpha.size(1) == N && alpha.size(2) == N);
  if (alpha.dim() == 3) {
    const int64_t a1 = alpha_per_connection ? N : 1, a2 = alpha.size(2) == N ? N : 1;
    TORCH_CHECK_VALUE(alpha.size(0) == B && alpha.size(1) == a1 && alpha.size(2) == a2,
                      "hebbkern::plastic_rnn: alpha must be [N, N], [N] or 0-dim, or per sample "
                      "[B, N, N], [B, 1, N] or [B, 1, 1] with B = ",
                      B, ", N = ", N, ", got ", alpha.sizes());
    check_arg("alpha", alpha, u, alpha.sizes());
  } else if (alpha.dim() == 2)
    check_arg("alpha", alpha, u, {N, N});
  else if (alpha.dim() == 1)
    check_arg("alpha", alpha, u, {N});
  else
    check_arg("alpha", alpha, u, {});
  check_opt("h0", h0, u, {B, N}, true, "");
  check_opt("hebb0", hebb0, u, {B, N, N}, true, "");
  check_opt("elig0", elig0, u, {B, N, N}, retro, "rule 'retro'");
  if (given(clamp_mask)) {
    TORCH_CHECK_VALUE(clamp_mask->sizes() == u.sizes() && clamp_mask->device() == u.device(),
                      "hebbkern::plastic_rnn: clamp_mask must be [T, B, N] = ", u.sizes(),
                      " on the device of u, got ", clamp_mask->sizes());
  }
  // Unmodulated neurons (SPEC.md section 1.1's n_modulated) follow the clipped rule with eta.
  const bool eta_used = uses_eta(rule) || variant_unmodulated(variant) > 0;
  TORCH_CHECK_VALUE(!eta_used || given(eta), "hebbkern::plastic_rnn: this rule needs eta");
  // eta [B] per sample; a one-element eta is shared (at B = 1 the two are the same).
  const bool eta_per_sample = given(eta) && eta->dim() == 1 && eta->numel() != 1;
  if (eta_per_sample) {
    TORCH_CHECK_VALUE(eta_used,
                      "hebbkern::plastic_rnn: eta is only used by the rules hebb, oja, "
                      "clip and retro");
    TORCH_CHECK_VALUE(eta->size(0) == B, "hebbkern::plastic_rnn: eta must have one element or ",
                      "one per sample ([B] = [", B, "]), got shape ", eta->sizes());
    check_arg("eta", *eta, u, {B});
  } else {
    check_scalar("eta", eta, u, eta_used, "the rules hebb, oja, clip and retro");
  }
  TORCH_CHECK_VALUE(!modulated || given(mod_w), "hebbkern::plastic_rnn: this rule needs mod_w");
  check_opt("mod_w", mod_w, u, {N}, modulated, "the rules neuromod and retro");
  check_scalar("mod_b", mod_b, u, modulated, "the rules neuromod and retro");
  TORCH_CHECK_VALUE(given(fanout_w) == given(fanout_b),
                    "hebbkern::plastic_rnn: fanout_w and fanout_b go together");
  check_opt("fanout_w", fanout_w, u, {N}, modulated, "the rules neuromod and retro");
  check_opt("fanout_b", fanout_b, u, {N}, modulated, "the rules neuromod and retro");

  Prepared p;
  p.u = u.contiguous();
  p.w = w.contiguous();
  p.w_bstride = w.dim() == 3 ? N * N : 0;
  // Per-connection alpha is read row by row; per-neuron and scalar alpha become one shared row
  // (row stride 0), which stays in L1 instead of streaming an [N, N] copy every step. Per sample
  // the same, one [N, N] block or one row per sample.
  if (alpha_per_connection)
    p.A = alpha.contiguous();
  else if (alpha_per_sample)
    p.A = alpha.expand({B, 1, N}).reshape({B, N}).contiguous();
  else
    p.A = alpha.expand({N}).contiguous();
  p.a_stride = alpha_per_connection ? N : 0;
  p.a_bstride = alpha_per_sample ? (alpha_per_connection ? N * N : N) : 0;
  p.h0 = contiguous_or_undefined(h0);
  p.hebb0 = contiguous_or_undefined(hebb0);
  p.elig0 = contiguous_or_undefined(elig0);
  p.clamp = contiguous_or_undefined(clamp_mask);
  if (p.clamp.defined()) p.clamp = p.clamp.to(at::kBool).contiguous();
  p.mod_w = contiguous_or_undefined(mod_w);
  p.fan_w = contiguous_or_undefined(fanout_w);
  p.fan_b = contiguous_or_undefined(fanout_b);
  if (eta_used) p.eta = eta->contiguous();
  if (given(mod_b)) p.mod_b = mod_b->contiguous();
  p.eta_bstride = eta_per_sample ? 1 : 0;
  if (read_scalars && p.eta.defined() && !eta_per_sample) p.eta_value = p.eta.item<double>();
  if (read_scalars && p.mod_b.defined()) p.mod_b_value = p.mod_b.item<double>();
  return p;
}

void check_backward_inputs(const BwdArgs& a, Rule rule) {
  const at::Tensor& u = a.u;
  const int64_t T_ = u.size(0), B = u.size(1), N = u.size(2);
  // The saved forward outputs must be the ones plastic_rnn_fwd made with the same ckpt_every.
  const int64_t C = (T_ + a.ckpt_every - 1) / a.ckpt_every;
  const bool elig = has_eligibility(rule);
  check_arg("h", a.h, u, {T_, B, N});
  check_arg("hebb_ckpt", a.hebb_ckpt, u, {C, B, N, N});
  if (elig) check_arg("elig_ckpt", a.elig_ckpt, u, {C, B, N, N});
  if (is_modulated(rule)) check_arg("mod", a.mod, u, {T_, B});
  check_opt("grad_h", a.grad_h, u, {T_, B, N}, true, "");
  check_opt("grad_hebb", a.grad_hebb, u, {B, N, N}, true, "");
  check_opt("grad_elig", a.grad_elig, u, {B, N, N}, elig, "rule 'retro'");
}

FwdOut allocate_forward(const at::Tensor& u, Rule rule, int64_t ckpt_every) {
  const int64_t T_ = u.size(0), B = u.size(1), N = u.size(2);
  const int64_t C = (T_ + ckpt_every - 1) / ckpt_every;
  const auto opts = u.options();
  const bool elig = has_eligibility(rule);
  return {at::empty({T_, B, N}, opts),
          at::empty({B, N, N}, opts),
          elig ? at::empty({B, N, N}, opts) : empty_like_opts(u),
          at::empty({C, B, N, N}, opts),
          elig ? at::empty({C, B, N, N}, opts) : empty_like_opts(u),
          is_modulated(rule) ? at::empty({T_, B}, opts) : empty_like_opts(u)};
}

BwdAccumulators allocate_backward(const Prepared& q, const at::Tensor& alpha, Rule rule,
                                  bool zeroed) {
  const int64_t T_ = q.u.size(0), B = q.u.size(1), N = q.u.size(2);
  const bool elig = has_eligibility(rule), modulated = is_modulated(rule);
  const bool fan = q.fan_w.defined();
  const auto opts = q.u.options();
  auto acc = [&](at::IntArrayRef shape) {
    return zeroed ? at::zeros(shape, opts) : at::empty(shape, opts);
  };
  BwdAccumulators a;
  a.du = at::empty({T_, B, N}, opts);
  a.da = at::empty({T_, B, N}, opts);
  // d alpha per sample: [N, N], or one [N] row when alpha is per neuron or scalar.
  a.dA = q.a_stride != 0 ? acc({B, N, N}) : acc({B, N});
  a.deta = acc({B});
  if (modulated) {
    a.dmw = acc({B, N});
    a.dmb = acc({B});
  }
  if (fan) {
    a.dfw = acc({B, N});
    a.dfb = acc({B, N});
  }
  a.dh0 = at::empty({B, N}, opts);
  a.dH0 = at::empty({B, N, N}, opts);
  a.dE0 = elig ? at::empty({B, N, N}, opts) : empty_like_opts(q.u);
  return a;
}

BwdInputs contiguous_backward_inputs(const BwdArgs& a, Rule rule) {
  return {contiguous_or_undefined(a.grad_h),
          contiguous_or_undefined(a.grad_hebb),
          has_eligibility(rule) ? contiguous_or_undefined(a.grad_elig) : at::Tensor(),
          a.h.contiguous(),
          a.hebb_ckpt.contiguous(),
          a.elig_ckpt.contiguous(),
          a.mod.contiguous()};
}

BwdOut finish_backward(const Prepared& q, const at::Tensor& alpha, const at::Tensor& h, Rule rule,
                       const BwdAccumulators& a) {
  const int64_t T_ = q.u.size(0), B = q.u.size(1), N = q.u.size(2);
  const auto opts = q.u.options();
  const bool modulated = is_modulated(rule), fan = q.fan_w.defined();
  // dw = sum_t h_{t-1}^T da_t: one GEMM over all steps and samples (per sample: one per sample).
  at::Tensor h_prev = at::cat(
      {q.h0.defined() ? q.h0.unsqueeze(0) : at::zeros({1, B, N}, opts), h.narrow(0, 0, T_ - 1)});
  at::Tensor dw = q.w_bstride != 0 ? at::bmm(h_prev.permute({1, 2, 0}), a.da.permute({1, 0, 2}))
                                   : h_prev.reshape({T_ * B, N}).t().mm(a.da.reshape({T_ * B, N}));
  at::Tensor dalpha;
  if (alpha.dim() == 3)  // per sample: the accumulator itself, in alpha's canonical shape
    dalpha = q.a_stride != 0      ? a.dA
             : alpha.size(2) == N ? a.dA.view({B, 1, N})
                                  : a.dA.sum(1).view({B, 1, 1});
  else
    dalpha = alpha.dim() == 0 ? a.dA.sum() : a.dA.sum(0);
  // Each unused gradient is its own empty tensor: outputs of a custom op must not alias each other.
  at::Tensor deta = !q.eta.defined()     ? empty_like_opts(q.u)
                    : q.eta_bstride != 0 ? a.deta
                                         : a.deta.sum();
  at::Tensor dmw = modulated ? a.dmw.sum(0) : empty_like_opts(q.u);
  at::Tensor dmb = modulated ? a.dmb.sum() : empty_like_opts(q.u);
  at::Tensor dfw = fan ? a.dfw.sum(0) : empty_like_opts(q.u);
  at::Tensor dfb = fan ? a.dfb.sum(0) : empty_like_opts(q.u);
  return {a.du, dw, dalpha, a.dh0, a.dH0, a.dE0, deta, dmw, dmb, dfw, dfb};
}

}  // namespace hebbkern::rnn_args
