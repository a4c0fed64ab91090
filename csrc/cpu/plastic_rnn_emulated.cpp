// The CUDA block kernels of plastic_rnn run on the CPU: each sample's block is executed by
// simt::EmuBlock, sequentially, with a host buffer standing in for its shared memory. Used by the
// tests (hebbkern::_plastic_rnn_emulated_fwd/bwd) to check the GPU code without a GPU; samples run
// in parallel, as the blocks of a grid do.
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <limits>
#include <vector>

#include "hebbkern/plastic_rnn_block.h"

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
template void run_backward<float>(Rule, const simt::RnnParams<float>&, const RnnBwdIn<float>&,
                                  const RnnBwdOut<float>&, const simt::Placement&, float*, bool);
template void run_backward<double>(Rule, const simt::RnnParams<double>&, const RnnBwdIn<double>&,
                                   const RnnBwdOut<double>&, const simt::Placement&, double*, bool);

}  // namespace hebbkern::emu
