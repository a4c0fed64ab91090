// CPU kernels of trace_update: one Hebbian trace update for custom layers.
//
// Per-sample trace [B, M, K]: one streaming pass per sample through the element-wise rule math of
// hebbkern/plastic_rules.h (the same functions plastic_rnn and plastic_step use; "add" is the
// clipped rule with an infinite bound), batch-parallel. Shared trace [M, K]: the batch enters
// through sums over samples, which are GEMMs (pre^T (eta * post)); the rest is element-wise.
#include "../trace_update.h"

#include <ATen/Parallel.h>
#include <torch/types.h>

#include <algorithm>
#include <limits>

#include "hebbkern/plastic_rules.h"
#include "layer_kernel_args.h"

namespace hebbkern {

namespace {

enum class TraceRule { Hebb, Oja, Add, Clip };

TraceRule parse_trace_rule(const std::string& name) {
  if (name == "hebb") return TraceRule::Hebb;
  if (name == "oja") return TraceRule::Oja;
  if (name == "add") return TraceRule::Add;
  if (name == "clip") return TraceRule::Clip;
  TORCH_CHECK_VALUE(false, "hebbkern::trace_update: unknown rule '", name,
                    "' (expected one of hebb, oja, add, clip)");
}

// The clip bound the rule math sees: "add" is "clip" without a bound.
double bound(TraceRule r, double clip) {
  return r == TraceRule::Add ? std::numeric_limits<double>::infinity() : clip;
}

// Checks shapes (the raw ops are safe to call with any tensors); returns eta as [B, K].
at::Tensor check_and_expand_eta(const at::Tensor& trace, const at::Tensor& pre,
                                const at::Tensor& post, const at::Tensor& eta, TraceRule r,
                                double clip) {
  TORCH_CHECK_VALUE(pre.dim() == 2 && post.dim() == 2 && pre.size(0) == post.size(0),
                    "hebbkern::trace_update: pre must be [B, M] and post [B, K], got ", pre.sizes(),
                    " and ", post.sizes());
  const int64_t B = pre.size(0), M = pre.size(1), K = post.size(1);
  const bool shared = trace.dim() == 2;
  TORCH_CHECK_VALUE(
      (shared && trace.size(0) == M && trace.size(1) == K) ||
          (trace.dim() == 3 && trace.size(0) == B && trace.size(1) == M && trace.size(2) == K),
      "hebbkern::trace_update: trace must be [M, K] or [B, M, K], got ", trace.sizes());
  TORCH_CHECK_VALUE(eta.dim() == 0 || (eta.dim() == 1 && eta.size(0) == B) ||
                        (eta.dim() == 2 && eta.size(0) == B && eta.size(1) == K),
                    "hebbkern::trace_update: eta must be 0-dim, [B] or [B, K], got ", eta.sizes());
  TORCH_CHECK_VALUE(!(shared && r == TraceRule::Hebb && eta.dim() != 0),
                    "hebbkern::trace_update: a shared trace with rule 'hebb' needs a scalar eta");
  TORCH_CHECK_VALUE(r != TraceRule::Clip || clip > 0, "hebbkern::trace_update: clip must be > 0");
  TORCH_CHECK_TYPE(trace.scalar_type() == at::kFloat || trace.scalar_type() == at::kDouble,
                   "hebbkern::trace_update: trace must be float32 or float64");
  for (const at::Tensor* t : {&pre, &post, &eta})
    TORCH_CHECK_TYPE(t->scalar_type() == trace.scalar_type(),
                     "hebbkern::trace_update: pre, post and eta must have the dtype of trace");
  return (eta.dim() == 1 ? eta.unsqueeze(1) : eta).expand({B, K}).contiguous();
}

// The element-wise rule of plastic_rules.h that computes a TraceRule ("add": Clip, no bound).
Rule kernel_rule(TraceRule r) {
  return r == TraceRule::Hebb ? Rule::Hebb : (r == TraceRule::Oja ? Rule::Oja : Rule::Clip);
}

// The loops built for the best instruction set the CPU has (layer_kernel_args.h).
template <typename T>
void run_forward(Rule r, const T* H, const T* pre, const T* post, const T* E, T* out, T clip,
                 int64_t M, int64_t K, int64_t b0, int64_t b1) {
  switch (cpu::active_isa()) {
#if defined(__GNUC__) && defined(__x86_64__)
    case cpu::Isa::Avx512:
      return cpu::isa_avx512::trace_update_forward(r, H, pre, post, E, out, clip, M, K, b0, b1);
    case cpu::Isa::Avx2:
      return cpu::isa_avx2::trace_update_forward(r, H, pre, post, E, out, clip, M, K, b0, b1);
#endif
    default:
      return cpu::isa_default::trace_update_forward(r, H, pre, post, E, out, clip, M, K, b0, b1);
  }
}

template <typename T>
void run_backward(Rule r, const T* G, const T* H, const T* pre, const T* post, const T* E, T* dH,
                  T* dpre, T* dpost, T* dE, T clip, int64_t M, int64_t K, int64_t b0, int64_t b1) {
  switch (cpu::active_isa()) {
#if defined(__GNUC__) && defined(__x86_64__)
    case cpu::Isa::Avx512:
      return cpu::isa_avx512::trace_update_backward(r, G, H, pre, post, E, dH, dpre, dpost, dE,
                                                    clip, M, K, b0, b1);
    case cpu::Isa::Avx2:
      return cpu::isa_avx2::trace_update_backward(r, G, H, pre, post, E, dH, dpre, dpost, dE, clip,
                                                  M, K, b0, b1);
#endif
    default:
      return cpu::isa_default::trace_update_backward(r, G, H, pre, post, E, dH, dpre, dpost, dE,
                                                     clip, M, K, b0, b1);
  }
}

at::Tensor reduce_like(const at::Tensor& dE, const at::Tensor& eta) {
  if (eta.dim() == 0) return dE.sum();
  if (eta.dim() == 1) return dE.sum(1);
  return dE;
}

}  // namespace

at::Tensor trace_update_fwd_cpu(const at::Tensor& trace, const at::Tensor& pre,
                                const at::Tensor& post, const at::Tensor& eta,
                                const std::string& rule_name, double clip) {
  const TraceRule r = parse_trace_rule(rule_name);
  const at::Tensor E = check_and_expand_eta(trace, pre, post, eta, r, clip);
  const double c = bound(r, clip);
  if (trace.dim() == 2) {
    if (r == TraceRule::Hebb) return (1 - eta) * trace + eta * pre.t().mm(post);
    const at::Tensor Ep = E * post;
    const at::Tensor S = pre.t().mm(Ep);
    if (r == TraceRule::Oja) return trace + S - trace * (Ep * post).sum(0);
    return r == TraceRule::Clip ? (trace + S).clamp(-c, c) : trace + S;
  }
  const int64_t B = pre.size(0), M = pre.size(1), K = post.size(1);
  at::Tensor H = trace.contiguous(), x = pre.contiguous(), y = post.contiguous();
  at::Tensor out = at::empty({B, M, K}, trace.options());
  AT_DISPATCH_FLOATING_TYPES(trace.scalar_type(), "trace_update_fwd_cpu", [&] {
    using T = scalar_t;
    at::parallel_for(0, B, std::max<int64_t>(1, at::internal::GRAIN_SIZE / (M * K)),
                     [&](int64_t b0, int64_t b1) {
                       run_forward<T>(kernel_rule(r), H.data_ptr<T>(), x.data_ptr<T>(),
                                      y.data_ptr<T>(), E.data_ptr<T>(), out.data_ptr<T>(),
                                      static_cast<T>(c), M, K, b0, b1);
                     });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> trace_update_bwd_cpu(
    const at::Tensor& grad, const at::Tensor& trace, const at::Tensor& pre, const at::Tensor& post,
    const at::Tensor& eta, const std::string& rule_name, double clip) {
  const TraceRule r = parse_trace_rule(rule_name);
  const at::Tensor E = check_and_expand_eta(trace, pre, post, eta, r, clip);
  TORCH_CHECK_VALUE(grad.sizes() == trace.sizes(),
                    "hebbkern::trace_update: grad must have the shape of trace");
  TORCH_CHECK_TYPE(grad.scalar_type() == trace.scalar_type(),
                   "hebbkern::trace_update: grad must have the dtype of trace");
  const double c = bound(r, clip);
  if (trace.dim() == 2) {
    if (r == TraceRule::Hebb) {
      const at::Tensor S0 = pre.t().mm(post);
      const at::Tensor dS = eta * grad;
      return {(1 - eta) * grad, post.mm(dS.t()), pre.mm(dS), (grad * (S0 - trace)).sum()};
    }
    const at::Tensor Ep = E * post;
    if (r == TraceRule::Oja) {
      const at::Tensor S2 = (Ep * post).sum(0);
      const at::Tensor dS2 = -(grad * trace).sum(0);
      const at::Tensor dEp = pre.mm(grad);
      const at::Tensor dpost = dEp * E + dS2 * 2 * Ep;
      const at::Tensor dE = dEp * post + dS2 * post * post;
      return {grad * (1 - S2), Ep.mm(grad.t()), dpost, reduce_like(dE, eta)};
    }
    at::Tensor g = grad.clone();  // a copy: an op's output must not alias its input
    if (r == TraceRule::Clip) {
      const at::Tensor X = trace + pre.t().mm(Ep);
      g = grad * ((X >= -c) & (X <= c)).to(grad.scalar_type());
    }
    const at::Tensor dEp = pre.mm(g);
    return {g, Ep.mm(g.t()), dEp * E, reduce_like(dEp * post, eta)};
  }
  const int64_t B = pre.size(0), M = pre.size(1), K = post.size(1);
  at::Tensor G = grad.contiguous(), H = trace.contiguous(), x = pre.contiguous();
  at::Tensor y = post.contiguous();
  at::Tensor dH = at::empty({B, M, K}, trace.options());
  at::Tensor dpre = at::empty({B, M}, trace.options());
  at::Tensor dpost = at::empty({B, K}, trace.options());
  at::Tensor dE = at::empty({B, K}, trace.options());
  AT_DISPATCH_FLOATING_TYPES(trace.scalar_type(), "trace_update_bwd_cpu", [&] {
    using T = scalar_t;
    at::parallel_for(0, B, std::max<int64_t>(1, at::internal::GRAIN_SIZE / (M * K)),
                     [&](int64_t b0, int64_t b1) {
                       run_backward<T>(kernel_rule(r), G.data_ptr<T>(), H.data_ptr<T>(),
                                       x.data_ptr<T>(), y.data_ptr<T>(), E.data_ptr<T>(),
                                       dH.data_ptr<T>(), dpre.data_ptr<T>(), dpost.data_ptr<T>(),
                                       dE.data_ptr<T>(), static_cast<T>(c), M, K, b0, b1);
                     });
  });
  return {dH, dpre, dpost, reduce_like(dE, eta)};
}

}  // namespace hebbkern
