// The CUDA block kernels of trace_update run on the CPU, one block at a time (simt::EmuBlock), for
// the tests (hebbkern::_trace_update_emulated_fwd/bwd). See plastic_rnn_emulated.cpp.
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include "hebbkern/trace_update_block.h"

namespace hebbkern::emu {

namespace {

template <typename F>
void with_trace_rule(Rule r, F&& f) {
  switch (r) {
    case Rule::Hebb: return f(std::integral_constant<Rule, Rule::Hebb>{});
    case Rule::Oja: return f(std::integral_constant<Rule, Rule::Oja>{});
    default: return f(std::integral_constant<Rule, Rule::Clip>{});
  }
}

// Runs `body(block, index)` for every block of `g`, the launch's own grid, in parallel as the
// blocks of a grid run. A grid the CUDA launch would reject is rejected here too.
template <typename F>
void for_each_block(const simt::Grid& g, int threads, bool reverse, F&& body) {
  TORCH_CHECK(simt::grid_fits_cuda(g), "hebbkern: the launch grid (", g.x, ", ", g.y, ", ", g.z,
              ") exceeds CUDA's limits");
  at::parallel_for(0, g.blocks(), 1, [&](int64_t k0, int64_t k1) {
    const simt::EmuBlock blk{threads, reverse};
    for (int64_t k = k0; k < k1; ++k) body(blk, simt::block_index(g, k));
  });
}

}  // namespace

template <typename T>
void run_trace_update_forward(Rule rule, const simt::TraceUpdateArgs<T>& a, T* out, int threads,
                              bool reverse) {
  with_trace_rule(rule, [&](auto r) {
    for_each_block(simt::trace_update_grid(a.B, a.R), threads, reverse,
                   [&](const simt::EmuBlock& blk, const simt::BlockIdx& idx) {
                     simt::trace_update_forward_kernel<decltype(r)::value>(blk, a, idx, out);
                   });
  });
}

// `part`: [blocks, trace_update_scratch(K, threads)], the global-memory placement of the partial
// rows (the emulation never uses the shared-memory one, so every block's slot is checked).
template <typename T>
void run_trace_update_backward(Rule rule, const simt::TraceUpdateArgs<T>& a, const T* G, T* dH,
                               T* dpre, T* part, T* cols, int threads, bool reverse) {
  with_trace_rule(rule, [&](auto r) {
    for_each_block(simt::trace_update_grid(a.B, a.R), threads, reverse,
                   [&](const simt::EmuBlock& blk, const simt::BlockIdx& idx) {
                     simt::trace_update_backward_kernel<decltype(r)::value>(
                         blk, a, idx, G, dH, dpre, static_cast<T*>(nullptr), part, cols);
                   });
  });
}

#define HEBBKERN_INSTANTIATE(T)                                                                    \
  template void run_trace_update_forward<T>(Rule, const simt::TraceUpdateArgs<T>&, T*, int, bool); \
  template void run_trace_update_backward<T>(Rule, const simt::TraceUpdateArgs<T>&, const T*, T*,  \
                                             T*, T*, T*, int, bool);
HEBBKERN_INSTANTIATE(float)
HEBBKERN_INSTANTIATE(double)
#undef HEBBKERN_INSTANTIATE

}  // namespace hebbkern::emu
