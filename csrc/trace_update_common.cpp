// See trace_update_common.h.
#include "trace_update_common.h"

#include <limits>

namespace hebbkern::trace_update_common {

TraceRule parse_trace_rule(const std::string& name) {
  if (name == "hebb") return TraceRule::Hebb;
  if (name == "oja") return TraceRule::Oja;
  if (name == "add") return TraceRule::Add;
  if (name == "clip") return TraceRule::Clip;
  TORCH_CHECK_VALUE(false, "hebbkern::trace_update: unknown rule '", name,
                    "' (expected one of hebb, oja, add, clip)");
}

double bound(TraceRule r, double clip) {
  return r == TraceRule::Add ? std::numeric_limits<double>::infinity() : clip;
}

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
  for (const at::Tensor* t : {&pre, &post, &eta}) {
    TORCH_CHECK_TYPE(t->scalar_type() == trace.scalar_type(),
                     "hebbkern::trace_update: pre, post and eta must have the dtype of trace");
    TORCH_CHECK_VALUE(t->device() == trace.device(),
                      "hebbkern::trace_update: pre, post and eta must be on the device of trace (",
                      trace.device(), "), got ", t->device());
  }
  return (eta.dim() == 1 ? eta.unsqueeze(1) : eta).expand({B, K}).contiguous();
}

Rule kernel_rule(TraceRule r) {
  return r == TraceRule::Hebb ? Rule::Hebb : (r == TraceRule::Oja ? Rule::Oja : Rule::Clip);
}

at::Tensor reduce_like(const at::Tensor& dE, const at::Tensor& eta) {
  if (eta.dim() == 0) return dE.sum();
  if (eta.dim() == 1) return dE.sum(1).contiguous();
  return dE.contiguous();
}

// Every output is contiguous, whatever the inputs' strides (element-wise ATen ops would follow a
// transposed trace's): the fake kernels promise contiguous outputs, and compiled graphs assert it.
at::Tensor shared_forward(const at::Tensor& trace, const at::Tensor& pre, const at::Tensor& post,
                          const at::Tensor& eta, const at::Tensor& E, TraceRule r, double c) {
  if (r == TraceRule::Hebb) return ((1 - eta) * trace + eta * pre.t().mm(post)).contiguous();
  const at::Tensor Ep = E * post;
  const at::Tensor S = pre.t().mm(Ep);
  if (r == TraceRule::Oja) return (trace + S - trace * (Ep * post).sum(0)).contiguous();
  return (r == TraceRule::Clip ? (trace + S).clamp(-c, c) : trace + S).contiguous();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> shared_backward(
    const at::Tensor& grad, const at::Tensor& trace, const at::Tensor& pre, const at::Tensor& post,
    const at::Tensor& eta, const at::Tensor& E, TraceRule r, double c) {
  if (r == TraceRule::Hebb) {
    const at::Tensor S0 = pre.t().mm(post);
    const at::Tensor dS = eta * grad;
    return {((1 - eta) * grad).contiguous(), post.mm(dS.t()), pre.mm(dS),
            (grad * (S0 - trace)).sum()};
  }
  const at::Tensor Ep = E * post;
  if (r == TraceRule::Oja) {
    const at::Tensor S2 = (Ep * post).sum(0);
    const at::Tensor dS2 = -(grad * trace).sum(0);
    const at::Tensor dEp = pre.mm(grad);
    const at::Tensor dpost = dEp * E + dS2 * 2 * Ep;
    const at::Tensor dE = dEp * post + dS2 * post * post;
    return {(grad * (1 - S2)).contiguous(), Ep.mm(grad.t()).contiguous(), dpost.contiguous(),
            reduce_like(dE, eta)};
  }
  at::Tensor g = grad.clone();  // a copy: an op's output must not alias its input
  if (r == TraceRule::Clip) {
    const at::Tensor X = trace + pre.t().mm(Ep);
    g = grad * ((X >= -c) & (X <= c)).to(grad.scalar_type());
  }
  const at::Tensor dEp = pre.mm(g);
  return {g.contiguous(), Ep.mm(g.t()).contiguous(), (dEp * E).contiguous(),
          reduce_like(dEp * post, eta)};
}

}  // namespace hebbkern::trace_update_common
