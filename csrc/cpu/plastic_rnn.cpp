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
  p.etas = q.eta_bstride != 0 ? q.eta.data_ptr<T>() : nullptr;
  p.mod_b = static_cast<T>(q.mod_b_value);
  return p;
}

FwdOut forward(const rnn_args::FwdArgs& a) {
  const Rule rule = rnn_args::checked_rule(a.rule, a.variant, a.u, a.ckpt_every);
  TORCH_CHECK_VALUE(a.u.device().is_cpu(), "hebbkern::plastic_rnn: u must be a CPU tensor");
  const Prepared q = rnn_args::prepare(a.u, a.w, a.alpha, a.h0, a.hebb0, a.elig0, a.opt, rule,
                                       a.clip, /*read_scalars=*/true, a.variant);
  const int64_t B = a.u.size(1), N = a.u.size(2);
  FwdOut out = rnn_args::allocate_forward(a.u, rule, a.ckpt_every);

  AT_DISPATCH_FLOATING_TYPES(a.u.scalar_type(), "plastic_rnn_fwd_cpu", [&] {
    using T = scalar_t;
    const RnnArgs<T> p = make_args<T>(q, a.clip, a.ckpt_every, a.variant);
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

BwdOut backward(const rnn_args::BwdArgs& a) {
  const Rule rule = rnn_args::checked_rule(a.rule, a.variant, a.u, a.ckpt_every);
  TORCH_CHECK_VALUE(a.u.device().is_cpu(), "hebbkern::plastic_rnn: u must be a CPU tensor");
  const Prepared q = rnn_args::prepare(a, rule, /*read_scalars=*/true);
  rnn_args::check_backward_inputs(a, rule);
  const int64_t T_ = a.u.size(0), B = a.u.size(1), N = a.u.size(2);
  const rnn_args::BwdInputs bin = rnn_args::contiguous_backward_inputs(a, rule);
  // The CPU kernels accumulate into the per-sample rows: they start at zero.
  const rnn_args::BwdAccumulators acc =
      rnn_args::allocate_backward(q, a.alpha, rule, /*zeroed=*/true);

  AT_DISPATCH_FLOATING_TYPES(a.u.scalar_type(), "plastic_rnn_bwd_cpu", [&] {
    using T = scalar_t;
    const RnnArgs<T> p = make_args<T>(q, a.clip, a.ckpt_every, a.variant);
    const RnnBwdOut<T> o = rnn_args::bwd_out_ptrs<T>(acc);
    const RnnBwdIn<T> in = rnn_args::bwd_in_ptrs<T>(bin);
    const int64_t K = a.ckpt_every < T_ ? a.ckpt_every : T_;
    const cpu::Isa isa = cpu::active_isa();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<T> scratch(cpu::backward_scratch_size(N, K, has_eligibility(rule)));
      cpu::run_backward(isa, rule, p, in, o, b0, b1, scratch.data());
    });
  });

  return rnn_args::finish_backward(q, a.alpha, bin.h, rule, acc);
}

}  // namespace

TORCH_LIBRARY_IMPL(hebbkern, CPU, m) {
  m.impl("plastic_rnn_fwd", &rnn_args::fwd_entry<forward>);
  m.impl("plastic_rnn_bwd", &rnn_args::bwd_entry<backward>);
}

}  // namespace hebbkern
