// The CUDA block kernels of plastic_rnn run on the CPU: each sample's block is executed by
// simt::EmuBlock, sequentially, with a host buffer standing in for its shared memory. Used by the
// tests (hebbkern::_plastic_rnn_emulated_fwd/bwd) to check the GPU code without a GPU; samples run
// in parallel, as the blocks of a grid do.
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <limits>
#include <thread>
#include <vector>

#include "hebbkern/plastic_rnn_block.h"
#include "hebbkern/plastic_rnn_cluster_backward.h"

namespace hebbkern::emu {

namespace {

// Calls body(block, index, shared_memory) for every block of the launch's own grid
// (simt::plastic_rnn_grid), in parallel as the blocks of a grid run.
template <typename T, typename F>
void for_each_block(int64_t B, const simt::Placement& pl, bool reverse, F&& body) {
  const simt::Grid g = simt::plastic_rnn_grid(B);
  TORCH_CHECK(simt::grid_fits_cuda(g), "hebbkern: the launch grid (", g.x, ", ", g.y, ", ", g.z,
              ") exceeds CUDA's limits");
  at::parallel_for(0, g.blocks(), 1, [&](int64_t k0, int64_t k1) {
    // Poisoned, so that a read of shared memory the kernel never wrote shows up as NaN.
    std::vector<T> smem(pl.smem_bytes / sizeof(T) + 1, std::numeric_limits<T>::quiet_NaN());
    const simt::EmuBlock blk{pl.threads, reverse};
    for (int64_t k = k0; k < k1; ++k) body(blk, simt::block_index(g, k), smem.data());
  });
}

// Calls body(block, cluster, index, shared_memory) for every block of a cluster launch's grid `g`:
// the c blocks of a cluster run concurrently as c host threads meeting at a barrier (EmuCluster),
// each block's body sequential through EmuBlock (in reverse order if asked), each with its own
// NaN-poisoned shared memory that the others reach through EmuCluster::map. Clusters run in
// parallel, as on the GPU. With `window`, the blocks synchronise through global memory instead
// (simt::CudaGridCluster): each has a NaN-poisoned mailbox of the window's bytes, and a map()
// outside the window fails the launch.
template <typename T, typename F>
void for_each_cluster_block(const simt::Grid& g, int threads, int64_t smem_bytes, bool reverse,
                            const simt::Mailbox* window, F&& body) {
  TORCH_CHECK(simt::grid_fits_cuda(g), "hebbkern: the cluster launch grid (", g.x, ", cluster ",
              g.cluster, ") exceeds CUDA's limits");
  const int c = g.cluster;
  TORCH_CHECK(window == nullptr || (window->offset >= 0 && window->bytes % 4 == 0 &&
                                    window->offset + window->bytes <= smem_bytes),
              "hebbkern: the exchange window lies outside shared memory");
  std::atomic<bool> outside{false};
  at::parallel_for(0, g.blocks() / c, 1, [&](int64_t k0, int64_t k1) {
    const size_t elems = smem_bytes / sizeof(T) + 1;
    const size_t mail_elems = window ? window->bytes / sizeof(T) + 1 : 0;
    std::vector<std::vector<T>> smem(c), mail(c);
    std::vector<unsigned char*> buffers(c, nullptr), boxes(c, nullptr);
    for (int64_t k = k0; k < k1; ++k) {
      for (int q = 0; q < c; ++q) {
        smem[q].assign(elems, std::numeric_limits<T>::quiet_NaN());
        buffers[q] = reinterpret_cast<unsigned char*>(smem[q].data());
        if (window) {
          mail[q].assign(mail_elems, std::numeric_limits<T>::quiet_NaN());
          boxes[q] = reinterpret_cast<unsigned char*>(mail[q].data());
        }
      }
      simt::EmuBarrier bar(c);
      // The kernel bodies do not throw (a block that stopped would leave the others waiting).
      auto block = [&](int q) {
        const simt::BlockIdx idx = simt::block_index(g, k * c + q);
        simt::EmuCluster clu{static_cast<int>(idx.x % c), c, &bar, buffers.data()};
        if (window) {
          clu.mail = boxes.data();
          clu.offset = window->offset;
          clu.bytes = window->bytes;
          clu.outside = &outside;
        }
        const simt::EmuBlock blk{threads, reverse};
        body(blk, static_cast<const simt::EmuCluster&>(clu), idx, smem[q].data());
      };
      std::vector<std::thread> workers;
      for (int q = 1; q < c; ++q) workers.emplace_back(block, q);
      block(0);
      for (auto& th : workers) th.join();
    }
  });
  TORCH_CHECK(!outside.load(),
              "hebbkern: a cluster kernel wrote another block's shared memory outside its "
              "exchange window (a grid-synchronised cluster would lose that write)");
}

}  // namespace

template <typename T>
void run_forward(Rule rule, const simt::RnnParams<T>& p, const RnnFwdOut<T>& o,
                 const simt::Placement& pl, T* scratch, bool reverse) {
  visit_rule(rule, [&](auto r) {
    for_each_block<T>(
        p.B, pl, reverse, [&](const simt::EmuBlock& blk, const simt::BlockIdx& idx, T* smem) {
          // The instantiation the CUDA launch picks for this placement.
          simt::visit_forward_instantiation(pl, [&](auto where) {
            simt::plastic_rnn_forward_kernel<decltype(r)::value, decltype(where)::value>(
                blk, p, o, idx, pl, smem, scratch);
          });
        });
  });
}

// The cluster forward on the launch's own grid and clusters (simt::plastic_rnn_cluster_grid).
template <typename T>
void run_forward_cluster(Rule rule, const simt::RnnParams<T>& p, const RnnFwdOut<T>& o,
                         const simt::ClusterPlacement& pl, bool reverse,
                         const simt::Mailbox* window) {
  visit_rule(rule, [&](auto r) {
    constexpr Rule R = decltype(r)::value;
    for_each_cluster_block<T>(
        simt::plastic_rnn_cluster_grid(p.B, pl.c), pl.threads, pl.smem_bytes, reverse, window,
        [&](const simt::EmuBlock& blk, const simt::EmuCluster& clu, const simt::BlockIdx& idx,
            T* sm) {
          simt::visit_where(pl.where, [&](auto where) {
            simt::plastic_rnn_forward_cluster_kernel<R, decltype(where)::value>(blk, clu, p, o, idx,
                                                                                sm);
          });
        });
  });
}

// The cluster backward, the same way; `scratch`: pl.scratch_per_block elements per block.
template <typename T>
void run_backward_cluster(Rule rule, const simt::RnnParams<T>& p, const RnnBwdIn<T>& in,
                          const RnnBwdOut<T>& o, const simt::ClusterBwdPlacement& pl, T* scratch,
                          bool reverse, const simt::Mailbox* window) {
  visit_rule(rule, [&](auto r) {
    constexpr Rule R = decltype(r)::value;
    for_each_cluster_block<T>(
        simt::plastic_rnn_cluster_grid(p.B, pl.c), pl.threads, pl.smem_bytes, reverse, window,
        [&](const simt::EmuBlock& blk, const simt::EmuCluster& clu, const simt::BlockIdx& idx,
            T* sm) {
          simt::visit_bwd_where(pl.where, [&](auto where) {
            simt::plastic_rnn_backward_cluster_kernel<R, decltype(where)::value>(
                blk, clu, p, in, o, idx, sm, scratch, pl.scratch_per_block);
          });
        });
  });
}

template <typename T>
void run_backward(Rule rule, const simt::RnnParams<T>& p, const RnnBwdIn<T>& in,
                  const RnnBwdOut<T>& o, const simt::Placement& pl, T* scratch, bool reverse) {
  visit_rule(rule, [&](auto r) {
    for_each_block<T>(
        p.B, pl, reverse, [&](const simt::EmuBlock& blk, const simt::BlockIdx& idx, T* smem) {
          // The instantiation the CUDA launch picks.
          simt::visit_backward_instantiation(p, pl, [&](auto pop, auto params) {
            simt::plastic_rnn_backward_kernel<decltype(r)::value, decltype(pop)::value,
                                              decltype(params)::value>(blk, p, in, o, idx, pl, smem,
                                                                       scratch);
          });
        });
  });
}

template void run_forward<float>(Rule, const simt::RnnParams<float>&, const RnnFwdOut<float>&,
                                 const simt::Placement&, float*, bool);
template void run_forward<double>(Rule, const simt::RnnParams<double>&, const RnnFwdOut<double>&,
                                  const simt::Placement&, double*, bool);
template void run_forward_cluster<float>(Rule, const simt::RnnParams<float>&,
                                         const RnnFwdOut<float>&, const simt::ClusterPlacement&,
                                         bool, const simt::Mailbox*);
template void run_forward_cluster<double>(Rule, const simt::RnnParams<double>&,
                                          const RnnFwdOut<double>&, const simt::ClusterPlacement&,
                                          bool, const simt::Mailbox*);
template void run_backward_cluster<float>(Rule, const simt::RnnParams<float>&,
                                          const RnnBwdIn<float>&, const RnnBwdOut<float>&,
                                          const simt::ClusterBwdPlacement&, float*, bool,
                                          const simt::Mailbox*);
template void run_backward_cluster<double>(Rule, const simt::RnnParams<double>&,
                                           const RnnBwdIn<double>&, const RnnBwdOut<double>&,
                                           const simt::ClusterBwdPlacement&, double*, bool,
                                           const simt::Mailbox*);
template void run_backward<float>(Rule, const simt::RnnParams<float>&, const RnnBwdIn<float>&,
                                  const RnnBwdOut<float>&, const simt::Placement&, float*, bool);
template void run_backward<double>(Rule, const simt::RnnParams<double>&, const RnnBwdIn<double>&,
                                   const RnnBwdOut<double>&, const simt::Placement&, double*, bool);

}  // namespace hebbkern::emu
