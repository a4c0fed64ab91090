// CPU kernels of trace_update: one Hebbian trace update for custom layers.
//
// Per-sample trace [B, M, K]: one streaming pass per sample through the element-wise rule math of
// hebbkern/plastic_rules.h (the same functions plastic_rnn and plastic_step use; "add" is the
// clipped rule with an infinite bound), batch-parallel. Shared trace [M, K]: the batch enters
// through sums over samples, which are GEMMs (pre^T (eta * post)); the rest is element-wise.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <limits>

#include "../trace_update_common.h"
#include "hebbkern/plastic_rules.h"
#include "isa.h"

namespace hebbkern {

// The loops of trace_update_kernel.cpp, built once per instruction set.
namespace cpu {
#define HEBBKERN_DECLARE_TRACE_UPDATE_T(T)                                                       \
  void trace_update_forward(Rule r, const T* H, const T* pre, const T* post, const T* E, T* out, \
                            T clip, int64_t M, int64_t K, int64_t b0, int64_t b1);               \
  void trace_update_backward(Rule r, const T* G, const T* H, const T* pre, const T* post,        \
                             const T* E, T* dH, T* dpre, T* dpost, T* dE, T clip, int64_t M,     \
                             int64_t K, int64_t b0, int64_t b1);
#define HEBBKERN_DECLARE_TRACE_UPDATE(ns) \
  namespace ns {                          \
  HEBBKERN_DECLARE_TRACE_UPDATE_T(float)  \
  HEBBKERN_DECLARE_TRACE_UPDATE_T(double) \
  }
HEBBKERN_FOR_EACH_CPU_ISA(HEBBKERN_DECLARE_TRACE_UPDATE)
}  // namespace cpu

namespace {

using trace_update_common::bound;
using trace_update_common::check_and_expand_eta;
using trace_update_common::kernel_rule;
using trace_update_common::parse_trace_rule;
using trace_update_common::reduce_like;
using trace_update_common::shared_backward;
using trace_update_common::shared_forward;
using trace_update_common::TraceRule;

// The loops built for the best instruction set the CPU has (isa.h).
template <typename T>
void run_forward(Rule r, const T* H, const T* pre, const T* post, const T* E, T* out, T clip,
                 int64_t M, int64_t K, int64_t b0, int64_t b1) {
  HEBBKERN_CPU_DISPATCH(cpu::active_isa(), cpu, trace_update_forward, r, H, pre, post, E, out, clip,
                        M, K, b0, b1)
}

template <typename T>
void run_backward(Rule r, const T* G, const T* H, const T* pre, const T* post, const T* E, T* dH,
                  T* dpre, T* dpost, T* dE, T clip, int64_t M, int64_t K, int64_t b0, int64_t b1){
    HEBBKERN_CPU_DISPATCH(cpu::active_isa(), cpu, trace_update_backward, r, G, H, pre, post, E, dH,
                          dpre, dpost, dE, clip, M, K, b0, b1)}

// Samples per task: about at::internal::GRAIN_SIZE trace elements of [M, K].
int64_t sample_grain(int64_t M, int64_t K) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, M * K));
}

at::Tensor trace_update_fwd_cpu(const at::Tensor& trace, const at::Tensor& pre,
                                const at::Tensor& post, const at::Tensor& eta,
                                const std::string& rule_name, double clip) {
  const TraceRule r = parse_trace_rule(rule_name);
  const at::Tensor E = check_and_expand_eta(trace, pre, post, eta, r, clip);
  const double c = bound(r, clip);
  if (trace.dim() == 2) return shared_forward(trace, pre, post, eta, E, r, c);
  const int64_t B = pre.size(0), M = pre.size(1), K = post.size(1);
  at::Tensor H = trace.contiguous(), x = pre.contiguous(), y = post.contiguous();
  at::Tensor out = at::empty({B, M, K}, trace.options());
  AT_DISPATCH_FLOATING_TYPES(trace.scalar_type(), "trace_update_fwd_cpu", [&] {
    using T = scalar_t;
    at::parallel_for(0, B, sample_grain(M, K), [&](int64_t b0, int64_t b1) {
      run_forward<T>(kernel_rule(r), H.data_ptr<T>(), x.data_ptr<T>(), y.data_ptr<T>(),
                     E.data_ptr<T>(), out.data_ptr<T>(), static_cast<T>(c), M, K, b0, b1);
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
  if (trace.dim() == 2) return shared_backward(grad, trace, pre, post, eta, E, r, c);
  const int64_t B = pre.size(0), M = pre.size(1), K = post.size(1);
  at::Tensor G = grad.contiguous(), H = trace.contiguous(), x = pre.contiguous();
  at::Tensor y = post.contiguous();
  at::Tensor dH = at::empty({B, M, K}, trace.options());
  at::Tensor dpre = at::empty({B, M}, trace.options());
  at::Tensor dpost = at::empty({B, K}, trace.options());
  at::Tensor dE = at::empty({B, K}, trace.options());
  AT_DISPATCH_FLOATING_TYPES(trace.scalar_type(), "trace_update_bwd_cpu", [&] {
    using T = scalar_t;
    at::parallel_for(0, B, sample_grain(M, K), [&](int64_t b0, int64_t b1) {
      run_backward<T>(kernel_rule(r), G.data_ptr<T>(), H.data_ptr<T>(), x.data_ptr<T>(),
                      y.data_ptr<T>(), E.data_ptr<T>(), dH.data_ptr<T>(), dpre.data_ptr<T>(),
                      dpost.data_ptr<T>(), dE.data_ptr<T>(), static_cast<T>(c), M, K, b0, b1);
    });
  });
  return {dH, dpre, dpost, reduce_like(dE, eta)};
}

}  // namespace

TORCH_LIBRARY_IMPL(hebbkern, CPU, m) {
  m.impl("trace_update_fwd", &trace_update_fwd_cpu);
  m.impl("trace_update_bwd", &trace_update_bwd_cpu);
}

}  // namespace hebbkern
