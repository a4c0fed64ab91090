// Body of the CPU plastic_lstm kernels (one sample, one step), compiled once per instruction set.
//
// The build compiles this file once per instruction set (isa_target.h defines HEBBKERN_CPU_ISA,
// the namespace of the entry points). Everything here has internal linkage and
// calls no library templates, so the copies built for different ISAs never get merged by the
// linker. Inner loops run over the post-synaptic index j (contiguous) and are written for the
// vectoriser.
#include <math.h>

#include <cstdint>

#include "plastic_lstm_kernel_args.h"

// Everything below is compiled for this compilation's instruction set (isa_target.h).
#include "isa_target.h"
#include "trace_adjoint_row.h"

namespace hebbkern {
namespace cpu {
namespace HEBBKERN_CPU_ISA {
namespace {

// libm's tanhf, not row_kernel.h's tanh_any (vec_math.h): that would change the LSTM's float32
// results.
inline float tanh_(float x) { return ::tanhf(x); }
inline double tanh_(double x) { return ::tanh(x); }
inline float sigmoid(float x) { return 1.0f / (1.0f + ::expf(-x)); }
inline double sigmoid(double x) { return 1.0 / (1.0 + ::exp(-x)); }

template <typename T>
void zero(T* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) x[j] = T(0);
}

// The modulation of each post-synaptic neuron j from the per-sample neuromodulator m.
// Not row_kernel.h's fanout(): this loop carries `omp simd`; kept as measured (NOTES.md, L1-L3).
template <typename T>
void modulation(const LstmArgs<T>& p, T m, T* mm) {
  if (p.fan_w) {
#pragma omp simd
    for (int64_t j = 0; j < p.N; ++j) mm[j] = p.fan_w[j] * m + p.fan_b[j];
  } else {
    for (int64_t j = 0; j < p.N; ++j) mm[j] = m;
  }
}

// The trace as the candidate reads it: clamped with the read-out clip (READ), else as it is.
template <bool READ, typename T>
inline T read_trace(const LstmArgs<T>& p, T H) {
  if constexpr (READ) {
    return clamp_sym(H, p.read_clip);
  } else {
    return H;
  }
}

// q[j] = sum_i h[i] * alpha[i, j] * H[i, j]: the plastic part of the candidate's pre-activation.
template <bool READ, typename T>
void plastic_term(const LstmArgs<T>& p, const T* h, const T* H, T* q) {
  const int64_t N = p.N;
  zero(q, N);
  for (int64_t i = 0; i < N; ++i) {
    const T* Hr = H + i * N;
    const T* Ar = p.A + i * p.a_stride;
    const T hi = h[i];
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) q[j] += hi * Ar[j] * read_trace<READ>(p, Hr[j]);
  }
}

// Row i of the trace update H_{t-1} -> H_t (and E): reads Hi, Ei and writes Ho, Eo, which may be
// the same rows (in place, the forward) or the next slot of the recomputation scratch.
// Kept apart from plastic_rnn_kernel.cpp's update_row (in place only) and plastic_step_kernel.cpp's
// fwd_update (pre_post/post_pre indexing): this one reads and writes different slots.
template <Rule R, typename T>
inline void update_row(const LstmArgs<T>& p, T pre, const T* g, const T* mm, const T* Hi,
                       const T* Ei, T* Ho, T* Eo) {
  const int64_t N = p.N;
  if constexpr (has_eligibility(R)) {
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) {
      T h = Hi[j], e = Ei[j];
      trace_forward<R, T>(h, e, pre, g[j], mm[j], p.eta, p.clip);
      Ho[j] = h;
      Eo[j] = e;
    }
  } else {
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) {
      T h = Hi[j], e = T(0);
      trace_forward<R, T>(h, e, pre, g[j], is_modulated(R) ? mm[j] : T(0), p.eta, p.clip);
      Ho[j] = h;
    }
  }
}

// The step's post-synaptic term (SPEC.md section 2.1): g_t, the drive (G[4N, 5N)), c_t or h_t.
template <typename T>
const T* post_term(const LstmArgs<T>& p, const T* G, const T* c, const T* h) {
  switch (p.post) {
    case 1: return G + 4 * p.N;
    case 2: return c;
    case 3: return h;
    default: return G + 2 * p.N;
  }
}

template <Rule R, bool READ, typename T>
void forward_step(const LstmArgs<T>& p, const LstmFwdStep<T>& s) {
  const int64_t N = p.N;
  T* G = s.G;
  if (s.u) {  // post "drive": G holds h_{t-1} wh; the drive, then the inputs joined as u + h wh
    for (int64_t j = 0; j < N; ++j) G[4 * N + j] = G[2 * N + j] + s.q[j];
    for (int64_t k = 0; k < 4 * N; ++k) G[k] = s.u[k] + G[k];
  }
  for (int64_t j = 0; j < N; ++j) {
    const T i = sigmoid(G[j]), f = sigmoid(G[N + j]);
    const T g = tanh_(G[2 * N + j] + s.q[j]), o = sigmoid(G[3 * N + j]);
    G[j] = i;
    G[N + j] = f;
    G[2 * N + j] = g;
    G[3 * N + j] = o;
    const T c = f * s.cp[j] + i * g;
    s.co[j] = c;
    s.ho[j] = o * tanh_(c);
  }
  if constexpr (is_modulated(R)) {
    T z = p.mod_b;
    for (int64_t j = 0; j < N; ++j) z += s.ho[j] * p.mod_w[j];
    const T m = tanh_(z);
    *s.mod_out = m;
    modulation(p, m, s.mm);
  }
  const T* g = post_term(p, G, s.co, s.ho);
  if (s.need_q) zero(s.q, N);
  // One pass over the trace: row i is updated, then (still in L1) feeds the next step's plastic
  // term with h_t[i].
  for (int64_t i = 0; i < N; ++i) {
    T* Hr = s.H + i * N;
    T* Er = has_eligibility(R) ? s.E + i * N : nullptr;
    update_row<R, T>(p, s.hp[i], g, s.mm, Hr, Er, Hr, Er);
    if (s.need_q) {
      const T* Ar = p.A + i * p.a_stride;
      const T hn = s.ho[i];
      T* q = s.q;
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) q[j] += hn * Ar[j] * read_trace<READ>(p, Hr[j]);
    }
  }
}

// One step of the trace update out of place (the backward's recomputation).
template <Rule R, typename T>
void trace_step(const LstmArgs<T>& p, const T* hp, const T* g, const T* mm, const T* Hi,
                const T* Ei, T* Ho, T* Eo) {
  const int64_t N = p.N;
  for (int64_t i = 0; i < N; ++i) {
    const bool e = has_eligibility(R);
    update_row<R, T>(p, hp[i], g, mm, Hi + i * N, e ? Ei + i * N : nullptr, Ho + i * N,
                     e ? Eo + i * N : nullptr);
  }
}

template <Rule R, bool READ, typename T>
void backward_step(const LstmArgs<T>& p, const LstmBwdStep<T>& s) {
  const int64_t N = p.N;
  const T* g = s.y;  // the post-synaptic term of the trace update
  if constexpr (is_modulated(R)) modulation(p, s.m, s.mm);
  T* dpost = s.dpost;
  T* dmm = s.dmm;
  zero(dpost, N);
  zero(dmm, N);
  // 1. Through the trace update H_{t-1} -> H_t.
  T deta = 0;
  for (int64_t i = 0; i < N; ++i) {
    const T* Hr = s.Hp + i * N;
    T* dHr = s.dH + i * N;
    T dpre = 0;
    deta += rule_adjoint_row<R>(Hr, has_eligibility(R) ? s.Ep + i * N : nullptr, s.hp[i], g, s.mm,
                                p.eta, p.clip, dHr, has_eligibility(R) ? s.dE + i * N : nullptr,
                                &dpre, dpost, dmm, N);
    s.dpre[i] = dpre;
  }
  if constexpr (uses_eta(R)) *s.deta += deta;
  // 2. Through the neuromodulator m_t = tanh(h_t . mod_w + mod_b) and its fan-out.
  T dz = 0;
  if constexpr (is_modulated(R)) {
    T dm = 0;
    for (int64_t j = 0; j < N; ++j) {
      if (p.fan_w) {
        s.dfw[j] += dmm[j] * s.m;
        s.dfb[j] += dmm[j];
        dm += dmm[j] * p.fan_w[j];
      } else {
        dm += dmm[j];
      }
    }
    dz = dm * (T(1) - s.m * s.m);
    for (int64_t j = 0; j < N; ++j) s.dmw[j] += dz * s.hc[j];
    *s.dmb += dz;
  }
  // 3. Through the cell; the trace's adjoint of the post-synaptic term joins where that term is.
  const int post = p.post;
  for (int64_t j = 0; j < N; ++j) {
    T dh = s.dh_next[j] + (s.gh ? s.gh[j] : T(0));
    if constexpr (is_modulated(R)) dh += dz * p.mod_w[j];
    if (post == 3) dh += dpost[j];
    const T i = s.G[j], f = s.G[N + j], gg = s.G[2 * N + j], o = s.G[3 * N + j];
    const T tc = tanh_(s.cc[j]);
    T dc = s.dc[j] + (s.gc ? s.gc[j] : T(0)) + dh * o * (T(1) - tc * tc);
    if (post == 2) dc += dpost[j];
    const T dg = post == 0 ? dc * i + dpost[j] : dc * i;
    s.dc[j] = dc * f;
    s.du[j] = dc * gg * i * (T(1) - i);
    s.du[N + j] = dc * s.cp[j] * f * (T(1) - f);
    s.du[2 * N + j] = dg * (T(1) - gg * gg);
    s.du[3 * N + j] = dh * tc * o * (T(1) - o);
    if (post == 1) {  // the drive h_{t-1} wh_g + q reaches wh and h_{t-1}, not u
      s.dug[j] = s.du[2 * N + j];
      s.du[2 * N + j] += dpost[j];
    }
  }
  // 4. Through the plastic term h_{t-1} (alpha * H_{t-1}) of the candidate.
  const T* dag = s.du + 2 * N;
  for (int64_t i = 0; i < N; ++i) {
    const T* Hr = s.Hp + i * N;
    const T* Ar = p.A + i * p.a_stride;
    T* dAr = s.dA + i * p.a_stride;
    T* dHr = s.dH + i * N;
    const T pre = s.hp[i];
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < N; ++j) {
      const T x = dag[j] * read_trace<READ>(p, Hr[j]);
      acc += Ar[j] * x;
      dAr[j] += pre * x;
      if constexpr (READ) {
        // torch.clamp's gradient: passes within [-c, c], bounds included.
        dHr[j] += clamp_passes(Hr[j], p.read_clip) ? pre * Ar[j] * dag[j] : T(0);
      } else {
        dHr[j] += pre * Ar[j] * dag[j];
      }
    }
    s.dpre[i] += acc;
  }
}

// Not row_kernel.h's with_rule: this copy's `default:` label for Retro gives this kernel different
// machine code than the shared `case` form (and the reverse for plastic_rnn); both kept as
// measured.
template <Rule R>
struct RuleTag {
  static constexpr Rule value = R;
};

template <bool B>
struct ReadTag {
  static constexpr bool value = B;
};

// Calls f(RuleTag<r>{}, ReadTag<read>{}): one instantiation of the kernels per rule, and one
// more per clipped rule with the read-out clip (SPEC.md section 2.1).
template <typename F>
void with_rule(Rule r, bool read, F&& f) {
  constexpr ReadTag<false> upd{};
  constexpr ReadTag<true> rd{};
  switch (r) {
    case Rule::Hebb: return f(RuleTag<Rule::Hebb>{}, upd);
    case Rule::Oja: return f(RuleTag<Rule::Oja>{}, upd);
    case Rule::Clip: return read ? f(RuleTag<Rule::Clip>{}, rd) : f(RuleTag<Rule::Clip>{}, upd);
    case Rule::Neuromod:
      return read ? f(RuleTag<Rule::Neuromod>{}, rd) : f(RuleTag<Rule::Neuromod>{}, upd);
    case Rule::Gated: return f(RuleTag<Rule::Gated>{}, upd);
    default: return read ? f(RuleTag<Rule::Retro>{}, rd) : f(RuleTag<Rule::Retro>{}, upd);
  }
}

}  // namespace

#define HK_LSTM_ENTRY_POINTS(T)                                                            \
  void lstm_plastic_term(const LstmArgs<T>& p, const T* h, const T* H, T* q) {             \
    if (p.read)                                                                            \
      plastic_term<true>(p, h, H, q);                                                      \
    else                                                                                   \
      plastic_term<false>(p, h, H, q);                                                     \
  }                                                                                        \
  void lstm_forward_step(Rule r, const LstmArgs<T>& p, const LstmFwdStep<T>& s) {          \
    with_rule(r, p.read, [&](auto tag, auto rd) {                                          \
      forward_step<decltype(tag)::value, decltype(rd)::value, T>(p, s);                    \
    });                                                                                    \
  }                                                                                        \
  void lstm_trace_step(Rule r, const LstmArgs<T>& p, const T* hp, const T* g, const T* mm, \
                       const T* Hi, const T* Ei, T* Ho, T* Eo) {                           \
    with_rule(r, false, [&](auto tag, auto) {                                              \
      trace_step<decltype(tag)::value, T>(p, hp, g, mm, Hi, Ei, Ho, Eo);                   \
    });                                                                                    \
  }                                                                                        \
  void lstm_backward_step(Rule r, const LstmArgs<T>& p, const LstmBwdStep<T>& s) {         \
    with_rule(r, p.read, [&](auto tag, auto rd) {                                          \
      backward_step<decltype(tag)::value, decltype(rd)::value, T>(p, s);                   \
    });                                                                                    \
  }

HK_LSTM_ENTRY_POINTS(float)
HK_LSTM_ENTRY_POINTS(double)
#undef HK_LSTM_ENTRY_POINTS

}  // namespace HEBBKERN_CPU_ISA
}  // namespace cpu
}  // namespace hebbkern

HEBBKERN_CPU_ISA_END
