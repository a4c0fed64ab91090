// Torch-facing side of the block kernels of plastic_rnn (csrc/include/hebbkern/
// plastic_rnn_block.h): the CUDA implementation of hebbkern::plastic_rnn_fwd/bwd, and the CPU
// emulation of the same kernels (hebbkern::_plastic_rnn_emulated_fwd/bwd) that the tests run on
// machines without a GPU. Both go through the functions below; only the last call differs.
#include <torch/library.h>
#include <torch/types.h>

#include <limits>
#include <vector>

#include "hebbkern/plastic_rnn_block.h"
#include "plastic_rnn.h"
#include "plastic_rnn_args.h"

#ifdef HEBBKERN_WITH_CUDA
// c10 headers only: ATen/cuda/CUDAContext.h needs the cuSPARSE/cuBLAS headers, which a minimal
// toolkit lacks.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/plastic_rnn_launch.h"
#endif

namespace hebbkern {

namespace emu {
// csrc/cpu/plastic_rnn_emulated.cpp
template <typename T>
void run_forward(Rule rule, const simt::RnnParams<T>& p, const RnnFwdOut<T>& o,
                 const simt::Placement& pl, T* scratch, bool reverse);
template <typename T>
void run_backward(Rule rule, const simt::RnnParams<T>& p, const RnnBwdIn<T>& in,
                  const RnnBwdOut<T>& o, const simt::Placement& pl, T* scratch, bool reverse);
}  // namespace emu

namespace {

using rnn_args::Prepared;
using rnn_args::ptr_or_null;

// Where the block kernels run: on the GPU, or emulated on the CPU with a given block size and
// shared-memory budget (so the tests reach both placements of plastic_rnn_block.h).
struct Target {
  bool emulate;
  int threads;
  int64_t smem_budget;  // bytes
  bool reverse;         // emulation only: items, warps and lanes in reverse order
};

void check_target(const Target& tg, const at::Tensor& u) {
  if (tg.emulate) {
    TORCH_CHECK_VALUE(u.device().is_cpu(), "hebbkern::_plastic_rnn_emulated: u must be on the CPU");
    TORCH_CHECK_VALUE(
        tg.threads >= simt::kWarpSize && tg.threads <= 1024 && tg.threads % simt::kWarpSize == 0,
        "hebbkern::_plastic_rnn_emulated: threads must be a multiple of 32 in "
        "[32, 1024], got ",
        tg.threads);
    TORCH_CHECK_VALUE(tg.smem_budget >= 0, "hebbkern::_plastic_rnn_emulated: smem_budget < 0");
  } else {
    TORCH_CHECK_VALUE(u.device().is_cuda(), "hebbkern::plastic_rnn: u must be a CUDA tensor");
  }
}

template <typename T>
simt::RnnParams<T> make_params(const Prepared& q, double clip, int64_t K, int64_t variant) {
  simt::RnnParams<T> p{};
  rnn_args::fill_inputs<T>(p, q, clip, K);
  rnn_args::set_variant<T>(p, variant);
  p.eta = ptr_or_null<T>(q.eta);
  p.mod_b = ptr_or_null<T>(q.mod_b);
  return p;
}

template <typename T>
simt::Placement placement(const Target& tg, bool backward, const simt::RnnParams<T>& p, Rule rule) {
  return simt::place(backward, p.N, p.K, has_eligibility(rule), tg.threads, tg.smem_budget,
                     sizeof(T));
}

// Global scratch of the kernels; NaN-filled in the emulation so that an element read before it is
// written shows up in the tests.
at::Tensor new_scratch(const Target& tg, int64_t n, const at::Tensor& u) {
  return tg.emulate ? at::full({n}, std::numeric_limits<double>::quiet_NaN(), u.options())
                    : at::empty({n}, u.options());
}

#ifdef HEBBKERN_WITH_CUDA
void check_cuda(cudaError_t e) {
  TORCH_CHECK(e == cudaSuccess,
              "hebbkern::plastic_rnn: CUDA kernel launch failed: ", cudaGetErrorString(e));
}

Target cuda_target(const at::Tensor& u) {
  const int64_t budget = cuda_kernels::smem_budget(u.device().index());
  TORCH_CHECK(budget >= 0, "hebbkern::plastic_rnn: cannot query the device's shared memory");
  return {false, cuda_kernels::kThreads, budget, false};
}
#endif

FwdOut forward(const Target& tg, const at::Tensor& u, const at::Tensor& w, const at::Tensor& alpha,
               const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& hebb0,
               const std::optional<at::Tensor>& elig0, const std::optional<at::Tensor>& clamp_mask,
               const std::optional<at::Tensor>& eta, const std::optional<at::Tensor>& mod_w,
               const std::optional<at::Tensor>& mod_b, const std::optional<at::Tensor>& fanout_w,
               const std::optional<at::Tensor>& fanout_b, const std::string& rule_name, double clip,
               int64_t ckpt_every, int64_t variant) {
  const Rule rule = parse_rule(rule_name, variant, u.dim() == 3 ? u.size(2) : 0);
  TORCH_CHECK_VALUE(ckpt_every >= 1, "hebbkern::plastic_rnn: ckpt_every must be >= 1");
  check_target(tg, u);
  TORCH_CHECK_VALUE(u.dim() != 3 || u.size(1) < (int64_t{1} << 31),
                    "hebbkern::plastic_rnn: batch too large for one launch: ", u.size(1));
  const Prepared q = rnn_args::prepare(u, w, alpha, h0, hebb0, elig0, clamp_mask, eta, mod_w, mod_b,
                                       fanout_w, fanout_b, rule, clip, false, variant);
  FwdOut out = rnn_args::allocate_forward(u, rule, ckpt_every);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "plastic_rnn_fwd_block", [&] {
    using T = scalar_t;
    const simt::RnnParams<T> p = make_params<T>(q, clip, ckpt_every, variant);
    const RnnFwdOut<T> o = rnn_args::fwd_ptrs<T>(out);
    const simt::Placement pl = placement(tg, false, p, rule);
    at::Tensor scratch = new_scratch(tg, p.B * pl.scratch_per_sample, u);
    if (p.B == 0) {
      // Nothing to run (a launch of zero blocks is an error).
    } else if (tg.emulate) {
      emu::run_forward<T>(rule, p, o, pl, scratch.data_ptr<T>(), tg.reverse);
    } else {
#ifdef HEBBKERN_WITH_CUDA
      check_cuda(cuda_kernels::launch_forward<T>(rule, p, o, pl, scratch.data_ptr<T>(),
                                                 c10::cuda::getCurrentCUDAStream().stream()));
#endif
    }
  });
  return out;
}

BwdOut backward(const Target& tg, const std::optional<at::Tensor>& grad_h,
                const std::optional<at::Tensor>& grad_hebb,
                const std::optional<at::Tensor>& grad_elig, const at::Tensor& u,
                const at::Tensor& w, const at::Tensor& alpha, const std::optional<at::Tensor>& h0,
                const at::Tensor& h, const at::Tensor& hebb_ckpt, const at::Tensor& elig_ckpt,
                const at::Tensor& mod, const std::optional<at::Tensor>& clamp_mask,
                const std::optional<at::Tensor>& eta, const std::optional<at::Tensor>& mod_w,
                const std::optional<at::Tensor>& mod_b, const std::optional<at::Tensor>& fanout_w,
                const std::optional<at::Tensor>& fanout_b, const std::string& rule_name,
                double clip, int64_t ckpt_every, int64_t variant) {
  const Rule rule = parse_rule(rule_name, variant, u.dim() == 3 ? u.size(2) : 0);
  TORCH_CHECK_VALUE(ckpt_every >= 1, "hebbkern::plastic_rnn: ckpt_every must be >= 1");
  check_target(tg, u);
  const Prepared q =
      rnn_args::prepare(u, w, alpha, h0, std::nullopt, std::nullopt, clamp_mask, eta, mod_w, mod_b,
                        fanout_w, fanout_b, rule, clip, false, variant);
  rnn_args::check_backward_inputs(grad_h, grad_hebb, grad_elig, u, h, hebb_ckpt, elig_ckpt, mod,
                                  rule, ckpt_every);
  const rnn_args::BwdInputs bin = rnn_args::contiguous_backward_inputs(
      grad_h, grad_hebb, grad_elig, h, hebb_ckpt, elig_ckpt, mod, rule);
  // The block kernels write every per-sample accumulator whole: no zero-filling here.
  const rnn_args::BwdAccumulators a = rnn_args::allocate_backward(q, alpha, rule, false);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "plastic_rnn_bwd_block", [&] {
    using T = scalar_t;
    const simt::RnnParams<T> p = make_params<T>(q, clip, ckpt_every, variant);
    const RnnBwdOut<T> o = rnn_args::bwd_out_ptrs<T>(a);
    const RnnBwdIn<T> in = rnn_args::bwd_in_ptrs<T>(bin);
    const simt::Placement pl = placement(tg, true, p, rule);
    at::Tensor scratch = new_scratch(tg, p.B * pl.scratch_per_sample, u);
    if (p.B == 0) {
      // Nothing to run.
    } else if (tg.emulate) {
      emu::run_backward<T>(rule, p, in, o, pl, scratch.data_ptr<T>(), tg.reverse);
    } else {
#ifdef HEBBKERN_WITH_CUDA
      check_cuda(cuda_kernels::launch_backward<T>(rule, p, in, o, pl, scratch.data_ptr<T>(),
                                                  c10::cuda::getCurrentCUDAStream().stream()));
#endif
    }
  });
  return rnn_args::finish_backward(q, alpha, bin.h, rule, a);
}

FwdOut plastic_rnn_emulated_fwd(
    const at::Tensor& u, const at::Tensor& w, const at::Tensor& alpha,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& hebb0,
    const std::optional<at::Tensor>& elig0, const std::optional<at::Tensor>& clamp_mask,
    const std::optional<at::Tensor>& eta, const std::optional<at::Tensor>& mod_w,
    const std::optional<at::Tensor>& mod_b, const std::optional<at::Tensor>& fanout_w,
    const std::optional<at::Tensor>& fanout_b, const std::string& rule, double clip,
    int64_t ckpt_every, int64_t threads, int64_t smem_budget, bool reverse, int64_t variant) {
  const Target tg{true, static_cast<int>(threads), smem_budget, reverse};
  return forward(tg, u, w, alpha, h0, hebb0, elig0, clamp_mask, eta, mod_w, mod_b, fanout_w,
                 fanout_b, rule, clip, ckpt_every, variant);
}

BwdOut plastic_rnn_emulated_bwd(
    const std::optional<at::Tensor>& grad_h, const std::optional<at::Tensor>& grad_hebb,
    const std::optional<at::Tensor>& grad_elig, const at::Tensor& u, const at::Tensor& w,
    const at::Tensor& alpha, const std::optional<at::Tensor>& h0, const at::Tensor& h,
    const at::Tensor& hebb_ckpt, const at::Tensor& elig_ckpt, const at::Tensor& mod,
    const std::optional<at::Tensor>& clamp_mask, const std::optional<at::Tensor>& eta,
    const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
    const std::optional<at::Tensor>& fanout_w, const std::optional<at::Tensor>& fanout_b,
    const std::string& rule, double clip, int64_t ckpt_every, int64_t threads, int64_t smem_budget,
    bool reverse, int64_t variant) {
  const Target tg{true, static_cast<int>(threads), smem_budget, reverse};
  return backward(tg, grad_h, grad_hebb, grad_elig, u, w, alpha, h0, h, hebb_ckpt, elig_ckpt, mod,
                  clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b, rule, clip, ckpt_every,
                  variant);
}

}  // namespace

TORCH_LIBRARY_IMPL(hebbkern, CPU, m) {
  m.impl("_plastic_rnn_emulated_fwd", &plastic_rnn_emulated_fwd);
  m.impl("_plastic_rnn_emulated_bwd", &plastic_rnn_emulated_bwd);
}

std::vector<int64_t> plastic_rnn_placement(int64_t N, int64_t K, bool elig, bool backward,
                                           int64_t threads, int64_t smem_budget,
                                           int64_t elem_bytes) {
  TORCH_CHECK_VALUE(N >= 1 && K >= 1 && threads >= 32 && threads % 32 == 0 && elem_bytes > 0,
                    "hebbkern::_plastic_rnn_placement: bad arguments");
  const simt::Placement p =
      simt::place(backward, N, K, elig, static_cast<int>(threads), smem_budget, elem_bytes);
  return {p.vec_in_smem, p.state_in_smem, p.smem_bytes, p.scratch_per_sample};
}

#ifdef HEBBKERN_WITH_CUDA
namespace {

FwdOut plastic_rnn_fwd_cuda(
    const at::Tensor& u, const at::Tensor& w, const at::Tensor& alpha,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& hebb0,
    const std::optional<at::Tensor>& elig0, const std::optional<at::Tensor>& clamp_mask,
    const std::optional<at::Tensor>& eta, const std::optional<at::Tensor>& mod_w,
    const std::optional<at::Tensor>& mod_b, const std::optional<at::Tensor>& fanout_w,
    const std::optional<at::Tensor>& fanout_b, const std::string& rule, double clip,
    int64_t ckpt_every, int64_t variant) {
  TORCH_CHECK_VALUE(u.device().is_cuda(), "hebbkern::plastic_rnn: u must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(u.device());
  return forward(cuda_target(u), u, w, alpha, h0, hebb0, elig0, clamp_mask, eta, mod_w, mod_b,
                 fanout_w, fanout_b, rule, clip, ckpt_every, variant);
}

BwdOut plastic_rnn_bwd_cuda(
    const std::optional<at::Tensor>& grad_h, const std::optional<at::Tensor>& grad_hebb,
    const std::optional<at::Tensor>& grad_elig, const at::Tensor& u, const at::Tensor& w,
    const at::Tensor& alpha, const std::optional<at::Tensor>& h0, const at::Tensor& h,
    const at::Tensor& hebb_ckpt, const at::Tensor& elig_ckpt, const at::Tensor& mod,
    const std::optional<at::Tensor>& clamp_mask, const std::optional<at::Tensor>& eta,
    const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
    const std::optional<at::Tensor>& fanout_w, const std::optional<at::Tensor>& fanout_b,
    const std::string& rule, double clip, int64_t ckpt_every, int64_t variant) {
  TORCH_CHECK_VALUE(u.device().is_cuda(), "hebbkern::plastic_rnn: u must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(u.device());
  return backward(cuda_target(u), grad_h, grad_hebb, grad_elig, u, w, alpha, h0, h, hebb_ckpt,
                  elig_ckpt, mod, clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b, rule, clip,
                  ckpt_every, variant);
}

}  // namespace

TORCH_LIBRARY_IMPL(hebbkern, CUDA, m) {
  m.impl("plastic_rnn_fwd", &plastic_rnn_fwd_cuda);
  m.impl("plastic_rnn_bwd", &plastic_rnn_bwd_cuda);
}
#endif

}  // namespace hebbkern
