// Torch-facing side of the CPU plastic_rnn kernels: argument preparation, output allocation, the
// batch split over OpenMP threads (at::parallel_for), the run-time choice of instruction set, and
// the final reductions (dw as one GEMM; per-sample accumulators summed in a fixed order).
// The kernels themselves are in plastic_rnn_kernel.h.
#include "../plastic_rnn.h"

#include <ATen/Parallel.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "plastic_rnn_kernel_args.h"

namespace hebbkern {

namespace cpu {

Isa detected_isa() {
#if defined(__GNUC__) && defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
  return Isa::Default;
}

Isa active_isa() {
  static const Isa best = detected_isa();
  // HEBBKERN_CPU_ISA=default|avx2|avx512 caps the choice (tests run every variant this way).
  const char* cap = std::getenv("HEBBKERN_CPU_ISA");
  if (cap == nullptr || *cap == '\0') return best;
  Isa want = Isa::Avx512;
  if (std::strcmp(cap, "default") == 0)
    want = Isa::Default;
  else if (std::strcmp(cap, "avx2") == 0)
    want = Isa::Avx2;
  return static_cast<int>(want) < static_cast<int>(best) ? want : best;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "default";
  }
}

template <typename T>
void run_forward(Isa isa, Rule r, const RnnArgs<T>& p, const FwdOutPtrs<T>& o, int64_t b0,
                 int64_t b1, T* scratch) {
  switch (isa) {
#if defined(__GNUC__) && defined(__x86_64__)
    case Isa::Avx512: return isa_avx512::forward(r, p, o, b0, b1, scratch);
    case Isa::Avx2: return isa_avx2::forward(r, p, o, b0, b1, scratch);
#endif
    default: return isa_default::forward(r, p, o, b0, b1, scratch);
  }
}

template <typename T>
void run_backward(Isa isa, Rule r, const RnnArgs<T>& p, const BwdInPtrs<T>& in,
                  const BwdOutPtrs<T>& o, int64_t b0, int64_t b1, T* scratch) {
  switch (isa) {
#if defined(__GNUC__) && defined(__x86_64__)
    case Isa::Avx512: return isa_avx512::backward(r, p, in, o, b0, b1, scratch);
    case Isa::Avx2: return isa_avx2::backward(r, p, in, o, b0, b1, scratch);
#endif
    default: return isa_default::backward(r, p, in, o, b0, b1, scratch);
  }
}

}  // namespace cpu

namespace {

using cpu::RnnArgs;

at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->contiguous() : at::Tensor();
}

template <typename T>
T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// Shared by forward and backward: the argument tensors made contiguous and the scalars read.
struct Prepared {
  at::Tensor u, w, A, h0, hebb0, elig0, clamp, mod_w, fan_w, fan_b;
  double eta = 0, mod_b = 0;
};

// The raw ops (torch.ops.hebbkern.plastic_rnn_fwd/bwd) can be called without the Python checks of
// hebbkern/_validation.py, so every shape, dtype and device the kernels rely on is checked here
// too: no argument may make a kernel read or write out of bounds.
void check_arg(const char* name, const at::Tensor& t, const at::Tensor& u, at::IntArrayRef shape) {
  TORCH_CHECK_TYPE(t.scalar_type() == u.scalar_type(), "hebbkern::plastic_rnn: ", name,
                   " must have the dtype of u (", u.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == u.device(), "hebbkern::plastic_rnn: ", name,
                    " must be on the device of u (", u.device(), "), got ", t.device());
  TORCH_CHECK_VALUE(t.sizes() == shape, "hebbkern::plastic_rnn: ", name, " must have shape ", shape,
                    ", got ", t.sizes());
}

bool given(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

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

Prepared prepare(const at::Tensor& u, const at::Tensor& w, const at::Tensor& alpha,
                 const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& hebb0,
                 const std::optional<at::Tensor>& elig0,
                 const std::optional<at::Tensor>& clamp_mask, const std::optional<at::Tensor>& eta,
                 const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
                 const std::optional<at::Tensor>& fanout_w,
                 const std::optional<at::Tensor>& fanout_b, Rule rule, double clip) {
  TORCH_CHECK_VALUE(u.dim() == 3 && u.size(0) >= 1 && u.size(2) >= 1,
                    "hebbkern::plastic_rnn: u must be [T, B, N] with T, N >= 1, got ", u.sizes());
  TORCH_CHECK_TYPE(u.scalar_type() == at::kFloat || u.scalar_type() == at::kDouble,
                   "hebbkern::plastic_rnn: the CPU kernel computes in float32 or float64, got ",
                   u.scalar_type());
  TORCH_CHECK_VALUE(u.device().is_cpu(), "hebbkern::plastic_rnn: u must be a CPU tensor");
  TORCH_CHECK_VALUE(clip > 0, "hebbkern::plastic_rnn: clip must be > 0, got ", clip);
  const int64_t B = u.size(1), N = u.size(2);
  const bool modulated = is_modulated(rule), retro = has_eligibility(rule);
  check_arg("w", w, u, {N, N});
  TORCH_CHECK_VALUE(alpha.dim() <= 2, "hebbkern::plastic_rnn: alpha must be [N, N], [N] or 0-dim");
  if (alpha.dim() == 2)
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
  TORCH_CHECK_VALUE(!uses_eta(rule) || given(eta), "hebbkern::plastic_rnn: this rule needs eta");
  check_scalar("eta", eta, u, uses_eta(rule), "the rules hebb, oja, clip and retro");
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
  // Per-connection alpha is read row by row; per-neuron and scalar alpha become one shared row
  // (row stride 0), which stays in L1 instead of streaming an [N, N] copy every step.
  p.A = alpha.dim() == 2 ? alpha.contiguous() : alpha.expand({N}).contiguous();
  p.h0 = contiguous_or_undefined(h0);
  p.hebb0 = contiguous_or_undefined(hebb0);
  p.elig0 = contiguous_or_undefined(elig0);
  p.clamp = contiguous_or_undefined(clamp_mask);
  if (p.clamp.defined()) p.clamp = p.clamp.to(at::kBool).contiguous();
  p.mod_w = contiguous_or_undefined(mod_w);
  p.fan_w = contiguous_or_undefined(fanout_w);
  p.fan_b = contiguous_or_undefined(fanout_b);
  if (uses_eta(rule)) p.eta = eta->item<double>();
  if (given(mod_b)) p.mod_b = mod_b->item<double>();
  return p;
}

template <typename T>
RnnArgs<T> make_args(const Prepared& q, double clip, int64_t K) {
  RnnArgs<T> p{};
  p.T_ = q.u.size(0);
  p.B = q.u.size(1);
  p.N = q.u.size(2);
  p.K = std::min(K, p.T_);  // one checkpoint interval never exceeds the sequence
  p.u = q.u.data_ptr<T>();
  p.w = q.w.data_ptr<T>();
  p.A = q.A.data_ptr<T>();
  p.a_stride = q.A.dim() == 2 ? p.N : 0;
  p.h0 = ptr_or_null<T>(q.h0);
  p.hebb0 = ptr_or_null<T>(q.hebb0);
  p.elig0 = ptr_or_null<T>(q.elig0);
  p.clamp = q.clamp.defined() ? q.clamp.data_ptr<bool>() : nullptr;
  p.mod_w = ptr_or_null<T>(q.mod_w);
  p.fan_w = ptr_or_null<T>(q.fan_w);
  p.fan_b = ptr_or_null<T>(q.fan_b);
  p.eta = static_cast<T>(q.eta);
  p.mod_b = static_cast<T>(q.mod_b);
  p.clip = static_cast<T>(clip);
  return p;
}

at::Tensor empty_like_opts(const at::Tensor& ref) { return at::empty({0}, ref.options()); }

}  // namespace

FwdOut plastic_rnn_fwd_cpu(
    const at::Tensor& u, const at::Tensor& w, const at::Tensor& alpha,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& hebb0,
    const std::optional<at::Tensor>& elig0, const std::optional<at::Tensor>& clamp_mask,
    const std::optional<at::Tensor>& eta, const std::optional<at::Tensor>& mod_w,
    const std::optional<at::Tensor>& mod_b, const std::optional<at::Tensor>& fanout_w,
    const std::optional<at::Tensor>& fanout_b, const std::string& rule_name, double clip,
    int64_t ckpt_every) {
  const Rule rule = parse_rule(rule_name);
  TORCH_CHECK_VALUE(ckpt_every >= 1, "hebbkern::plastic_rnn: ckpt_every must be >= 1");
  const Prepared q = prepare(u, w, alpha, h0, hebb0, elig0, clamp_mask, eta, mod_w, mod_b, fanout_w,
                             fanout_b, rule, clip);
  const int64_t T_ = u.size(0), B = u.size(1), N = u.size(2);
  const int64_t C = (T_ + ckpt_every - 1) / ckpt_every;
  const auto opts = u.options();
  at::Tensor h = at::empty({T_, B, N}, opts);
  at::Tensor hebb_T = at::empty({B, N, N}, opts);
  at::Tensor ck_h = at::empty({C, B, N, N}, opts);
  const bool elig = has_eligibility(rule);
  at::Tensor elig_T = elig ? at::empty({B, N, N}, opts) : empty_like_opts(u);
  at::Tensor ck_e = elig ? at::empty({C, B, N, N}, opts) : empty_like_opts(u);
  at::Tensor mod = is_modulated(rule) ? at::empty({T_, B}, opts) : empty_like_opts(u);

  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "plastic_rnn_fwd_cpu", [&] {
    using T = scalar_t;
    const RnnArgs<T> p = make_args<T>(q, clip, ckpt_every);
    const cpu::FwdOutPtrs<T> o{.h = h.data_ptr<T>(),
                               .hebb_T = hebb_T.data_ptr<T>(),
                               .elig_T = ptr_or_null<T>(elig_T),
                               .ck_h = ck_h.data_ptr<T>(),
                               .ck_e = ptr_or_null<T>(ck_e),
                               .mod = ptr_or_null<T>(mod)};
    // The instruction set is read once per call (it consults the environment), not per worker.
    const cpu::Isa isa = cpu::active_isa();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<T> scratch(cpu::forward_scratch_size(N));
      cpu::run_forward(isa, rule, p, o, b0, b1, scratch.data());
    });
  });
  return {h, hebb_T, elig_T, ck_h, ck_e, mod};
}

BwdOut plastic_rnn_bwd_cpu(
    const std::optional<at::Tensor>& grad_h, const std::optional<at::Tensor>& grad_hebb,
    const std::optional<at::Tensor>& grad_elig, const at::Tensor& u, const at::Tensor& w,
    const at::Tensor& alpha, const std::optional<at::Tensor>& h0, const at::Tensor& h,
    const at::Tensor& hebb_ckpt, const at::Tensor& elig_ckpt, const at::Tensor& mod,
    const std::optional<at::Tensor>& clamp_mask, const std::optional<at::Tensor>& eta,
    const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
    const std::optional<at::Tensor>& fanout_w, const std::optional<at::Tensor>& fanout_b,
    const std::string& rule_name, double clip, int64_t ckpt_every) {
  const Rule rule = parse_rule(rule_name);
  TORCH_CHECK_VALUE(ckpt_every >= 1, "hebbkern::plastic_rnn: ckpt_every must be >= 1");
  const Prepared q = prepare(u, w, alpha, h0, std::nullopt, std::nullopt, clamp_mask, eta, mod_w,
                             mod_b, fanout_w, fanout_b, rule, clip);
  const int64_t T_ = u.size(0), B = u.size(1), N = u.size(2);
  const bool elig = has_eligibility(rule), modulated = is_modulated(rule);
  // The saved forward outputs must be the ones plastic_rnn_fwd made with the same ckpt_every.
  const int64_t C = (T_ + ckpt_every - 1) / ckpt_every;
  check_arg("h", h, u, {T_, B, N});
  check_arg("hebb_ckpt", hebb_ckpt, u, {C, B, N, N});
  if (elig) check_arg("elig_ckpt", elig_ckpt, u, {C, B, N, N});
  if (modulated) check_arg("mod", mod, u, {T_, B});
  check_opt("grad_h", grad_h, u, {T_, B, N}, true, "");
  check_opt("grad_hebb", grad_hebb, u, {B, N, N}, true, "");
  check_opt("grad_elig", grad_elig, u, {B, N, N}, elig, "rule 'retro'");
  const bool fan = q.fan_w.defined();
  const auto opts = u.options();
  at::Tensor gh = contiguous_or_undefined(grad_h);
  at::Tensor gH = contiguous_or_undefined(grad_hebb);
  at::Tensor gE = elig ? contiguous_or_undefined(grad_elig) : at::Tensor();
  at::Tensor h_c = h.contiguous(), ck_h = hebb_ckpt.contiguous(), ck_e = elig_ckpt.contiguous();
  at::Tensor mod_c = mod.contiguous();

  at::Tensor du = at::empty({T_, B, N}, opts);
  at::Tensor da = at::empty({T_, B, N}, opts);
  // d alpha per sample: [N, N], or one [N] row when alpha is per neuron or scalar.
  at::Tensor dA = alpha.dim() == 2 ? at::zeros({B, N, N}, opts) : at::zeros({B, N}, opts);
  at::Tensor deta_ps = at::zeros({B}, opts);
  at::Tensor dmw_ps = modulated ? at::zeros({B, N}, opts) : at::Tensor();
  at::Tensor dmb_ps = modulated ? at::zeros({B}, opts) : at::Tensor();
  at::Tensor dfw_ps = fan ? at::zeros({B, N}, opts) : at::Tensor();
  at::Tensor dfb_ps = fan ? at::zeros({B, N}, opts) : at::Tensor();
  at::Tensor dh0 = at::empty({B, N}, opts);
  at::Tensor dH0 = at::empty({B, N, N}, opts);
  at::Tensor dE0 = elig ? at::empty({B, N, N}, opts) : empty_like_opts(u);

  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "plastic_rnn_bwd_cpu", [&] {
    using T = scalar_t;
    const RnnArgs<T> p = make_args<T>(q, clip, ckpt_every);
    // Designated initialisers: a field added to these structs cannot be silently left null.
    const cpu::BwdOutPtrs<T> o{.dA = dA.data_ptr<T>(),
                               .deta = deta_ps.data_ptr<T>(),
                               .dmw = ptr_or_null<T>(dmw_ps),
                               .dmb = ptr_or_null<T>(dmb_ps),
                               .dfw = ptr_or_null<T>(dfw_ps),
                               .dfb = ptr_or_null<T>(dfb_ps),
                               .du = du.data_ptr<T>(),
                               .da = da.data_ptr<T>(),
                               .dh0 = dh0.data_ptr<T>(),
                               .dH0 = dH0.data_ptr<T>(),
                               .dE0 = ptr_or_null<T>(dE0)};
    const cpu::BwdInPtrs<T> in{.gh = ptr_or_null<T>(gh),
                               .gH = ptr_or_null<T>(gH),
                               .gE = ptr_or_null<T>(gE),
                               .h = h_c.data_ptr<T>(),
                               .ck_h = ck_h.data_ptr<T>(),
                               .ck_e = ptr_or_null<T>(ck_e),
                               .mod = ptr_or_null<T>(mod_c)};
    const int64_t K = ckpt_every < T_ ? ckpt_every : T_;
    const cpu::Isa isa = cpu::active_isa();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<T> scratch(cpu::backward_scratch_size(N, K, elig));
      cpu::run_backward(isa, rule, p, in, o, b0, b1, scratch.data());
    });
  });

  // dw = sum_t h_{t-1}^T da_t: one GEMM over all steps and samples.
  at::Tensor h_prev = at::cat(
      {q.h0.defined() ? q.h0.unsqueeze(0) : at::zeros({1, B, N}, opts), h_c.narrow(0, 0, T_ - 1)});
  at::Tensor dw = h_prev.reshape({T_ * B, N}).t().mm(da.reshape({T_ * B, N}));
  at::Tensor dalpha = alpha.dim() == 0 ? dA.sum() : dA.sum(0);
  // Each unused gradient is its own empty tensor: outputs of a custom op must not alias each other.
  at::Tensor deta = uses_eta(rule) ? deta_ps.sum() : empty_like_opts(u);
  at::Tensor dmw = modulated ? dmw_ps.sum(0) : empty_like_opts(u);
  at::Tensor dmb = modulated ? dmb_ps.sum() : empty_like_opts(u);
  at::Tensor dfw = fan ? dfw_ps.sum(0) : empty_like_opts(u);
  at::Tensor dfb = fan ? dfb_ps.sum(0) : empty_like_opts(u);
  return {du, dw, dalpha, dh0, dH0, dE0, deta, dmw, dmb, dfw, dfb};
}

}  // namespace hebbkern
