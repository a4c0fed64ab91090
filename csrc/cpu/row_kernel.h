// Pieces of the CPU row kernels that the plastic families share (plastic_rnn_kernel.cpp,
// plastic_step_kernel.cpp, plastic_lstm_kernel.cpp).
//
// Included by a kernel source after isa_target.h, so everything here is compiled for that source's
// instruction set, with internal linkage (the unnamed namespace inside HEBBKERN_CPU_ISA). It
// includes no library header: the kernel source includes <cmath>, hebbkern/plastic_rules.h and
// vec_math.h before the target switch.
#pragma once

#ifndef HEBBKERN_CPU_ISA
#error "include isa_target.h before row_kernel.h"
#endif

namespace hebbkern {
namespace cpu {
namespace HEBBKERN_CPU_ISA {
namespace {

template <Rule R>
struct RuleTag {
  static constexpr Rule value = R;
};

// Calls f(RuleTag<r>{}): one instantiation of the kernels per rule.
template <typename F>
void with_rule(Rule r, F&& f) {
  switch (r) {
    case Rule::Hebb: return f(RuleTag<Rule::Hebb>{});
    case Rule::Oja: return f(RuleTag<Rule::Oja>{});
    case Rule::Clip: return f(RuleTag<Rule::Clip>{});
    case Rule::Neuromod: return f(RuleTag<Rule::Neuromod>{});
    case Rule::Retro: return f(RuleTag<Rule::Retro>{});
  }
}

inline float tanh_any(float x) { return tanh_vec(x); }  // vectorisable (vec_math.h)
inline double tanh_any(double x) { return std::tanh(x); }

// m_t[j] = fanout_w[j] * s + fanout_b[j] (or s without fan-out), for arguments p with N, fan_w,
// fan_b.
template <typename P, typename T>
inline void fanout(const P& p, T s, T* M) {
  if (p.fan_w) {
    for (int64_t j = 0; j < p.N; ++j) M[j] = p.fan_w[j] * s + p.fan_b[j];
  } else {
    for (int64_t j = 0; j < p.N; ++j) M[j] = s;
  }
}

}  // namespace
}  // namespace HEBBKERN_CPU_ISA
}  // namespace cpu
}  // namespace hebbkern
