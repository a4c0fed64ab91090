// Trace-update rules of SPEC.md section 1, one element at a time, with their exact derivatives.
//
// This header is the single home of the rule math: the CPU kernels call it today and the CUDA
// kernels call the same functions, so the CPU tests (and the C++ unit tests under csrc/tests/)
// cover the arithmetic that runs on the GPU. Nothing here depends on torch.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define HK_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define HK_HOST_DEVICE inline
#endif

#include <cstdint>
#include <type_traits>
#if !defined(__CUDACC__) && !defined(__HIPCC__)
#include <cmath>
#endif

namespace hebbkern {

// exp and tanh of float or double on the host and on the device (CUDA overloads them for float).
#if defined(__CUDACC__) || defined(__HIPCC__)
template <typename T>
HK_HOST_DEVICE T rule_exp(T x) {
  return exp(x);
}
template <typename T>
HK_HOST_DEVICE T rule_tanh(T x) {
  return tanh(x);
}
#else
template <typename T>
inline T rule_exp(T x) {
  return std::exp(x);
}
template <typename T>
inline T rule_tanh(T x) {
  return std::tanh(x);
}
#endif

// Gated: H = (1 - m) H + m P (SPEC.md section 1.1). ClipSoft, NeuromodSoft, RetroSoft: Clip,
// Neuromod, Retro with the soft clip of section 1.1 (the option soft_clip=True: a rule of its own
// in the kernels, so that the hard-clip rules keep their code).
enum class Rule : int {
  Hebb = 0,
  Oja = 1,
  Clip = 2,
  Neuromod = 3,
  Retro = 4,
  Gated = 5,
  ClipSoft = 6,
  NeuromodSoft = 7,
  RetroSoft = 8
};

// Calls f(std::integral_constant<Rule, r>{}): one instantiation of a kernel per rule, the rule
// chosen at run time (host code: the launches and the block emulation).
template <typename F>
void visit_rule(Rule r, F&& f) {
  switch (r) {
    case Rule::Hebb: return f(std::integral_constant<Rule, Rule::Hebb>{});
    case Rule::Oja: return f(std::integral_constant<Rule, Rule::Oja>{});
    case Rule::Clip: return f(std::integral_constant<Rule, Rule::Clip>{});
    case Rule::Neuromod: return f(std::integral_constant<Rule, Rule::Neuromod>{});
    case Rule::Retro: return f(std::integral_constant<Rule, Rule::Retro>{});
    case Rule::Gated: return f(std::integral_constant<Rule, Rule::Gated>{});
    case Rule::ClipSoft: return f(std::integral_constant<Rule, Rule::ClipSoft>{});
    case Rule::NeuromodSoft: return f(std::integral_constant<Rule, Rule::NeuromodSoft>{});
    case Rule::RetroSoft: return f(std::integral_constant<Rule, Rule::RetroSoft>{});
  }
}

// Rules whose trace moves by the per-sample neuromodulator m_t.
HK_HOST_DEVICE constexpr bool is_modulated(Rule r) {
  return r == Rule::Neuromod || r == Rule::Retro || r == Rule::Gated || r == Rule::NeuromodSoft ||
         r == Rule::RetroSoft;
}
HK_HOST_DEVICE constexpr bool uses_eta(Rule r) {
  return r != Rule::Neuromod && r != Rule::NeuromodSoft && r != Rule::Gated;
}
HK_HOST_DEVICE constexpr bool has_eligibility(Rule r) {
  return r == Rule::Retro || r == Rule::RetroSoft;
}
HK_HOST_DEVICE constexpr bool is_soft(Rule r) {
  return r == Rule::ClipSoft || r == Rule::NeuromodSoft || r == Rule::RetroSoft;
}
// Rules whose trace update ends in clamp(., -c, c).
HK_HOST_DEVICE constexpr bool is_clipped(Rule r) {
  return r == Rule::Clip || r == Rule::Neuromod || r == Rule::Retro || is_soft(r);
}
// The hard-clip rule a soft one derives from (the rule itself otherwise).
HK_HOST_DEVICE constexpr Rule hard_rule(Rule r) {
  return r == Rule::ClipSoft       ? Rule::Clip
         : r == Rule::NeuromodSoft ? Rule::Neuromod
         : r == Rule::RetroSoft    ? Rule::Retro
                                   : r;
}

// The variant options of SPEC.md section 1.1 as the ops receive them (one int; hebbkern/
// _variants.py writes it): activation + 8 * modulator squash + 32 * soft_clip + 256 * (number of
// unmodulated post-synaptic neurons, the last ones).
enum class Act : int { Tanh = 0, Relu = 1, Selu = 2, Sigmoid = 3, Identity = 4 };
enum class Squash : int { Tanh = 0, Sigmoid = 1, Identity = 2 };
HK_HOST_DEVICE constexpr int variant_act(int64_t v) { return static_cast<int>(v & 7); }
HK_HOST_DEVICE constexpr int variant_squash(int64_t v) { return static_cast<int>((v >> 3) & 3); }
HK_HOST_DEVICE constexpr bool variant_soft(int64_t v) { return ((v >> 5) & 1) != 0; }
HK_HOST_DEVICE constexpr int64_t variant_unmodulated(int64_t v) { return v >> 8; }
HK_HOST_DEVICE constexpr Rule soft_rule(Rule r) {
  return r == Rule::Clip       ? Rule::ClipSoft
         : r == Rule::Neuromod ? Rule::NeuromodSoft
         : r == Rule::Retro    ? Rule::RetroSoft
                               : r;
}

constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;

// The neuron's nonlinearity f(a) for the activations other than tanh (the kernels keep their own
// vectorised tanh), and f'(a) read from y = f(a) (SPEC.md section 1.1: torch's conventions at 0).
template <typename T>
HK_HOST_DEVICE T act_forward(int act, T a) {
  switch (act) {
    case static_cast<int>(Act::Relu): return a > T(0) ? a : T(0);
    case static_cast<int>(Act::Selu):
      return a > T(0) ? T(kSeluScale) * a : T(kSeluScale * kSeluAlpha) * (rule_exp(a) - T(1));
    case static_cast<int>(Act::Sigmoid): return T(1) / (T(1) + rule_exp(-a));
    case static_cast<int>(Act::Identity): return a;
    default: return rule_tanh(a);
  }
}
template <typename T>
HK_HOST_DEVICE T act_grad_from_output(int act, T y) {
  switch (act) {
    case static_cast<int>(Act::Relu): return y > T(0) ? T(1) : T(0);
    case static_cast<int>(Act::Selu):
      return y > T(0) ? T(kSeluScale) : y + T(kSeluScale * kSeluAlpha);
    case static_cast<int>(Act::Sigmoid): return y * (T(1) - y);
    case static_cast<int>(Act::Identity): return T(1);
    default: return T(1) - y * y;
  }
}
// The neuromodulator's squashing g(z) and g'(z) read from s = g(z): the activation of that name.
HK_HOST_DEVICE constexpr int squash_act(int sq) {
  return sq == static_cast<int>(Squash::Sigmoid)    ? static_cast<int>(Act::Sigmoid)
         : sq == static_cast<int>(Squash::Identity) ? static_cast<int>(Act::Identity)
                                                    : static_cast<int>(Act::Tanh);
}
template <typename T>
HK_HOST_DEVICE T squash_forward(int sq, T z) {
  return act_forward(squash_act(sq), z);
}
template <typename T>
HK_HOST_DEVICE T squash_grad_from_output(int sq, T s) {
  return act_grad_from_output(squash_act(sq), s);
}

// Written with comparisons (not fmin/fmax) so that NaN propagates exactly as torch.clamp does.
template <typename T>
HK_HOST_DEVICE T clamp_sym(T x, T c) {
  return x < -c ? -c : (x > c ? c : x);
}

// torch.clamp's gradient passes where the input lies within [-c, c], bounds included; NaN blocks
// it.
template <typename T>
HK_HOST_DEVICE bool clamp_passes(T x, T c) {
  return x >= -c && x <= c;
}

// The soft clip of SPEC.md section 1.1 before its final clamp: H + max(D, 0) (1 - H / c) +
// min(D, 0) (1 + H / c), written as H + D - |D| H / c (the same value: one of max(D, 0), min(D, 0)
// is zero; one division, which keeps the float64 CUDA backward free of register spills). NaN
// propagates.
template <typename T>
HK_HOST_DEVICE T abs_t(T x) {
  return x < T(0) ? -x : x;
}
template <typename T>
HK_HOST_DEVICE T soft_step(T hebb, T d, T inv_clip) {
  return hebb + d - abs_t(d) * (hebb * inv_clip);
}

// Adjoint of clamp(soft_step(hebb, d, c), -c, c) for the adjoint g of the result: writes the
// adjoint of hebb to d_hebb_out and returns that of d. torch.clamp's gradient passes at the bounds:
// at d = 0 both branches of the soft clip do (d soft / d d = 2 there).
// `inv` is 1 / clip, computed once by the caller (a float64 division per element made the CUDA
// backward of retro_soft spill registers).
template <typename T>
HK_HOST_DEVICE T soft_step_backward(T hebb, T d, T clip, T inv, T g, T& d_hebb_out) {
  const T s = hebb * inv;
  const T a = abs_t(d);
  const T gg = clamp_passes(hebb + d - a * s, clip) ? g : T(0);
  d_hebb_out = gg * (T(1) - a * inv);
  const T slope = d > T(0) ? T(1) - s : (d < T(0) ? T(1) + s : T(2));
  return gg * slope;
}

// Adjoint of the clipped step clamp(hebb + d, -c, c), or with the soft clip (kSoft) of
// clamp(soft_step(hebb, d, 1 / c), -c, c), for the adjoint g of the result: writes the adjoint of
// hebb to d_hebb_out (g may alias it) and returns that of d.
template <bool kSoft, typename T>
HK_HOST_DEVICE T clipped_step_backward(T hebb, T d, T clip, T inv, T g, T& d_hebb_out) {
  if constexpr (kSoft) {
    return soft_step_backward(hebb, d, clip, inv, g, d_hebb_out);
  } else {
    const T gg = clamp_passes(hebb + d, clip) ? g : T(0);
    d_hebb_out = gg;
    return gg;
  }
}

// One element of the trace update. `pre` = h_{t-1}[i], `post` = h_t[j], `mod` = m_t[j] (only read
// by the modulated rules), `eta` (only read by the rules that use it). `elig` is only read and
// written by Rule::Retro.
// trace_forward with the reciprocal of the clip given (read by the soft clip only): the CUDA
// kernels compute it once, not as a float64 division per element.
template <Rule R, typename T>
HK_HOST_DEVICE void trace_forward_inv(T& hebb, T& elig, T pre, T post, T mod, T eta, T clip,
                                      T inv_clip) {
  if constexpr (R == Rule::Hebb) {
    hebb = (T(1) - eta) * hebb + eta * (pre * post);
  } else if constexpr (R == Rule::Oja) {
    hebb = hebb + eta * post * (pre - post * hebb);
  } else if constexpr (R == Rule::Clip) {
    hebb = clamp_sym(hebb + eta * (pre * post), clip);
  } else if constexpr (R == Rule::Neuromod) {
    hebb = clamp_sym(hebb + mod * (pre * post), clip);
  } else if constexpr (R == Rule::Retro) {
    // The trace moves by the eligibility as it stood before this step's product.
    hebb = clamp_sym(hebb + mod * elig, clip);
    elig = (T(1) - eta) * elig + eta * (pre * post);
  } else if constexpr (R == Rule::Gated) {
    hebb = (T(1) - mod) * hebb + mod * (pre * post);
  } else if constexpr (R == Rule::ClipSoft) {
    hebb = clamp_sym(soft_step(hebb, eta * (pre * post), inv_clip), clip);
  } else if constexpr (R == Rule::NeuromodSoft) {
    hebb = clamp_sym(soft_step(hebb, mod * (pre * post), inv_clip), clip);
  } else {  // RetroSoft
    hebb = clamp_sym(soft_step(hebb, mod * elig, inv_clip), clip);
    elig = (T(1) - eta) * elig + eta * (pre * post);
  }
}

// Adjoints of one element of the trace update. In: the element's state before the update (hebb,
// elig), the step's pre/post/mod, and the adjoints of the updated state (d_hebb, d_elig). Out: the
// adjoints of the state before the update (written back into d_hebb, d_elig) and the contributions
// to the adjoints of pre, post, mod and eta (added to the accumulators).
template <typename T>
struct TraceGrad {
  T d_pre;
  T d_post;
  T d_mod;
  T d_eta;
};

// trace_backward with the reciprocal of the clip given (inv_clip = 1 / clip; read by the soft
// clip only): kernels compute it once per call.
template <Rule R, typename T>
HK_HOST_DEVICE TraceGrad<T> trace_backward_inv(T hebb, T elig, T pre, T post, T mod, T eta, T clip,
                                               T inv_clip, T& d_hebb, T& d_elig) {
  TraceGrad<T> g{T(0), T(0), T(0), T(0)};
  const T prod = pre * post;
  if constexpr (R == Rule::Hebb) {
    const T d = d_hebb;
    d_hebb = (T(1) - eta) * d;
    g.d_pre = eta * d * post;
    g.d_post = eta * d * pre;
    g.d_eta = d * (prod - hebb);
  } else if constexpr (R == Rule::Oja) {
    const T d = d_hebb;
    d_hebb = d * (T(1) - eta * post * post);
    g.d_pre = d * eta * post;
    g.d_post = d * eta * (pre - T(2) * post * hebb);
    g.d_eta = d * post * (pre - post * hebb);
  } else if constexpr (R == Rule::Gated) {
    const T d = d_hebb;
    d_hebb = (T(1) - mod) * d;
    g.d_pre = d * mod * post;
    g.d_post = d * mod * pre;
    g.d_mod = d * (prod - hebb);
  } else if constexpr (R == Rule::Retro || R == Rule::RetroSoft) {
    // The trace moved by mod * elig (the eligibility before this step's product).
    const T de = d_elig;
    const T d = clipped_step_backward<is_soft(R)>(hebb, mod * elig, clip, inv_clip, d_hebb, d_hebb);
    d_elig = d * mod + (T(1) - eta) * de;
    g.d_mod = d * elig;
    g.d_pre = eta * de * post;
    g.d_post = eta * de * pre;
    g.d_eta = de * (prod - elig);
  } else {  // Clip, Neuromod and their soft clips: the trace moved by m * prod
    // Clip is Neuromod with eta in place of the modulation.
    constexpr bool kEta = R == Rule::Clip || R == Rule::ClipSoft;
    const T m = kEta ? eta : mod;
    const T d = clipped_step_backward<is_soft(R)>(hebb, m * prod, clip, inv_clip, d_hebb, d_hebb);
    g.d_pre = d * m * post;
    g.d_post = d * m * pre;
    (kEta ? g.d_eta : g.d_mod) = d * prod;
  }
  return g;
}

// One element of the trace update (see trace_forward_inv).
template <Rule R, typename T>
HK_HOST_DEVICE void trace_forward(T& hebb, T& elig, T pre, T post, T mod, T eta, T clip) {
  trace_forward_inv<R>(hebb, elig, pre, post, mod, eta, clip, is_soft(R) ? T(1) / clip : T(0));
}

// Adjoints of one element of the trace update (see trace_backward_inv).
template <Rule R, typename T>
HK_HOST_DEVICE TraceGrad<T> trace_backward(T hebb, T elig, T pre, T post, T mod, T eta, T clip,
                                           T& d_hebb, T& d_elig) {
  return trace_backward_inv<R>(hebb, elig, pre, post, mod, eta, clip,
                               is_soft(R) ? T(1) / clip : T(0), d_hebb, d_elig);
}

}  // namespace hebbkern
