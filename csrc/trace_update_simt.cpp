// Torch-facing side of the block kernels of trace_update (hebbkern/trace_update_block.h): the CUDA
// implementation of hebbkern::trace_update_fwd/bwd and its CPU emulation for the tests
// (hebbkern::_trace_update_emulated_fwd/bwd). A shared trace [M, K] takes the same ATen path
// (GEMMs) as on the CPU.
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <atomic>
#include <limits>

#include "hebbkern/trace_update_block.h"
#include "trace_update_common.h"

#ifdef HEBBKERN_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "cuda/trace_update_launch.h"
#endif

namespace hebbkern {

namespace emu {
// csrc/cpu/trace_update_emulated.cpp
template <typename T>
void run_trace_update_forward(Rule rule, const simt::TraceUpdateArgs<T>& a, T* out, int threads,
                              bool reverse);
template <typename T>
void run_trace_update_backward(Rule rule, const simt::TraceUpdateArgs<T>& a, const T* G, T* dH,
                               T* dpre, T* part, T* cols, int threads, bool reverse);
}  // namespace emu

namespace {

using trace_update_common::TraceRule;

// Where the block kernels run; see plastic_rnn_simt.cpp.
struct Target {
  bool emulate;
  int threads;
  int64_t blocks_per_sample;  // 0: chosen from the device
  int64_t smem_budget;        // bytes for the backward's partial rows
  bool reverse;
};

void check_target(const Target& tg, const at::Tensor& trace) {
  if (tg.emulate) {
    TORCH_CHECK_VALUE(trace.device().is_cpu(),
                      "hebbkern::_trace_update_emulated: trace must be on the CPU");
    TORCH_CHECK_VALUE(tg.threads >= 32 && tg.threads <= 1024 && tg.threads % 32 == 0,
                      "hebbkern::_trace_update_emulated: threads must be a multiple of 32 in "
                      "[32, 1024], got ",
                      tg.threads);
    TORCH_CHECK_VALUE(tg.blocks_per_sample >= 1,
                      "hebbkern::_trace_update_emulated: blocks_per_sample must be >= 1");
  } else {
    TORCH_CHECK_VALUE(trace.device().is_cuda(),
                      "hebbkern::trace_update: trace must be a CUDA tensor");
  }
}

// Blocks per sample: enough blocks for about two per SM, never more than the warps have rows.
int64_t blocks_per_sample(const Target& tg, int64_t B, int64_t M) {
  const int64_t W = tg.threads / simt::kWarpSize;
  const int64_t most = std::max<int64_t>(1, (M + W - 1) / W);
  if (tg.blocks_per_sample > 0) return std::min(tg.blocks_per_sample, most);
  int64_t sms = 132;
#ifdef HEBBKERN_WITH_CUDA
  // The SM count of each device, queried once: the launch path makes no runtime call but the
  // launch (CUDA-graph capture).
  static std::atomic<int> sm_count[64] = {};
  const int dev = c10::cuda::current_device();
  if (dev >= 0 && dev < 64) {
    int n = sm_count[dev].load(std::memory_order_acquire);
    if (n == 0 && cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess)
      sm_count[dev].store(n, std::memory_order_release);
    if (n > 0) sms = n;
  }
#endif
  return std::clamp<int64_t>((2 * sms + B - 1) / B, 1, most);
}

template <typename T>
simt::TraceUpdateArgs<T> make_args(const at::Tensor& H, const at::Tensor& x, const at::Tensor& y,
                                   const at::Tensor& E, double c, int64_t R) {
  return {H.size(0),       H.size(1),       H.size(2),        R, H.data_ptr<T>(), x.data_ptr<T>(),
          y.data_ptr<T>(), E.data_ptr<T>(), static_cast<T>(c)};
}

#ifdef HEBBKERN_WITH_CUDA
void check_cuda(cudaError_t e) {
  TORCH_CHECK(e == cudaSuccess,
              "hebbkern::trace_update: CUDA kernel launch failed: ", cudaGetErrorString(e));
}
#endif

at::Tensor forward(const Target& tg, const at::Tensor& trace, const at::Tensor& pre,
                   const at::Tensor& post, const at::Tensor& eta, const std::string& rule_name,
                   double clip) {
  const TraceRule r = trace_update_common::parse_trace_rule(rule_name);
  check_target(tg, trace);
  const at::Tensor E = trace_update_common::check_and_expand_eta(trace, pre, post, eta, r, clip);
  const double c = trace_update_common::bound(r, clip);
  if (trace.dim() == 2) return trace_update_common::shared_forward(trace, pre, post, eta, E, r, c);
  const at::Tensor H = trace.contiguous(), x = pre.contiguous(), y = post.contiguous();
  // NaN-filled in the emulation: an element no block writes shows up in the tests.
  at::Tensor out =
      tg.emulate ? at::full_like(H, std::numeric_limits<double>::quiet_NaN()) : at::empty_like(H);
  if (H.numel() == 0) return out;
  const int64_t R = blocks_per_sample(tg, H.size(0), H.size(1));
  TORCH_CHECK_VALUE(H.size(0) * R < (int64_t{1} << 31),
                    "hebbkern::trace_update: batch too large for one launch: ", H.size(0));
  const Rule kr = trace_update_common::kernel_rule(r);
  AT_DISPATCH_FLOATING_TYPES(trace.scalar_type(), "trace_update_fwd_block", [&] {
    using T = scalar_t;
    const auto a = make_args<T>(H, x, y, E, c, R);
    if (tg.emulate) {
      emu::run_trace_update_forward<T>(kr, a, out.data_ptr<T>(), tg.threads, tg.reverse);
    } else {
#ifdef HEBBKERN_WITH_CUDA
      check_cuda(cuda_kernels::launch_trace_update_forward<T>(
          kr, a, out.data_ptr<T>(), c10::cuda::getCurrentCUDAStream().stream()));
#endif
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const Target& tg, const at::Tensor& grad, const at::Tensor& trace, const at::Tensor& pre,
    const at::Tensor& post, const at::Tensor& eta, const std::string& rule_name, double clip) {
  const TraceRule r = trace_update_common::parse_trace_rule(rule_name);
  check_target(tg, trace);
  const at::Tensor E = trace_update_common::check_and_expand_eta(trace, pre, post, eta, r, clip);
  TORCH_CHECK_VALUE(grad.sizes() == trace.sizes(),
                    "hebbkern::trace_update: grad must have the shape of trace");
  TORCH_CHECK_TYPE(grad.scalar_type() == trace.scalar_type(),
                   "hebbkern::trace_update: grad must have the dtype of trace");
  TORCH_CHECK_VALUE(grad.device() == trace.device(),
                    "hebbkern::trace_update: grad must be on the device of trace");
  const double c = trace_update_common::bound(r, clip);
  if (trace.dim() == 2)
    return trace_update_common::shared_backward(grad, trace, pre, post, eta, E, r, c);
  const at::Tensor G = grad.contiguous(), H = trace.contiguous(), x = pre.contiguous();
  const at::Tensor y = post.contiguous();
  const int64_t B = H.size(0), M = H.size(1), K = H.size(2);
  const int64_t R = blocks_per_sample(tg, B, M);
  TORCH_CHECK_VALUE(B * R < (int64_t{1} << 31),
                    "hebbkern::trace_update: batch too large for one launch: ", B);
  at::Tensor dH = at::empty_like(H);
  at::Tensor dpre = at::empty({B, M}, H.options());
  // Per block: column sums of dpost and deta ([B, R, 2, K]), summed over R below in a fixed order.
  at::Tensor cols = at::empty({B, R, 2, K}, H.options());
  const int64_t part_elems = simt::trace_update_scratch(K, tg.threads);
  const bool part_in_smem =
      part_elems * static_cast<int64_t>(trace.element_size()) <= tg.smem_budget;
  // NaN-filled in the emulation: an element read before it is written shows up in the tests.
  const int64_t part_total = part_in_smem && !tg.emulate ? 0 : B * R * part_elems;
  at::Tensor part =
      tg.emulate ? at::full({part_total}, std::numeric_limits<double>::quiet_NaN(), H.options())
                 : at::empty({part_total}, H.options());
  const Rule kr = trace_update_common::kernel_rule(r);
  if (H.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(trace.scalar_type(), "trace_update_bwd_block", [&] {
      using T = scalar_t;
      const auto a = make_args<T>(H, x, y, E, c, R);
      if (tg.emulate) {
        emu::run_trace_update_backward<T>(kr, a, G.data_ptr<T>(), dH.data_ptr<T>(),
                                          dpre.data_ptr<T>(), part.data_ptr<T>(),
                                          cols.data_ptr<T>(), tg.threads, tg.reverse);
      } else {
#ifdef HEBBKERN_WITH_CUDA
        check_cuda(cuda_kernels::launch_trace_update_backward<T>(
            kr, a, G.data_ptr<T>(), dH.data_ptr<T>(), dpre.data_ptr<T>(), part.data_ptr<T>(),
            part_in_smem, cols.data_ptr<T>(), c10::cuda::getCurrentCUDAStream().stream()));
#endif
      }
    });
  } else {
    dpre.zero_();
    cols.zero_();
  }
  const at::Tensor sums = cols.sum(1);  // [B, 2, K]
  return {dH, dpre, sums.select(1, 0), trace_update_common::reduce_like(sums.select(1, 1), eta)};
}

at::Tensor trace_update_emulated_fwd(const at::Tensor& trace, const at::Tensor& pre,
                                     const at::Tensor& post, const at::Tensor& eta,
                                     const std::string& rule, double clip, int64_t threads,
                                     int64_t blocks_per_sample) {
  const Target tg{true, static_cast<int>(threads), blocks_per_sample, 0, false};
  return forward(tg, trace, pre, post, eta, rule, clip);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> trace_update_emulated_bwd(
    const at::Tensor& grad, const at::Tensor& trace, const at::Tensor& pre, const at::Tensor& post,
    const at::Tensor& eta, const std::string& rule, double clip, int64_t threads,
    int64_t blocks_per_sample, bool reverse) {
  const Target tg{true, static_cast<int>(threads), blocks_per_sample, 0, reverse};
  return backward(tg, grad, trace, pre, post, eta, rule, clip);
}

}  // namespace

TORCH_LIBRARY_IMPL(hebbkern, CPU, m) {
  m.impl("_trace_update_emulated_fwd", &trace_update_emulated_fwd);
  m.impl("_trace_update_emulated_bwd", &trace_update_emulated_bwd);
}

#ifdef HEBBKERN_WITH_CUDA
namespace {

Target cuda_target() {
  // The partial rows go to shared memory up to the 48 KiB a block gets without opting in.
  return {false, cuda_kernels::kTraceUpdateThreads, 0, 48 * 1024, false};
}

at::Tensor trace_update_fwd_cuda(const at::Tensor& trace, const at::Tensor& pre,
                                 const at::Tensor& post, const at::Tensor& eta,
                                 const std::string& rule, double clip) {
  const c10::cuda::CUDAGuard guard(trace.device());
  return forward(cuda_target(), trace, pre, post, eta, rule, clip);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> trace_update_bwd_cuda(
    const at::Tensor& grad, const at::Tensor& trace, const at::Tensor& pre, const at::Tensor& post,
    const at::Tensor& eta, const std::string& rule, double clip) {
  const c10::cuda::CUDAGuard guard(trace.device());
  return backward(cuda_target(), grad, trace, pre, post, eta, rule, clip);
}

}  // namespace

TORCH_LIBRARY_IMPL(hebbkern, CUDA, m) {
  m.impl("trace_update_fwd", &trace_update_fwd_cuda);
  m.impl("trace_update_bwd", &trace_update_bwd_cuda);
}
#endif

}  // namespace hebbkern
