// CUDA kernels of the plastic recurrent layer: one thread block per sample runs all T steps of
// the forward (or of the backward) in one launch, with the trace in shared memory when it fits;
// the forward may instead run c blocks per sample (the launch rule, plan_cluster), each block a
// slice of the sample's columns, and the backward likewise (plan_cluster_bwd,
// plastic_rnn_cluster_backward.h): a thread-block cluster on sm_90, blocks synchronised through
// global memory on earlier architectures.
// The kernel bodies are plastic_rnn_block.h, also run on the CPU by the emulation the tests use.
#include <atomic>

#include "cuda/plastic_rnn_launch.h"
#include "hebbkern/plastic_rnn_cluster_backward.h"

namespace hebbkern::cuda_kernels {

namespace {

// kWhere: where the placement keeps the working set (simt::fwd_where: kWhere* in
// plastic_rnn_block.h), as a template argument.
template <Rule R, typename T, int kWhere>
__global__ void __launch_bounds__(kThreads, 1)
    plastic_rnn_fwd_kernel(const simt::RnnParams<T> p, const RnnFwdOut<T> o,
                           const simt::Placement pl, T* scratch) {
  extern __shared__ __align__(16) unsigned char smem[];
  simt::plastic_rnn_forward_kernel<R, kWhere>(simt::CudaBlock{}, p, o, simt::cuda_block_index(), pl,
                                              reinterpret_cast<T*>(smem), scratch);
}

// The cluster kernels: c blocks per sample. With mb.mail null, a thread-block cluster each (the
// cluster's shape is a launch attribute; sm_90 code only); else blocks that synchronise through
// global memory (simt::CudaGridCluster over `mb`, a cooperative launch): the only body compiled
// below sm_90, and on sm_90 the one HEBBKERN_CUDA_CLUSTERS=global asks for (to check and time the
// sm_80 exchange on a newer GPU). The launch knows which code the device loaded (launch_caps).
template <Rule R, typename T, int kWhere>
__global__ void __launch_bounds__(kThreads, 1)
    plastic_rnn_fwd_cluster_kernel(const simt::RnnParams<T> p, const RnnFwdOut<T> o,
                                   const simt::Mailbox mb) {
  extern __shared__ __align__(16) unsigned char smem[];
  auto run = [&](const auto& clu) {
    simt::plastic_rnn_forward_cluster_kernel<R, kWhere>(
        simt::CudaBlock{}, clu, p, o, simt::cuda_block_index(), reinterpret_cast<T*>(smem));
  };
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (mb.mail == nullptr) {
    run(simt::CudaCluster{});
    return;
  }
#endif
  run(simt::CudaGridCluster{mb, smem});
}

// The cluster backward (plastic_rnn_cluster_backward.h); kWhere: kBwd*.
template <Rule R, typename T, int kWhere>
__global__ void __launch_bounds__(simt::kClusterBwdThreads, 1)
    plastic_rnn_bwd_cluster_kernel(const simt::RnnParams<T> p, const RnnBwdIn<T> in,
                                   const RnnBwdOut<T> o, const simt::Mailbox mb, T* scratch,
                                   int64_t scratch_per_block) {
  extern __shared__ __align__(16) unsigned char smem[];
  auto run = [&](const auto& clu) {
    simt::plastic_rnn_backward_cluster_kernel<R, kWhere>(
        simt::CudaBlock{}, clu, p, in, o, simt::cuda_block_index(), reinterpret_cast<T*>(smem),
        scratch, scratch_per_block);
  };
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (mb.mail == nullptr) {
    run(simt::CudaCluster{});
    return;
  }
#endif
  run(simt::CudaGridCluster{mb, smem});
}

// kPop: w or alpha per sample; kParams: the shared w and alpha in shared memory
// (pl.params_in_smem).
template <Rule R, typename T, bool kPop, bool kParams>
__global__ void __launch_bounds__(kThreads, 1)
    plastic_rnn_bwd_kernel(const simt::RnnParams<T> p, const RnnBwdIn<T> in, const RnnBwdOut<T> o,
                           const simt::Placement pl, T* scratch) {
  extern __shared__ __align__(16) unsigned char smem[];
  simt::plastic_rnn_backward_kernel<R, kPop, kParams>(simt::CudaBlock{}, p, in, o,
                                                      simt::cuda_block_index(), pl,
                                                      reinterpret_cast<T*>(smem), scratch);
}

constexpr int kMaxDevices = 64;

// Above 48 KiB of dynamic shared memory a kernel must opt in (cudaFuncSetAttribute). That call is
// not a stream operation, so it is made once per kernel, device and larger size, the first time
// (in a warm-up run, before any CUDA-graph capture); a later launch of the same or a smaller size,
// captured or not, makes no runtime call besides the launch itself.
template <typename K>
cudaError_t allow_smem(K kernel, int64_t bytes, std::atomic<int64_t>* opted) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  int device = 0;
  if (const cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return e;
  if (device < 0 || device >= kMaxDevices) return cudaErrorInvalidDevice;
  std::atomic<int64_t>& done = opted[device];
  if (done.load(std::memory_order_acquire) >= bytes) return cudaSuccess;
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(bytes));
  if (e == cudaSuccess) {
    int64_t seen = done.load(std::memory_order_relaxed);
    while (seen < bytes && !done.compare_exchange_weak(seen, bytes)) {
    }
  }
  return e;
}

// The launch's grid, from the function the emulation enumerates.
cudaError_t grid_of(int64_t B, dim3* g) {
  const simt::Grid gr = simt::plastic_rnn_grid(B);
  if (!simt::grid_fits_cuda(gr)) return cudaErrorInvalidConfiguration;
  *g = simt::to_dim3(gr);
  return cudaSuccess;
}

// Launches `kernel` on plastic_rnn's grid for B samples, with the placement's threads and shared
// memory; `opted`: the kernel's record for allow_smem.
template <typename Kernel, typename... Args>
cudaError_t launch(Kernel kernel, std::atomic<int64_t>* opted, int64_t B, const simt::Placement& pl,
                   cudaStream_t stream, const Args&... args) {
  dim3 g;
  if (const cudaError_t e = grid_of(B, &g); e != cudaSuccess) return e;
  if (const cudaError_t e = allow_smem(kernel, pl.smem_bytes, opted); e != cudaSuccess) return e;
  kernel<<<g, pl.threads, pl.smem_bytes, stream>>>(args...);
  return cudaGetLastError();
}

// The instantiation for the placement (simt::visit_forward_instantiation, shared with the
// emulation); one allow_smem record per instantiation.
template <Rule R, typename T>
cudaError_t forward_rule(const simt::RnnParams<T>& p, const RnnFwdOut<T>& o,
                         const simt::Placement& pl, T* scratch, cudaStream_t stream) {
  static std::atomic<int64_t> opted[3][kMaxDevices];
  return simt::visit_forward_instantiation(pl, [&](auto where) {
    constexpr int kWhere = decltype(where)::value;
    return launch(plastic_rnn_fwd_kernel<R, T, kWhere>, opted[kWhere], p.B, pl, stream, p, o, pl,
                  scratch);
  });
}

// Clusters of more than 8 blocks need an opt-in per kernel (cudaFuncAttributeNonPortableCluster-
// SizeAllowed); made once per kernel and device, like allow_smem (before any capture).
template <typename K>
cudaError_t allow_cluster(K kernel, int c, std::atomic<int>* opted) {
  if (c <= 8) return cudaSuccess;
  int device = 0;
  if (const cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return e;
  if (device < 0 || device >= kMaxDevices) return cudaErrorInvalidDevice;
  if (opted[device].load(std::memory_order_acquire)) return cudaSuccess;
  const cudaError_t e =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  if (e == cudaSuccess) opted[device].store(1, std::memory_order_release);
  return e;
}

// The cluster launch: the grid and cluster shape from plastic_rnn_cluster_grid (the function the
// emulation enumerates), cudaLaunchKernelEx (a stream operation: CUDA-graph capturable) with the
// cluster dimension as a launch attribute, or, where the blocks synchronise through global memory
// (`global`: mb.mail set), the cooperative attribute instead: the launch fails rather than start
// with blocks that could not all be resident (they would wait for each other forever).
template <typename Kernel, typename... Args>
cudaError_t launch_cluster(Kernel kernel, std::atomic<int64_t>* opted_smem,
                           std::atomic<int>* opted_c, int64_t B, int c, int threads,
                           int64_t smem_bytes, bool global, cudaStream_t stream,
                           const Args&... args) {
  const simt::Grid g = simt::plastic_rnn_cluster_grid(B, c);
  if (!simt::grid_fits_cuda(g)) return cudaErrorInvalidConfiguration;
  if (const cudaError_t e = allow_smem(kernel, smem_bytes, opted_smem); e != cudaSuccess) return e;
  if (!global) {
    if (const cudaError_t e = allow_cluster(kernel, g.cluster, opted_c); e != cudaSuccess) return e;
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = simt::to_dim3(g);
  cfg.blockDim = dim3(static_cast<unsigned>(threads));
  cfg.dynamicSmemBytes = static_cast<size_t>(smem_bytes);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  if (global) {
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
  } else {
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = static_cast<unsigned>(g.cluster);
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
  }
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, args...);
}

template <Rule R, typename T>
cudaError_t forward_cluster_rule(const simt::RnnParams<T>& p, const RnnFwdOut<T>& o,
                                 const simt::ClusterPlacement& pl, const simt::Mailbox& mb,
                                 cudaStream_t stream) {
  static std::atomic<int64_t> opted[3][kMaxDevices];
  static std::atomic<int> opted_c[3][kMaxDevices];
  return simt::visit_where(pl.where, [&](auto where) {
    constexpr int kWhere = decltype(where)::value;
    return launch_cluster(plastic_rnn_fwd_cluster_kernel<R, T, kWhere>, opted[kWhere],
                          opted_c[kWhere], p.B, pl.c, pl.threads, pl.smem_bytes, mb.mail != nullptr,
                          stream, p, o, mb);
  });
}

template <Rule R, typename T>
cudaError_t backward_cluster_rule(const simt::RnnParams<T>& p, const RnnBwdIn<T>& in,
                                  const RnnBwdOut<T>& o, const simt::ClusterBwdPlacement& pl,
                                  const simt::Mailbox& mb, T* scratch, cudaStream_t stream) {
  static std::atomic<int64_t> opted[3][kMaxDevices];
  static std::atomic<int> opted_c[3][kMaxDevices];
  return simt::visit_bwd_where(pl.where, [&](auto where) {
    constexpr int kWhere = decltype(where)::value;
    return launch_cluster(plastic_rnn_bwd_cluster_kernel<R, T, kWhere>, opted[kWhere],
                          opted_c[kWhere], p.B, pl.c, pl.threads, pl.smem_bytes, mb.mail != nullptr,
                          stream, p, in, o, mb, scratch, pl.scratch_per_block);
  });
}

template <Rule R, typename T>
cudaError_t backward_rule(const simt::RnnParams<T>& p, const RnnBwdIn<T>& in, const RnnBwdOut<T>& o,
                          const simt::Placement& pl, T* scratch, cudaStream_t stream) {
  static std::atomic<int64_t> opted[2][2][kMaxDevices];
  return simt::visit_backward_instantiation(p, pl, [&](auto pop, auto params) {
    constexpr bool kPop = decltype(pop)::value, kParams = decltype(params)::value;
    return launch(plastic_rnn_bwd_kernel<R, T, kPop, kParams>, opted[kPop][kParams], p.B, pl,
                  stream, p, in, o, pl, scratch);
  });
}

}  // namespace

// Queried once per device (a device attribute does not change), so that the launch path makes no
// runtime call but the launch.
int64_t smem_budget(int device) {
  static std::atomic<int64_t> cached[kMaxDevices] = {};
  if (device < 0 || device >= kMaxDevices) return -1;
  if (const int64_t c = cached[device].load(std::memory_order_acquire); c > 0) return c;
  int bytes = 0;
  if (cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
      cudaSuccess)
    return -1;
  cached[device].store(bytes, std::memory_order_release);
  return bytes;
}

simt::LaunchCaps launch_caps(int device) {
  // sm_count * 128 + cooperative * 64 + global_sync * 32 + cluster_max, 0 until queried.
  static std::atomic<int64_t> cached[kMaxDevices] = {};
  if (device < 0 || device >= kMaxDevices) return {0, 0};
  if (const int64_t c = cached[device].load(std::memory_order_acquire); c > 0)
    return {c / 128, static_cast<int>(c % 32), (c / 32) % 2 == 1, (c / 64) % 2 == 1};
  int sms = 0, major = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess)
    return {0, 0};
  int cluster_max = 1;
  bool global_sync = false;
  // The queries below may be refused (cluster_max stays lower); their error is then cleared so
  // that the next launch does not report it. Only then: an unconditional cudaGetLastError would
  // also drop an error of the caller's.
  bool refused = false;
  // Which code the device loaded for the cluster kernels: sm_90's (thread-block clusters) or an
  // earlier architecture's (blocks synchronised through global memory; also a build for sm_80
  // only, its PTX JIT-compiled on a newer device).
  const auto kernel = plastic_rnn_fwd_cluster_kernel<Rule::Hebb, float, simt::kWhereParams>;
  cudaFuncAttributes fa = {};
  refused = cudaFuncGetAttributes(&fa, kernel) != cudaSuccess;
  const bool sm90_code = !refused && fa.binaryVersion >= 90 && fa.ptxVersion >= 90;
  int cooperative = 0;
  const bool no_coop =
      cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device) != cudaSuccess;
  if (no_coop) cooperative = 0;
  if (!refused && !sm90_code && cooperative) {
    cluster_max = 16;
    global_sync = true;
  }
  int current = 0;
  if (major >= 9 && sm90_code && cudaGetDevice(&current) == cudaSuccess && current == device) {
    // Whether 16 blocks of the largest shared memory fit one GPC (a cluster runs within one), asked
    // of a representative cluster kernel (the others use as much shared memory at most).
    cluster_max = 8;
    const int64_t budget = smem_budget(device);
    refused = budget <= 0 ||
              cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) !=
                  cudaSuccess ||
              cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   static_cast<int>(budget)) != cudaSuccess;
    if (!refused) {
      cudaLaunchConfig_t cfg = {};
      cfg.gridDim = dim3(16);
      cfg.blockDim = dim3(kThreads);
      cfg.dynamicSmemBytes = static_cast<size_t>(budget);
      cudaLaunchAttribute attr[1];
      attr[0].id = cudaLaunchAttributeClusterDimension;
      attr[0].val.clusterDim.x = 16;
      attr[0].val.clusterDim.y = 1;
      attr[0].val.clusterDim.z = 1;
      cfg.attrs = attr;
      cfg.numAttrs = 1;
      int n_clusters = 0;
      refused = cudaOccupancyMaxActiveClusters(&n_clusters, kernel, &cfg) != cudaSuccess;
      if (!refused && n_clusters >= 1) cluster_max = 16;
    }
  }
  if (refused || no_coop) (void)cudaGetLastError();
  // sm_count * 128 + cooperative * 64 + global_sync * 32 + cluster_max.
  cached[device].store(
      int64_t{sms} * 128 + (cooperative ? 64 : 0) + (global_sync ? 32 : 0) + cluster_max,
      std::memory_order_release);
  return {sms, cluster_max, global_sync, cooperative != 0};
}

template <typename T>
cudaError_t launch_forward_cluster(Rule rule, const simt::RnnParams<T>& p, const RnnFwdOut<T>& o,
                                   const simt::ClusterPlacement& pl, const simt::Mailbox& mb,
                                   cudaStream_t stream) {
  cudaError_t e = cudaErrorInvalidValue;
  visit_rule(rule,
             [&](auto r) { e = forward_cluster_rule<decltype(r)::value>(p, o, pl, mb, stream); });
  return e;
}

template <typename T>
cudaError_t launch_backward_cluster(Rule rule, const simt::RnnParams<T>& p, const RnnBwdIn<T>& in,
                                    const RnnBwdOut<T>& o, const simt::ClusterBwdPlacement& pl,
                                    const simt::Mailbox& mb, T* scratch, cudaStream_t stream) {
  cudaError_t e = cudaErrorInvalidValue;
  visit_rule(rule, [&](auto r) {
    e = backward_cluster_rule<decltype(r)::value>(p, in, o, pl, mb, scratch, stream);
  });
  return e;
}

template <typename T>
cudaError_t launch_forward(Rule rule, const simt::RnnParams<T>& p, const RnnFwdOut<T>& o,
                           const simt::Placement& pl, T* scratch, cudaStream_t stream) {
  cudaError_t e = cudaErrorInvalidValue;
  visit_rule(rule,
             [&](auto r) { e = forward_rule<decltype(r)::value>(p, o, pl, scratch, stream); });
  return e;
}

template <typename T>
cudaError_t launch_backward(Rule rule, const simt::RnnParams<T>& p, const RnnBwdIn<T>& in,
                            const RnnBwdOut<T>& o, const simt::Placement& pl, T* scratch,
                            cudaStream_t stream) {
  cudaError_t e = cudaErrorInvalidValue;
  visit_rule(rule,
             [&](auto r) { e = backward_rule<decltype(r)::value>(p, in, o, pl, scratch, stream); });
  return e;
}

#define HEBBKERN_INSTANTIATE(T)                                                                \
  template cudaError_t launch_forward<T>(Rule, const simt::RnnParams<T>&, const RnnFwdOut<T>&, \
                                         const simt::Placement&, T*, cudaStream_t);            \
  template cudaError_t launch_forward_cluster<T>(                                              \
      Rule, const simt::RnnParams<T>&, const RnnFwdOut<T>&, const simt::ClusterPlacement&,     \
      const simt::Mailbox&, cudaStream_t);                                                     \
  template cudaError_t launch_backward_cluster<T>(                                             \
      Rule, const simt::RnnParams<T>&, const RnnBwdIn<T>&, const RnnBwdOut<T>&,                \
      const simt::ClusterBwdPlacement&, const simt::Mailbox&, T*, cudaStream_t);               \
  template cudaError_t launch_backward<T>(Rule, const simt::RnnParams<T>&, const RnnBwdIn<T>&, \
                                          const RnnBwdOut<T>&, const simt::Placement&, T*,     \
                                          cudaStream_t);
HEBBKERN_INSTANTIATE(float)
HEBBKERN_INSTANTIATE(double)
#undef HEBBKERN_INSTANTIATE

}  // namespace hebbkern::cuda_kernels
