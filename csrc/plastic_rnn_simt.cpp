// Torch-facing side of the block kernels of plastic_rnn (csrc/include/hebbkern/
// plastic_rnn_block.h): the CUDA implementation of hebbkern::plastic_rnn_fwd/bwd, and the CPU
// emulation of the same kernels (hebbkern::_plastic_rnn_emulated_fwd/bwd) that the tests run on
// machines without a GPU. Both go through the functions below; only the last call differs.
#include <torch/library.h>
#include <torch/types.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "hebbkern/plastic_rnn_block.h"
#include "hebbkern/plastic_rnn_cluster_backward.h"
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
// `window`: null for thread-block clusters; else the blocks synchronise through mailboxes of
// that window (simt::Mailbox, the emulation of simt::CudaGridCluster).
template <typename T>
void run_forward_cluster(Rule rule, const simt::RnnParams<T>& p, const RnnFwdOut<T>& o,
                         const simt::ClusterPlacement& pl, bool reverse,
                         const simt::Mailbox* window);
template <typename T>
void run_backward(Rule rule, const simt::RnnParams<T>& p, const RnnBwdIn<T>& in,
                  const RnnBwdOut<T>& o, const simt::Placement& pl, T* scratch, bool reverse);
template <typename T>
void run_backward_cluster(Rule rule, const simt::RnnParams<T>& p, const RnnBwdIn<T>& in,
                          const RnnBwdOut<T>& o, const simt::ClusterBwdPlacement& pl, T* scratch,
                          bool reverse, const simt::Mailbox* window);
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
  // Blocks per sample of the direction run: 0 chooses by the launch rule (simt::plan_cluster for
  // the forward, simt::plan_cluster_bwd for the backward) from `caps`; 1 to 16 forces it
  // (emulation only: the tests reach every layout).
  int cluster = 0;
  // SM count, largest cluster (1: none), and whether the cluster's blocks synchronise through
  // global memory (the emulation then runs the mailboxes of simt::CudaGridCluster).
  simt::LaunchCaps caps = {1, 1};
  // Threads per block of the cluster backward (0: `threads`; the CUDA launch's is
  // simt::kClusterBwdThreads).
  int cluster_bwd_threads = 0;
  int bwd_cluster_threads() const {
    return cluster_bwd_threads > 0 ? cluster_bwd_threads : threads;
  }
};

// The block kernels index within a sample with 32-bit ints (plastic_rnn_block.h): larger N is
// refused here, before anything is allocated or launched (the emulation shares the check).
void check_n_fits(const at::Tensor& u) {
  if (u.dim() != 3) return;  // prepare() names the bad shape
  const int64_t N = u.size(2);
  TORCH_CHECK_VALUE(
      simt::offsets_fit_int32(N), "hebbkern::plastic_rnn: N = ", N,
      " is too large for the block kernels (their offsets within a sample are 32-bit: "
      "N * N must be below 2^31, N <= 46340); choose another backend");
}

void check_target(const Target& tg, const at::Tensor& u) {
  if (tg.emulate) {
    TORCH_CHECK_VALUE(u.device().is_cpu(), "hebbkern::_plastic_rnn_emulated: u must be on the CPU");
    TORCH_CHECK_VALUE(
        tg.threads >= simt::kWarpSize && tg.threads <= 1024 && tg.threads % simt::kWarpSize == 0,
        "hebbkern::_plastic_rnn_emulated: threads must be a multiple of 32 in "
        "[32, 1024], got ",
        tg.threads);
    TORCH_CHECK_VALUE(tg.smem_budget >= 0, "hebbkern::_plastic_rnn_emulated: smem_budget < 0");
    TORCH_CHECK_VALUE(tg.cluster >= 0 && tg.cluster <= 16,
                      "hebbkern::_plastic_rnn_emulated: cluster must be in [0, 16], got ",
                      tg.cluster);
    TORCH_CHECK_VALUE(
        tg.caps.sm_count >= 1 && tg.caps.cluster_max >= 1 && tg.caps.cluster_max <= 16,
        "hebbkern::_plastic_rnn_emulated: sm_count must be >= 1 and cluster_max in "
        "[1, 16]");
  } else {
    TORCH_CHECK_VALUE(u.device().is_cuda(), "hebbkern::plastic_rnn: u must be a CUDA tensor");
  }
}

// The exchange of a cluster launch whose blocks synchronise through global memory: `window` (the
// kernel's, cluster_fwd_window / cluster_bwd_window) with c, and on the GPU its mailboxes and
// barrier counters (allocated on the current stream: capturable), kept alive by the tensors.
struct Exchange {
  simt::Mailbox mb;
  at::Tensor mail, arrivals;
  const simt::Mailbox* emulated() const { return mb.c > 0 ? &mb : nullptr; }
};

Exchange exchange(const Target& tg, simt::Mailbox window, int64_t B, int c, const at::Tensor& u) {
  if (!tg.caps.global_sync) return {};  // thread-block clusters: no mailboxes
  Exchange x{window, {}, {}};
  x.mb.c = c;
  if (!tg.emulate) {
    x.mail = at::empty({B * c * window.bytes}, u.options().dtype(at::kByte));
    x.arrivals = at::zeros({B}, u.options().dtype(at::kInt));
    x.mb.mail = x.mail.data_ptr<uint8_t>();
    x.mb.arrivals = reinterpret_cast<unsigned*>(x.arrivals.data_ptr<int>());
  }
  return x;
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

// w and alpha go to shared memory too where they fit (the forward's kWhereParams instantiation,
// the backward's kParams one); a population's backward reads its per-sample w and alpha from
// global memory.
template <typename T>
simt::Placement placement(const Target& tg, bool backward, const simt::RnnParams<T>& p, Rule rule) {
  const bool params_ok = !(backward && simt::population(p));
  const int64_t params = params_ok ? p.N * p.N + (p.a_stride ? p.N * p.N : p.N) : 0;
  return simt::place(backward, p.N, p.K, has_eligibility(rule), tg.threads, tg.smem_budget,
                     sizeof(T), params);
}

// The forward's blocks per sample: forced by the target (emulation), else the launch rule.
template <typename T>
int blocks_per_sample(const Target& tg, const simt::RnnParams<T>& p, Rule rule) {
  if (tg.cluster > 0) return tg.cluster;
  return simt::plan_cluster(p.B, p.N, has_eligibility(rule), p.a_stride == 0, tg.threads,
                            tg.smem_budget, sizeof(T), tg.caps);
}

// The backward's blocks per sample: forced by the target (emulation), else its launch rule.
template <typename T>
int bwd_blocks_per_sample(const Target& tg, const simt::RnnParams<T>& p, Rule rule) {
  if (tg.cluster > 0) return tg.cluster;
  return simt::plan_cluster_bwd(p.B, p.N, p.K, has_eligibility(rule), tg.threads,
                                tg.bwd_cluster_threads(), tg.smem_budget, sizeof(T), tg.caps);
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

// The cluster kernels have been checked through the emulation and compiled, but have not yet run
// on a GPU (benchmarks/NOTES.md M9, M11, M12): until a GPU run has tested and timed them, the
// launch rules may choose them only where HEBBKERN_CUDA_CLUSTERS is set (read at every launch, so
// that tests can switch it): "1" for what the device's code offers (thread-block clusters with
// sm_90 code, blocks synchronised through global memory with earlier code), "global" for blocks
// synchronised through global memory on any device that takes cooperative launches (the sm_80
// exchange checked and timed on a newer GPU). Otherwise every device runs one block per sample.
enum class ClusterMode { kOff, kDevice, kGlobal };

ClusterMode cluster_mode() {
  const char* v = std::getenv("HEBBKERN_CUDA_CLUSTERS");
  if (v == nullptr) return ClusterMode::kOff;
  if (std::strcmp(v, "1") == 0) return ClusterMode::kDevice;
  if (std::strcmp(v, "global") == 0) return ClusterMode::kGlobal;
  return ClusterMode::kOff;
}

Target cuda_target(const at::Tensor& u) {
  const int64_t budget = cuda_kernels::smem_budget(u.device().index());
  TORCH_CHECK(budget >= 0, "hebbkern::plastic_rnn: cannot query the device's shared memory");
  simt::LaunchCaps caps = cuda_kernels::launch_caps(u.device().index());
  TORCH_CHECK(caps.sm_count >= 1, "hebbkern::plastic_rnn: cannot query the device's SM count");
  switch (cluster_mode()) {
    case ClusterMode::kOff: caps.cluster_max = 1; break;
    case ClusterMode::kDevice: break;
    case ClusterMode::kGlobal:
      caps.cluster_max = caps.cooperative ? 16 : 1;
      caps.global_sync = caps.cooperative;
      break;
  }
  return {false, cuda_kernels::kThreads, budget, false, 0, caps, simt::kClusterBwdThreads};
}
#endif

FwdOut forward(const Target& tg, const rnn_args::FwdArgs& a) {
  const Rule rule = rnn_args::checked_rule(a.rule, a.variant, a.u, a.ckpt_every);
  check_target(tg, a.u);
  check_n_fits(a.u);
  TORCH_CHECK_VALUE(a.u.dim() != 3 || a.u.size(1) < (int64_t{1} << 31),
                    "hebbkern::plastic_rnn: batch too large for one launch: ", a.u.size(1));
  const Prepared q = rnn_args::prepare(a.u, a.w, a.alpha, a.h0, a.hebb0, a.elig0, a.opt, rule,
                                       a.clip, false, a.variant);
  FwdOut out = rnn_args::allocate_forward(a.u, rule, a.ckpt_every);
  AT_DISPATCH_FLOATING_TYPES(a.u.scalar_type(), "plastic_rnn_fwd_block", [&] {
    using T = scalar_t;
    const simt::RnnParams<T> p = make_params<T>(q, a.clip, a.ckpt_every, a.variant);
    const RnnFwdOut<T> o = rnn_args::fwd_ptrs<T>(out);
    const int c = blocks_per_sample(tg, p, rule);
    if (c > 1 && p.B > 0) {
      const simt::ClusterPlacement cp = simt::place_cluster(
          p.N, has_eligibility(rule), p.a_stride == 0, c, tg.threads, tg.smem_budget, sizeof(T));
      TORCH_CHECK_VALUE(cp.c == c, "hebbkern::plastic_rnn: a cluster of ", c,
                        " blocks does not fit the shared-memory budget of ", tg.smem_budget,
                        " bytes at N = ", p.N);
      const Exchange x = exchange(tg, simt::cluster_fwd_window(p.N, sizeof(T)), p.B, c, a.u);
      if (tg.emulate) {
        emu::run_forward_cluster<T>(rule, p, o, cp, tg.reverse, x.emulated());
      } else {
#ifdef HEBBKERN_WITH_CUDA
        check_cuda(cuda_kernels::launch_forward_cluster<T>(
            rule, p, o, cp, x.mb, c10::cuda::getCurrentCUDAStream().stream()));
#endif
      }
      return;
    }
    const simt::Placement pl = placement(tg, false, p, rule);
    at::Tensor scratch = new_scratch(tg, p.B * pl.scratch_per_sample, a.u);
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

BwdOut backward(const Target& tg, const rnn_args::BwdArgs& a) {
  const Rule rule = rnn_args::checked_rule(a.rule, a.variant, a.u, a.ckpt_every);
  check_target(tg, a.u);
  check_n_fits(a.u);
  const Prepared q = rnn_args::prepare(a, rule, false);
  rnn_args::check_backward_inputs(a, rule);
  const rnn_args::BwdInputs bin = rnn_args::contiguous_backward_inputs(a, rule);
  // The block kernels write every per-sample accumulator whole: no zero-filling here.
  const rnn_args::BwdAccumulators acc = rnn_args::allocate_backward(q, a.alpha, rule, false);
  AT_DISPATCH_FLOATING_TYPES(a.u.scalar_type(), "plastic_rnn_bwd_block", [&] {
    using T = scalar_t;
    const simt::RnnParams<T> p = make_params<T>(q, a.clip, a.ckpt_every, a.variant);
    const RnnBwdOut<T> o = rnn_args::bwd_out_ptrs<T>(acc);
    const RnnBwdIn<T> in = rnn_args::bwd_in_ptrs<T>(bin);
    const int c = bwd_blocks_per_sample(tg, p, rule);
    if (c > 1 && p.B > 0) {
      const simt::ClusterBwdPlacement cp = simt::place_cluster_bwd(
          p.N, p.K, has_eligibility(rule), c, tg.bwd_cluster_threads(), tg.smem_budget, sizeof(T));
      TORCH_CHECK_VALUE(cp.c == c, "hebbkern::plastic_rnn: a cluster of ", c,
                        " blocks does not fit the shared-memory budget of ", tg.smem_budget,
                        " bytes at N = ", p.N);
      at::Tensor scratch = new_scratch(tg, p.B * c * cp.scratch_per_block, a.u);
      const Exchange x =
          exchange(tg, simt::cluster_bwd_window(p.N, c, cp.threads, sizeof(T)), p.B, c, a.u);
      if (tg.emulate) {
        emu::run_backward_cluster<T>(rule, p, in, o, cp, scratch.data_ptr<T>(), tg.reverse,
                                     x.emulated());
      } else {
#ifdef HEBBKERN_WITH_CUDA
        check_cuda(cuda_kernels::launch_backward_cluster<T>(
            rule, p, in, o, cp, x.mb, scratch.data_ptr<T>(),
            c10::cuda::getCurrentCUDAStream().stream()));
#endif
      }
      return;
    }
    const simt::Placement pl = placement(tg, true, p, rule);
    at::Tensor scratch = new_scratch(tg, p.B * pl.scratch_per_sample, a.u);
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
  return rnn_args::finish_backward(q, a.alpha, bin.h, rule, acc);
}

FwdOut emulated_forward(const rnn_args::FwdArgs& a, int64_t threads, int64_t smem_budget,
                        bool reverse) {
  return forward({true, static_cast<int>(threads), smem_budget, reverse}, a);
}

// The emulation's target for a cluster op (`op`: its name in the error). `global_sync`: the
// blocks synchronise through global memory (simt::CudaGridCluster's mailboxes), with its launch
// rule (B * c <= sm_count).
Target emulated_cluster_target(const char* op, int64_t threads, int64_t smem_budget, bool reverse,
                               int64_t cluster, int64_t sm_count, int64_t cluster_max,
                               bool global_sync) {
  TORCH_CHECK_VALUE(cluster >= 0 && cluster <= 16 && sm_count >= 1 && sm_count < (1 << 20) &&
                        cluster_max >= 1 && cluster_max <= 16,
                    "hebbkern::", op,
                    ": cluster must be in [0, 16], sm_count >= 1, cluster_max in [1, 16]");
  return {
      true,    static_cast<int>(threads), smem_budget,
      reverse, static_cast<int>(cluster), {sm_count, static_cast<int>(cluster_max), global_sync}};
}

FwdOut emulated_forward_cluster(const rnn_args::FwdArgs& a, int64_t threads, int64_t smem_budget,
                                bool reverse, int64_t cluster, int64_t sm_count,
                                int64_t cluster_max, bool global_sync) {
  return forward(emulated_cluster_target("_plastic_rnn_emulated_fwd_cluster", threads, smem_budget,
                                         reverse, cluster, sm_count, cluster_max, global_sync),
                 a);
}

BwdOut emulated_backward(const rnn_args::BwdArgs& a, int64_t threads, int64_t smem_budget,
                         bool reverse) {
  return backward({true, static_cast<int>(threads), smem_budget, reverse}, a);
}

BwdOut emulated_backward_cluster(const rnn_args::BwdArgs& a, int64_t threads, int64_t smem_budget,
                                 bool reverse, int64_t cluster, int64_t sm_count,
                                 int64_t cluster_max, bool global_sync) {
  return backward(emulated_cluster_target("_plastic_rnn_emulated_bwd_cluster", threads, smem_budget,
                                          reverse, cluster, sm_count, cluster_max, global_sync),
                  a);
}

}  // namespace

TORCH_LIBRARY_IMPL(hebbkern, CPU, m) {
  m.impl("_plastic_rnn_emulated_fwd",
         &rnn_args::fwd_entry<emulated_forward, int64_t, int64_t, bool>);
  m.impl("_plastic_rnn_emulated_fwd_cluster",
         &rnn_args::fwd_entry<emulated_forward_cluster, int64_t, int64_t, bool, int64_t, int64_t,
                              int64_t, bool>);
  m.impl("_plastic_rnn_emulated_bwd",
         &rnn_args::bwd_entry<emulated_backward, int64_t, int64_t, bool>);
  m.impl("_plastic_rnn_emulated_bwd_cluster",
         &rnn_args::bwd_entry<emulated_backward_cluster, int64_t, int64_t, bool, int64_t, int64_t,
                              int64_t, bool>);
}

std::vector<int64_t> plastic_rnn_placement(int64_t N, int64_t K, bool elig, bool backward,
                                           int64_t threads, int64_t smem_budget, int64_t elem_bytes,
                                           int64_t params) {
  TORCH_CHECK_VALUE(
      N >= 1 && K >= 1 && threads >= 32 && threads % 32 == 0 && elem_bytes > 0 && params >= 0,
      "hebbkern::_plastic_rnn_placement: bad arguments");
  const simt::Placement p =
      simt::place(backward, N, K, elig, static_cast<int>(threads), smem_budget, elem_bytes, params);
  return {p.vec_in_smem, p.state_in_smem, p.smem_bytes, p.scratch_per_sample, p.params_in_smem};
}

std::vector<int64_t> plastic_rnn_cluster_plan(int64_t B, int64_t N, bool elig, bool row_alpha,
                                              int64_t threads, int64_t smem_budget,
                                              int64_t elem_bytes, int64_t sm_count,
                                              int64_t cluster_max, bool global_sync) {
  TORCH_CHECK_VALUE(B >= 1 && N >= 1 && threads >= 32 && threads % 32 == 0 && elem_bytes > 0 &&
                        sm_count >= 1 && cluster_max >= 1 && cluster_max <= 16,
                    "hebbkern::_plastic_rnn_cluster_plan: bad arguments");
  const int c =
      simt::plan_cluster(B, N, elig, row_alpha, static_cast<int>(threads), smem_budget, elem_bytes,
                         {sm_count, static_cast<int>(cluster_max), global_sync});
  if (c == 1) {
    const int64_t params = N * N + (row_alpha ? N : N * N);
    const simt::Placement p =
        simt::place(false, N, 1, elig, static_cast<int>(threads), smem_budget, elem_bytes, params);
    return {1, simt::fwd_where(p), p.smem_bytes};
  }
  const simt::ClusterPlacement p = simt::place_cluster(
      N, elig, row_alpha, c, static_cast<int>(threads), smem_budget, elem_bytes);
  return {p.c, p.where, p.smem_bytes};
}

std::vector<int64_t> plastic_rnn_cluster_plan_bwd(int64_t B, int64_t N, int64_t K, bool elig,
                                                  int64_t threads, int64_t cluster_threads,
                                                  int64_t smem_budget, int64_t elem_bytes,
                                                  int64_t sm_count, int64_t cluster_max,
                                                  bool global_sync) {
  TORCH_CHECK_VALUE(B >= 1 && N >= 1 && K >= 1 && threads >= 32 && threads % 32 == 0 &&
                        threads <= 1024 && cluster_threads >= 32 && cluster_threads % 32 == 0 &&
                        cluster_threads <= 1024 && elem_bytes > 0 && sm_count >= 1 &&
                        cluster_max >= 1 && cluster_max <= 16,
                    "hebbkern::_plastic_rnn_cluster_plan_bwd: bad arguments");
  const int c = simt::plan_cluster_bwd(B, N, K, elig, static_cast<int>(threads),
                                       static_cast<int>(cluster_threads), smem_budget, elem_bytes,
                                       {sm_count, static_cast<int>(cluster_max), global_sync});
  if (c == 1) {
    const simt::Placement p =
        simt::place(true, N, K, elig, static_cast<int>(threads), smem_budget, elem_bytes);
    return {1, p.state_in_smem ? simt::kBwdState : simt::kBwdGlobal, p.smem_bytes,
            p.scratch_per_sample};
  }
  const simt::ClusterBwdPlacement p = simt::place_cluster_bwd(
      N, K, elig, c, static_cast<int>(cluster_threads), smem_budget, elem_bytes);
  return {p.c, p.where, p.smem_bytes, p.scratch_per_block};
}

#ifdef HEBBKERN_WITH_CUDA
namespace {

FwdOut cuda_forward(const rnn_args::FwdArgs& a) {
  TORCH_CHECK_VALUE(a.u.device().is_cuda(), "hebbkern::plastic_rnn: u must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(a.u.device());
  return forward(cuda_target(a.u), a);
}

BwdOut cuda_backward(const rnn_args::BwdArgs& a) {
  TORCH_CHECK_VALUE(a.u.device().is_cuda(), "hebbkern::plastic_rnn: u must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(a.u.device());
  return backward(cuda_target(a.u), a);
}

}  // namespace

TORCH_LIBRARY_IMPL(hebbkern, CUDA, m) {
  m.impl("plastic_rnn_fwd", &rnn_args::fwd_entry<cuda_forward>);
  m.impl("plastic_rnn_bwd", &rnn_args::bwd_entry<cuda_backward>);
}
#endif

}  // namespace hebbkern
