// Torch-facing side of the CPU plastic_rnn kernels: argument preparation, output allocation, the
// batch split over OpenMP threads (at::parallel_for), the run-time choice of instruction set, and
// the final reductions (dw as one GEMM; per-sample accumulators summed in a fixed order).
// The kernels themselves are in plastic_rnn_kernel.cpp; the instruction-set choice in isa.cpp.
#include "../plastic_rnn.h"

#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../plastic_rnn_args.h"
#include "plastic_rnn_kernel_args.h"

namespace hebbkern {

namespace cpu {

template <typename T>
void run_forward(Isa isa, Rule r, const RnnArgs<T>& p, const FwdOutPtrs<T>& o, int64_t b0,
                 int64_t b1, T* scratch) {
  HEBBKERN_CPU_DISPATCH(isa, cpu, forward, r, p, o, b0, b1, scratch)
}

template <typename T>
void run_backward(Isa isa, Rule r, const RnnArgs<T>& p, const BwdInPtrs<T>& in,
                  const BwdOutPtrs<T>& o, int64_t b0, int64_t b1, T* scratch) {
  HEBBKERN_CPU_DISPATCH(isa, cpu, backward, r, p, in, o, b0, b1, scratch)
}

}  // namespace cpu

namespace {

using cpu::RnnArgs;

using rnn_args::Prepared;
using rnn_args::ptr_or_null;

template <typename T>
RnnArgs<T> make_args(const Prepared& q, double clip, int64_t K, int64_t variant) {
  RnnArgs<T> p{};
  rnn_args::fill_inputs<T>(p, q, clip, K);
  rnn_args::set_variant<T>(p, variant);
  p.eta = static_cast<T>(q.eta_value);
  p.mod_b = static_cast<T>(q.mod_b_value);
  return p;
}

FwdOut plastic_rnn_fwd_cpu(
    const at::Tensor& u, const at::Tensor& w, const at::Tensor& alpha,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& hebb0,
    const std::optional<at::Tensor>& elig0, const std::optional<at::Tensor>& clamp_mask,
    const std::optional<at::Tensor>& eta, const std::optional<at::Tensor>& mod_w,
    const std::optional<at::Tensor>& mod_b, const std::optional<at::Tensor>& fanout_w,
    const std::optional<at::Tensor>& fanout_b, const std::string& rule_name, double clip,
    int64_t ckpt_every, int64_t variant) {
  const Rule rule = parse_rule(rule_name, variant, u.dim() == 3 ? u.size(2) : 0);
  TORCH_CHECK_VALUE(ckpt_every >= 1, "hebbkern::plastic_rnn: ckpt_every must be >= 1");
  TORCH_CHECK_VALUE(u.device().is_cpu(), "hebbkern::plastic_rnn: u must be a CPU tensor");
  const Prepared q =
      rnn_args::prepare(u, w, alpha, h0, hebb0, elig0, clamp_mask, eta, mod_w, mod_b, fanout_w,
                        fanout_b, rule, clip, /*read_scalars=*/true, variant);
  const int64_t B = u.size(1), N = u.size(2);
  FwdOut out = rnn_args::allocate_forward(u, rule, ckpt_every);

  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "plastic_rnn_fwd_cpu", [&] {
    using T = scalar_t;
    const RnnArgs<T> p = make_args<T>(q, clip, ckpt_every, variant);
    const RnnFwdOut<T> o = rnn_args::fwd_ptrs<T>(out);
    // The instruction set is read once per call (it consults the environment), not per worker.
    const cpu::Isa isa = cpu::active_isa();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<T> scratch(cpu::forward_scratch_size(N));
      cpu::run_forward(isa, rule, p, o, b0, b1, scratch.data());
    });
  });
  return out;
}

BwdOut plastic_rnn_bwd_cpu(
    const std::optional<at::Tensor>& grad_h, const std::optional<at::Tensor>& grad_hebb,
    const std::optional<at::Tensor>& grad_elig, const at::Tensor& u, const at::Tensor& w,
    const at::Tensor& alpha, const std::optional<at::Tensor>& h0, const at::Tensor& h,
    const at::Tensor& hebb_ckpt, const at::Tensor& elig_ckpt, const at::Tensor& mod,
    const std::optional<at::Tensor>& clamp_mask, const std::optional<at::Tensor>& eta,
    const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
    const std::optional<at::Tensor>& fanout_w, const std::optional<at::Tensor>& fanout_b,
    const std::string& rule_name, double clip, int64_t ckpt_every, int64_t variant) {
  const Rule rule = parse_rule(rule_name, variant, u.dim() == 3 ? u.size(2) : 0);
  TORCH_CHECK_VALUE(ckpt_every >= 1, "hebbkern::plastic_rnn: ckpt_every must be >= 1");
  TORCH_CHECK_VALUE(u.device().is_cpu(), "hebbkern::plastic_rnn: u must be a CPU tensor");
  const Prepared q =
      rnn_args::prepare(u, w, alpha, h0, std::nullopt, std::nullopt, clamp_mask, eta, mod_w, mod_b,
                        fanout_w, fanout_b, rule, clip, /*read_scalars=*/true, variant);
  rnn_args::check_backward_inputs(grad_h, grad_hebb, grad_elig, u, h, hebb_ckpt, elig_ckpt, mod,
                                  rule, ckpt_every);
  const int64_t T_ = u.size(0), B = u.size(1), N = u.size(2);
  const rnn_args::BwdInputs bin = rnn_args::contiguous_backward_inputs(
      grad_h, grad_hebb, grad_elig, h, hebb_ckpt, elig_ckpt, mod, rule);
  // The CPU kernels accumulate into the per-sample rows: they start at zero.
  const rnn_args::BwdAccumulators a = rnn_args::allocate_backward(q, alpha, rule, /*zeroed=*/true);

  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "plastic_rnn_bwd_cpu", [&] {
    using T = scalar_t;
    const RnnArgs<T> p = make_args<T>(q, clip, ckpt_every, variant);
    const RnnBwdOut<T> o = rnn_args::bwd_out_ptrs<T>(a);
    const RnnBwdIn<T> in = rnn_args::bwd_in_ptrs<T>(bin);
    const int64_t K = ckpt_every < T_ ? ckpt_every : T_;
    const cpu::Isa isa = cpu::active_isa();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<T> scratch(cpu::backward_scratch_size(N, K, has_eligibility(rule)));
      cpu::run_backward(isa, rule, p, in, o, b0, b1, scratch.data());
    });
  });

  return rnn_args::finish_backward(q, alpha, bin.h, rule, a);
}

}  // namespace

TORCH_LIBRARY_IMPL(hebbkern, CPU, m) {
  m.impl("plastic_rnn_fwd", &plastic_rnn_fwd_cpu);
  m.impl("plastic_rnn_bwd", &plastic_rnn_bwd_cpu);
}

}  // namespace hebbkern
