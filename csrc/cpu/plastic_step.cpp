// Torch-facing side of the CPU plastic_step kernels: shape checks (the raw torch.ops are safe to
// call), argument preparation, output allocation, the batch split over threads and the run-time
// instruction-set choice, and the final reductions (group slices of dw and d alpha;
// per-sample accumulators summed in a fixed order). The kernels are in plastic_step_kernel.cpp.
#include "../plastic_step.h"

#include <ATen/Parallel.h>
#include <torch/types.h>

#include <algorithm>
#include <vector>

#include "plastic_step_kernel_args.h"

namespace hebbkern {

namespace {

using cpu::StepArgs;

template <typename T>
void run_step_forward(Rule r, const StepArgs<T>& p, const cpu::StepFwdOut<T>& o, int64_t b0,
                      int64_t b1, T* scratch) {
  HEBBKERN_CPU_DISPATCH(cpu::active_isa(), cpu, step_forward, r, p, o, b0, b1, scratch)
}

template <typename T>
void run_step_backward(Rule r, const StepArgs<T>& p, const cpu::StepBwdIn<T>& in,
                       const cpu::StepBwdOut<T>& o, int64_t b0, int64_t b1, T* scratch) {
  HEBBKERN_CPU_DISPATCH(cpu::active_isa(), cpu, step_backward, r, p, in, o, b0, b1, scratch)
}

bool given(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return given(t) ? t->contiguous() : at::Tensor();
}

template <typename T>
T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// `t` must have `ref`'s dtype and exactly `shape`; `what` names it in the error.
void check_shape(const at::Tensor& t, const at::Tensor& ref, at::IntArrayRef shape,
                 const char* what) {
  TORCH_CHECK_VALUE(t.sizes() == shape, "hebbkern::plastic_step: ", what, " must have shape ",
                    shape, ", got ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), "hebbkern::plastic_step: ", what,
                   " must have dtype ", ref.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == ref.device(), "hebbkern::plastic_step: ", what,
                    " must be on the device of u");
}

void check_scalar(const std::optional<at::Tensor>& t, const at::Tensor& ref, const char* what) {
  TORCH_CHECK_VALUE(t->numel() == 1, "hebbkern::plastic_step: ", what, " must have one element");
  TORCH_CHECK_TYPE(t->scalar_type() == ref.scalar_type(), "hebbkern::plastic_step: ", what,
                   " must have dtype ", ref.scalar_type());
}

// Shared by forward and backward: the arguments checked, made contiguous, scalars read.
struct Prepared {
  at::Tensor u, h, hebb, elig, w, A, clamp, mod_w, fan_w, fan_b;
  int64_t B = 0, N = 0, w_bstride = 0, a_stride = 0, a_bstride = 0;
  double eta = 0, mod_b = 0;
  bool eta_used = false;
};

Prepared prepare(const at::Tensor& u, const at::Tensor& h, const at::Tensor& hebb,
                 const std::optional<at::Tensor>& elig, const at::Tensor& w,
                 const at::Tensor& alpha, const std::optional<at::Tensor>& clamp_mask,
                 const std::optional<at::Tensor>& eta, const std::optional<at::Tensor>& mod_w,
                 const std::optional<at::Tensor>& mod_b, const std::optional<at::Tensor>& fanout_w,
                 const std::optional<at::Tensor>& fanout_b, Rule rule, double clip,
                 int64_t variant) {
  TORCH_CHECK_VALUE(u.dim() == 2 && u.size(1) >= 1,
                    "hebbkern::plastic_step: u must be [B, N] with N >= 1, got ", u.sizes());
  TORCH_CHECK_TYPE(u.scalar_type() == at::kFloat || u.scalar_type() == at::kDouble,
                   "hebbkern::plastic_step: u must be float32 or float64, got ", u.scalar_type());
  TORCH_CHECK_VALUE(clip > 0, "hebbkern::plastic_step: clip must be > 0");
  Prepared p;
  const int64_t B = u.size(0), N = u.size(1);
  p.B = B;
  p.N = N;
  check_shape(h, u, {B, N}, "h");
  check_shape(hebb, u, {B, N, N}, "hebb");
  if (has_eligibility(rule)) {
    TORCH_CHECK_VALUE(given(elig), "hebbkern::plastic_step: rule 'retro' needs elig");
    check_shape(*elig, u, {B, N, N}, "elig");
  }
  if (w.dim() == 3) {
    check_shape(w, u, {B, N, N}, "w (per sample)");
    p.w_bstride = N * N;
  } else {
    check_shape(w, u, {N, N}, "w");
  }
  if (alpha.dim() == 3) {
    check_shape(alpha, u, {B, N, N}, "alpha (per sample)");
    p.a_stride = N;
    p.a_bstride = N * N;
  } else if (alpha.dim() == 2) {
    check_shape(alpha, u, {N, N}, "alpha");
    p.a_stride = N;
  } else if (alpha.dim() == 1) {
    check_shape(alpha, u, {N}, "alpha");
  } else {
    check_shape(alpha, u, {}, "alpha");
  }
  if (given(clamp_mask)) {
    TORCH_CHECK_VALUE(clamp_mask->sizes() == u.sizes(),
                      "hebbkern::plastic_step: clamp_mask must have the shape of u");
    p.clamp = clamp_mask->to(at::kBool).contiguous();
  }
  // Unmodulated neurons (SPEC.md section 1.1's n_modulated) follow the clipped rule with eta.
  p.eta_used = uses_eta(rule) || variant_unmodulated(variant) > 0;
  if (p.eta_used) {
    TORCH_CHECK_VALUE(given(eta), "hebbkern::plastic_step: this rule needs eta");
    check_scalar(eta, u, "eta");
    p.eta = eta->item<double>();
  }
  if (is_modulated(rule)) {
    TORCH_CHECK_VALUE(given(mod_w), "hebbkern::plastic_step: this rule needs mod_w");
    check_shape(*mod_w, u, {N}, "mod_w");
    p.mod_w = mod_w->contiguous();
    if (given(mod_b)) {
      check_scalar(mod_b, u, "mod_b");
      p.mod_b = mod_b->item<double>();
    }
    TORCH_CHECK_VALUE(given(fanout_w) == given(fanout_b),
                      "hebbkern::plastic_step: fanout_w and fanout_b go together");
    if (given(fanout_w)) {
      check_shape(*fanout_w, u, {N}, "fanout_w");
      check_shape(*fanout_b, u, {N}, "fanout_b");
      p.fan_w = fanout_w->contiguous();
      p.fan_b = fanout_b->contiguous();
    }
  }
  p.u = u.contiguous();
  p.h = h.contiguous();
  p.hebb = hebb.contiguous();
  if (has_eligibility(rule)) p.elig = elig->contiguous();
  p.w = w.contiguous();
  // Per-neuron and scalar alpha become one shared row (row stride 0), as in plastic_rnn.
  p.A = alpha.dim() >= 2 ? alpha.contiguous() : alpha.expand({N}).contiguous();
  return p;
}

template <typename T>
StepArgs<T> make_args(const Prepared& q, double clip, int64_t variant) {
  StepArgs<T> p{};
  p.B = q.B;
  p.N = q.N;
  p.u = q.u.data_ptr<T>();
  p.h = q.h.data_ptr<T>();
  p.hebb = q.hebb.data_ptr<T>();
  p.elig = ptr_or_null<T>(q.elig);
  p.w = q.w.data_ptr<T>();
  p.w_bstride = q.w_bstride;
  p.A = q.A.data_ptr<T>();
  p.a_stride = q.a_stride;
  p.a_bstride = q.a_bstride;
  p.clamp = q.clamp.defined() ? q.clamp.data_ptr<bool>() : nullptr;
  p.mod_w = ptr_or_null<T>(q.mod_w);
  p.fan_w = ptr_or_null<T>(q.fan_w);
  p.fan_b = ptr_or_null<T>(q.fan_b);
  p.eta = static_cast<T>(q.eta);
  p.mod_b = static_cast<T>(q.mod_b);
  p.clip = static_cast<T>(clip);
  p.act = variant_act(variant);
  p.squash = variant_squash(variant);
  p.n_unmod = variant_unmodulated(variant);
  return p;
}

at::Tensor none_like(const at::Tensor& ref) { return at::empty({0}, ref.options()); }

// The sum of the [G, N, N] group slices, in slice order, on the calling thread: at most 8 slices,
// cheaper than another parallel region.
at::Tensor sum_slices(const at::Tensor& slices) {
  const int64_t G = slices.size(0), NN = slices.size(1) * slices.size(2);
  if (G == 0) return at::zeros({slices.size(1), slices.size(2)}, slices.options());  // B = 0
  at::Tensor out = at::empty({slices.size(1), slices.size(2)}, slices.options());
  AT_DISPATCH_FLOATING_TYPES(slices.scalar_type(), "plastic_step_sum_slices", [&] {
    const scalar_t* s = slices.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    std::copy(s, s + NN, o);
    for (int64_t g = 1; g < G; ++g)
      for (int64_t k = 0; k < NN; ++k) o[k] += s[g * NN + k];
  });
  return out;
}

// Samples per task: a parallel region costs microseconds (and much more when the cores are shared
// with other work), which one step of a small network does not repay; ATen's grain size is the
// rule, counted in trace elements.
int64_t sample_grain(int64_t N) { return std::max<int64_t>(1, at::internal::GRAIN_SIZE / (N * N)); }

}  // namespace

StepFwdOut plastic_step_fwd_cpu(
    const at::Tensor& u, const at::Tensor& h, const at::Tensor& hebb,
    const std::optional<at::Tensor>& elig, const at::Tensor& w, const at::Tensor& alpha,
    const std::optional<at::Tensor>& clamp_mask, const std::optional<at::Tensor>& eta,
    const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
    const std::optional<at::Tensor>& fanout_w, const std::optional<at::Tensor>& fanout_b,
    const std::string& rule_name, double clip, int64_t variant) {
  const Rule rule = parse_rule(rule_name, variant, u.dim() == 2 ? u.size(1) : 0);
  const Prepared q = prepare(u, h, hebb, elig, w, alpha, clamp_mask, eta, mod_w, mod_b, fanout_w,
                             fanout_b, rule, clip, variant);
  const int64_t B = q.B, N = q.N;
  const auto opts = u.options();
  at::Tensor h_new = at::empty({B, N}, opts);
  at::Tensor hebb_new = at::empty({B, N, N}, opts);
  at::Tensor elig_new = has_eligibility(rule) ? at::empty({B, N, N}, opts) : none_like(u);
  at::Tensor mod = is_modulated(rule) ? at::empty({B}, opts) : none_like(u);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "plastic_step_fwd_cpu", [&] {
    using T = scalar_t;
    const StepArgs<T> p = make_args<T>(q, clip, variant);
    const cpu::StepFwdOut<T> o{.h_new = h_new.data_ptr<T>(),
                               .hebb_new = hebb_new.data_ptr<T>(),
                               .elig_new = ptr_or_null<T>(elig_new),
                               .mod = ptr_or_null<T>(mod)};
    at::parallel_for(0, B, sample_grain(N), [&](int64_t b0, int64_t b1) {
      std::vector<T> scratch(cpu::step_scratch_size(N));
      run_step_forward(rule, p, o, b0, b1, scratch.data());
    });
  });
  return {h_new, hebb_new, elig_new, mod};
}

StepBwdOut plastic_step_bwd_cpu(
    const std::optional<at::Tensor>& grad_h, const std::optional<at::Tensor>& grad_hebb,
    const std::optional<at::Tensor>& grad_elig, const at::Tensor& u, const at::Tensor& h,
    const at::Tensor& hebb, const std::optional<at::Tensor>& elig, const at::Tensor& w,
    const at::Tensor& alpha, const at::Tensor& h_new, const at::Tensor& mod,
    const std::optional<at::Tensor>& clamp_mask, const std::optional<at::Tensor>& eta,
    const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
    const std::optional<at::Tensor>& fanout_w, const std::optional<at::Tensor>& fanout_b,
    const std::string& rule_name, double clip, int64_t variant) {
  const Rule rule = parse_rule(rule_name, variant, u.dim() == 2 ? u.size(1) : 0);
  const Prepared q = prepare(u, h, hebb, elig, w, alpha, clamp_mask, eta, mod_w, mod_b, fanout_w,
                             fanout_b, rule, clip, variant);
  const int64_t B = q.B, N = q.N;
  const bool retro = has_eligibility(rule), modulated = is_modulated(rule);
  const bool fan = q.fan_w.defined();
  check_shape(h_new, u, {B, N}, "h_new");
  if (modulated) check_shape(mod, u, {B}, "mod");
  if (given(grad_h)) check_shape(*grad_h, u, {B, N}, "grad_h");
  if (given(grad_hebb)) check_shape(*grad_hebb, u, {B, N, N}, "grad_hebb");
  if (retro && given(grad_elig)) check_shape(*grad_elig, u, {B, N, N}, "grad_elig");
  const auto opts = u.options();
  at::Tensor gh = contiguous_or_undefined(grad_h);
  at::Tensor gH = contiguous_or_undefined(grad_hebb);
  at::Tensor gE = retro ? contiguous_or_undefined(grad_elig) : at::Tensor();
  at::Tensor hn = h_new.contiguous(), mod_c = mod.contiguous();

  const bool per_connection = alpha.dim() >= 2;
  // Shared per-connection alpha and shared w: their gradients are summed per group of samples
  // (see StepBwdOut::dA), at most kMaxGroups slices instead of [B, N, N] buffers, and the slices
  // are added up on this thread: the backward opens one parallel region per step.
  constexpr int64_t kMaxGroups = 8;
  const bool shared_w = w.dim() == 2, shared_A = alpha.dim() == 2;
  // At least 1: with B = 0 there are no groups, and n_groups below divides by it.
  const int64_t group =
      (shared_w || shared_A) ? std::max<int64_t>(1, (B + kMaxGroups - 1) / kMaxGroups) : 1;
  const int64_t n_groups = (B + group - 1) / group;
  at::Tensor du = at::empty({B, N}, opts), dh = at::empty({B, N}, opts);
  at::Tensor da = at::empty({B, N}, opts);
  at::Tensor dH = at::empty({B, N, N}, opts);
  at::Tensor dE = retro ? at::empty({B, N, N}, opts) : none_like(u);
  at::Tensor dA =
      per_connection ? at::empty({shared_A ? n_groups : B, N, N}, opts) : at::zeros({B, N}, opts);
  at::Tensor dW = at::empty({shared_w ? n_groups : B, N, N}, opts);
  at::Tensor deta_ps = at::empty({B}, opts);
  at::Tensor dmw_ps = modulated ? at::empty({B, N}, opts) : at::Tensor();
  at::Tensor dmb_ps = modulated ? at::empty({B}, opts) : at::Tensor();
  at::Tensor dfw_ps = fan ? at::empty({B, N}, opts) : at::Tensor();
  at::Tensor dfb_ps = fan ? at::empty({B, N}, opts) : at::Tensor();

  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "plastic_step_bwd_cpu", [&] {
    using T = scalar_t;
    const StepArgs<T> p = make_args<T>(q, clip, variant);
    const cpu::StepBwdIn<T> in{.gh = ptr_or_null<T>(gh),
                               .gH = ptr_or_null<T>(gH),
                               .gE = ptr_or_null<T>(gE),
                               .h_new = hn.data_ptr<T>(),
                               .mod = ptr_or_null<T>(mod_c)};
    const cpu::StepBwdOut<T> o{.du = du.data_ptr<T>(),
                               .dh = dh.data_ptr<T>(),
                               .dH = dH.data_ptr<T>(),
                               .dE = ptr_or_null<T>(dE),
                               .da = da.data_ptr<T>(),
                               .dA = dA.data_ptr<T>(),
                               .dA_group = shared_A ? group : 1,
                               .dW = dW.data_ptr<T>(),
                               .dW_group = shared_w ? group : 1,
                               .deta = deta_ps.data_ptr<T>(),
                               .dmw = ptr_or_null<T>(dmw_ps),
                               .dmb = ptr_or_null<T>(dmb_ps),
                               .dfw = ptr_or_null<T>(dfw_ps),
                               .dfb = ptr_or_null<T>(dfb_ps)};
    // Split by groups, so that a group of samples summing into one d alpha slice stays on one
    // thread.
    const int64_t grain = std::max<int64_t>(1, sample_grain(N) / group);
    at::parallel_for(0, n_groups, grain, [&](int64_t g0, int64_t g1) {
      std::vector<T> scratch(cpu::step_scratch_size(N));
      run_step_backward(rule, p, in, o, g0 * group, std::min(B, g1 * group), scratch.data());
    });
  });

  at::Tensor dw = shared_w ? sum_slices(dW) : dW;
  at::Tensor dalpha;
  if (alpha.dim() == 3)
    dalpha = dA;
  else if (alpha.dim() == 2)
    dalpha = sum_slices(dA);
  else if (alpha.dim() == 1)
    dalpha = dA.sum(0);
  else
    dalpha = dA.sum();
  // A fresh empty tensor per absent gradient: outputs of a custom op must not alias each other.
  at::Tensor deta = q.eta_used ? deta_ps.sum() : none_like(u);
  at::Tensor dmw = modulated ? dmw_ps.sum(0) : none_like(u);
  at::Tensor dmb = modulated ? dmb_ps.sum() : none_like(u);
  at::Tensor dfw = fan ? dfw_ps.sum(0) : none_like(u);
  at::Tensor dfb = fan ? dfb_ps.sum(0) : none_like(u);
  return {du, dh, dH, dE, dw, dalpha, deta, dmw, dmb, dfw, dfb};
}

}  // namespace hebbkern
