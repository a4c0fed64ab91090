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

namespace hebbkern {

enum class Rule : int { Hebb = 0, Oja = 1, Clip = 2, Neuromod = 3, Retro = 4 };

// Rules whose trace moves by the per-sample neuromodulator m_t.
HK_HOST_DEVICE constexpr bool is_modulated(Rule r) {
  return r == Rule::Neuromod || r == Rule::Retro;
}
HK_HOST_DEVICE constexpr bool uses_eta(Rule r) { return r != Rule::Neuromod; }
HK_HOST_DEVICE constexpr bool has_eligibility(Rule r) { return r == Rule::Retro; }
// Rules whose trace update ends in clamp(., -c, c).
HK_HOST_DEVICE constexpr bool is_clipped(Rule r) {
  return r == Rule::Clip || r == Rule::Neuromod || r == Rule::Retro;
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

// One element of the trace update. `pre` = h_{t-1}[i], `post` = h_t[j], `mod` = m_t[j] (only read
// by the modulated rules), `eta` (only read by the rules that use it). `elig` is only read and
// written by Rule::Retro.
template <Rule R, typename T>
HK_HOST_DEVICE void trace_forward(T& hebb, T& elig, T pre, T post, T mod, T eta, T clip) {
  if constexpr (R == Rule::Hebb) {
    hebb = (T(1) - eta) * hebb + eta * (pre * post);
  } else if constexpr (R == Rule::Oja) {
    hebb = hebb + eta * post * (pre - post * hebb);
  } else if constexpr (R == Rule::Clip) {
    hebb = clamp_sym(hebb + eta * (pre * post), clip);
  } else if constexpr (R == Rule::Neuromod) {
    hebb = clamp_sym(hebb + mod * (pre * post), clip);
  } else {  // Retro: the trace moves by the eligibility as it stood before this step's product.
    hebb = clamp_sym(hebb + mod * elig, clip);
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

template <Rule R, typename T>
HK_HOST_DEVICE TraceGrad<T> trace_backward(T hebb, T elig, T pre, T post, T mod, T eta, T clip,
                                           T& d_hebb, T& d_elig) {
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
  } else if constexpr (R == Rule::Clip) {
    const T d = clamp_passes(hebb + eta * prod, clip) ? d_hebb : T(0);
    d_hebb = d;
    g.d_pre = d * eta * post;
    g.d_post = d * eta * pre;
    g.d_eta = d * prod;
  } else if constexpr (R == Rule::Neuromod) {
    const T d = clamp_passes(hebb + mod * prod, clip) ? d_hebb : T(0);
    d_hebb = d;
    g.d_pre = d * mod * post;
    g.d_post = d * mod * pre;
    g.d_mod = d * prod;
  } else {  // Retro
    const T d = clamp_passes(hebb + mod * elig, clip) ? d_hebb : T(0);
    const T de = d_elig;
    d_hebb = d;
    d_elig = d * mod + (T(1) - eta) * de;
    g.d_mod = d * elig;
    g.d_pre = eta * de * post;
    g.d_post = eta * de * pre;
    g.d_eta = de * (prod - elig);
  }
  return g;
}

}  // namespace hebbkern
