// The CUDA block kernels of trace_update run on the CPU, one block at a time (simt::EmuBlock), for
// the tests (hebbkern::_trace_update_emulated_fwd/bwd). See plastic_rnn_emulated.cpp.
#include <ATen/Parallel.h>

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

}  // namespace

template <typename T>
void run_trace_update_forward(Rule rule, const simt::TraceUpdateArgs<T>& a, T* out, int threads,
                              bool reverse) {
  with_trace_rule(rule, [&](auto r) {
    at::parallel_for(0, a.B * a.R, 1, [&](int64_t k0, int64_t k1) {
      const simt::EmuBlock blk{threads, reverse};
      for (int64_t k = k0; k < k1; ++k)
        simt::trace_update_forward_block<decltype(r)::value>(blk, a, k / a.R, k % a.R, out);
    });
  });
}

template <typename T>
void run_trace_update_backward(Rule rule, const simt::TraceUpdateArgs<T>& a, const T* G, T* dH,
                               T* dpre, T* part, T* cols, int threads, bool reverse) {
  const int64_t per_block = simt::trace_update_scratch(a.K, threads);
  with_trace_rule(rule, [&](auto r) {
    at::parallel_for(0, a.B * a.R, 1, [&](int64_t k0, int64_t k1) {
      const simt::EmuBlock blk{threads, reverse};
      for (int64_t k = k0; k < k1; ++k)
        simt::trace_update_backward_block<decltype(r)::value>(blk, a, k / a.R, k % a.R, G, dH, dpre,
                                                              part + k * per_block, cols);
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
