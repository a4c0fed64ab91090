// Body of the CPU plastic_rnn kernels, compiled once per instruction set.
//
// Included only by plastic_rnn_isa_*.cpp, after they select a target ISA and define
// HEBBKERN_CPU_ISA (the namespace of the entry points). Everything here has internal linkage and
// uses no library templates, so the copies built for different ISAs never get merged by the linker.
//
// Work layout: samples are independent, so the caller splits the batch over threads and each thread
// runs the whole time loop of a sample with its [N, N] trace hot in cache. Inner loops run over the
// post-synaptic index j (contiguous) and are written for the vectoriser.
//
// Forward: ONE pass over the trace per step. Row i first receives the pending update of step t-1
// (which needed all of h_{t-1}), then feeds step t's mat-vec.
//
// Backward: the forward saved the trace every K steps. Per chunk (last to first) the K traces are
// recomputed into scratch, then the steps are walked backwards. Each step's pass over the rows
// fuses the mat-vec adjoint of step t (pass B) with the trace-update adjoint of step t-1 (pass A),
// so the adjoint of the trace is read and written once per step.
#ifndef HEBBKERN_CPU_ISA
#error "define HEBBKERN_CPU_ISA before including plastic_rnn_kernel.h"
#endif

#include <cmath>
#include <cstring>

#include "plastic_rnn_kernel_args.h"

namespace hebbkern {
namespace cpu {
namespace HEBBKERN_CPU_ISA {
namespace {

template <typename T>
inline void fill_zero(T* x, int64_t n) {
  std::memset(x, 0, sizeof(T) * n);
}

template <typename T>
inline void copy(T* dst, const T* src, int64_t n) {
  std::memcpy(dst, src, sizeof(T) * n);
}

// m_t[j] = fanout_w[j] * s + fanout_b[j] (or s without fan-out).
template <typename T>
inline void fanout(const RnnArgs<T>& p, T s, T* M) {
  if (p.fan_w) {
    for (int64_t j = 0; j < p.N; ++j) M[j] = p.fan_w[j] * s + p.fan_b[j];
  } else {
    for (int64_t j = 0; j < p.N; ++j) M[j] = s;
  }
}

// Applies one step's trace update to one row (pre-synaptic neuron) of the trace.
template <Rule R, typename T>
inline void update_row(T* __restrict__ H, T* __restrict__ E, T pre, const T* __restrict__ post,
                       const T* __restrict__ M, T eta, T clip, int64_t N) {
  if constexpr (has_eligibility(R)) {
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) trace_forward<R>(H[j], E[j], pre, post[j], M[j], eta, clip);
  } else {
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) {
      T unused = T(0);
      trace_forward<R>(H[j], unused, pre, post[j], M[j], eta, clip);
    }
  }
}

// Samples of one group advance in lockstep, so each row of w and alpha is loaded into L1 once per
// group and step instead of once per sample: the shared weights cost 2 N^2 / G loads per sample and
// step instead of 2 N^2 (the trace itself still costs a read and a write).
template <typename T>
struct FwdLane {
  T* H;          // trace, updated in place (in the hebb_T output)
  T* E;          // eligibility (retro)
  const T* hp;   // h_{t-1}
  const T* hpp;  // h_{t-2}: pre of the pending update
  T* acc;        // a_t
  T* M;          // m_{t-1} per post neuron (the pending update's modulation)
};

template <Rule R, typename T>
void forward_group(const RnnArgs<T>& p, const FwdOutPtrs<T>& o, int64_t b0, int64_t g, T* scratch) {
  constexpr bool kElig = has_eligibility(R);
  const int64_t N = p.N, NN = N * N, B = p.B;
  T* zeros = scratch;
  fill_zero(zeros, N);
  FwdLane<T> lane[kMaxGroup];
  for (int64_t s = 0; s < g; ++s) {
    const int64_t b = b0 + s;
    FwdLane<T>& L = lane[s];
    L.acc = scratch + (1 + 2 * s) * N;
    L.M = L.acc + N;
    fill_zero(L.M, N);
    L.H = o.hebb_T + b * NN;
    L.E = kElig ? o.elig_T + b * NN : nullptr;
    if (p.hebb0)
      copy(L.H, p.hebb0 + b * NN, NN);
    else
      fill_zero(L.H, NN);
    if constexpr (kElig) {
      if (p.elig0)
        copy(L.E, p.elig0 + b * NN, NN);
      else
        fill_zero(L.E, NN);
    }
    L.hp = p.h0 ? p.h0 + b * N : zeros;
    L.hpp = nullptr;
  }

  for (int64_t t = 0; t < p.T_; ++t) {
    const bool ck = (t % p.K) == 0;
    const int64_t ck_base = (t / p.K) * B;
    for (int64_t s = 0; s < g; ++s) copy(lane[s].acc, p.u + (t * B + b0 + s) * N, N);
    for (int64_t i = 0; i < N; ++i) {
      const T* __restrict__ wrow = p.w + i * N;
      const T* __restrict__ Arow = p.A + i * p.a_stride;
      for (int64_t s = 0; s < g; ++s) {
        FwdLane<T>& L = lane[s];
        T* Hrow = L.H + i * N;
        T* Erow = kElig ? L.E + i * N : nullptr;
        if (L.hpp) update_row<R>(Hrow, Erow, L.hpp[i], L.hp, L.M, p.eta, p.clip, N);
        if (ck) {
          copy(o.ck_h + (ck_base + b0 + s) * NN + i * N, Hrow, N);
          if constexpr (kElig) copy(o.ck_e + (ck_base + b0 + s) * NN + i * N, Erow, N);
        }
        const T x = L.hp[i];
        T* __restrict__ acc = L.acc;
        const T* __restrict__ Hr = Hrow;
#pragma omp simd
        for (int64_t j = 0; j < N; ++j) acc[j] += x * (wrow[j] + Arow[j] * Hr[j]);
      }
    }
    for (int64_t s = 0; s < g; ++s) {
      FwdLane<T>& L = lane[s];
      const int64_t row = t * B + b0 + s;
      const T* u_t = p.u + row * N;
      T* h_t = o.h + row * N;
      const bool* c_t = p.clamp ? p.clamp + row * N : nullptr;
      for (int64_t j = 0; j < N; ++j) {
        const T y = std::tanh(L.acc[j]);
        h_t[j] = (c_t && c_t[j]) ? u_t[j] : y;
      }
      if constexpr (is_modulated(R)) {
        T z = p.mod_b;
        for (int64_t j = 0; j < N; ++j) z += h_t[j] * p.mod_w[j];
        const T m = std::tanh(z);
        o.mod[row] = m;
        fanout(p, m, L.M);
      }
      L.hpp = L.hp;
      L.hp = h_t;
    }
  }
  for (int64_t s = 0; s < g; ++s) {
    FwdLane<T>& L = lane[s];
    for (int64_t i = 0; i < N; ++i)
      update_row<R>(L.H + i * N, kElig ? L.E + i * N : nullptr, L.hpp[i], L.hp, L.M, p.eta, p.clip,
                    N);
  }
}

// Per-sample backward state: adjoint vectors of h_t, h_{t-1}, h_{t-2}, rotated after each step.
template <typename T>
struct Adjoints {
  T* cur;    // adjoint of h_t
  T* prev;   // adjoint of h_{t-1}
  T* prev2;  // adjoint of h_{t-2}
  T* dM;     // adjoint of m_t
  T* dMp;    // adjoint of m_{t-1}
  void rotate(int64_t N) {
    T* c = cur;
    cur = prev;
    prev = prev2;
    prev2 = c;
    fill_zero(prev2, N);
    T* m = dM;
    dM = dMp;
    dMp = m;
    fill_zero(dMp, N);
  }
};

// Adjoint of step t's trace update for one row, in place on (dH, dE). Adds dpre to *pre_adj, dpost
// to post_adj[j], dmod to dM[j]; returns the row's contribution to d eta.
template <Rule R, typename T>
inline T rule_adjoint_row(const T* __restrict__ Hrow, const T* __restrict__ Erow, T pre,
                          const T* __restrict__ post, const T* __restrict__ M, T eta, T clip,
                          T* __restrict__ dHrow, T* __restrict__ dErow, T* pre_adj,
                          T* __restrict__ post_adj, T* __restrict__ dM, int64_t N) {
  T dpre = 0, deta = 0;
  if constexpr (has_eligibility(R)) {
#pragma omp simd reduction(+ : dpre, deta)
    for (int64_t j = 0; j < N; ++j) {
      const TraceGrad<T> g =
          trace_backward<R>(Hrow[j], Erow[j], pre, post[j], M[j], eta, clip, dHrow[j], dErow[j]);
      dpre += g.d_pre;
      post_adj[j] += g.d_post;
      dM[j] += g.d_mod;
      deta += g.d_eta;
    }
  } else {
#pragma omp simd reduction(+ : dpre, deta)
    for (int64_t j = 0; j < N; ++j) {
      T unused = T(0);
      const TraceGrad<T> g =
          trace_backward<R>(Hrow[j], T(0), pre, post[j], M[j], eta, clip, dHrow[j], unused);
      dpre += g.d_pre;
      post_adj[j] += g.d_post;
      if constexpr (is_modulated(R)) dM[j] += g.d_mod;
      deta += g.d_eta;
    }
  }
  *pre_adj += dpre;
  return deta;
}

// Adjoint of a_t = u_t + h_{t-1} (w + A * H_{t-1}) for one row: adds to dH and dA, returns the
// row's contribution to the adjoint of h_{t-1}[i].
template <typename T>
inline T matvec_adjoint_row(const T* __restrict__ Hrow, const T* __restrict__ wrow,
                            const T* __restrict__ Arow, T x, const T* __restrict__ da,
                            T* __restrict__ dHrow, T* __restrict__ dArow, int64_t N) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < N; ++j) {
    const T xd = x * da[j];
    dHrow[j] += Arow[j] * xd;
    dArow[j] += xd * Hrow[j];
    acc += (wrow[j] + Arow[j] * Hrow[j]) * da[j];
  }
  return acc;
}

// One sample's state in the backward pass of a group.
template <typename T>
struct BwdLane {
  int64_t b;
  T* Hbuf;  // traces before each step of the current chunk, [K, N, N]
  T* Ebuf;  // eligibility traces (retro)
  T* dH;    // adjoint of the trace, walked back in place to d hebb0
  T* dE;    // adjoint of the eligibility (retro)
  Adjoints<T> adj;
  T* M;   // m_t
  T* Mp;  // m_{t-1}
  T* da;  // adjoint of a_t
  T deta, dmb;
  T* dmw;
  T* dfw;
  T* dfb;
  const T* h0;
};

// Backward of one group of samples, which share the accumulator of d alpha (dA) and step in
// lockstep so each row of w, alpha and dA is touched once per group and step.
template <Rule R, typename T>
void backward_group(const RnnArgs<T>& p, const BwdInPtrs<T>& in, const BwdOutPtrs<T>& o, int64_t b0,
                    int64_t g, T* dA, T* scratch) {
  constexpr bool kElig = has_eligibility(R);
  constexpr bool kMod = is_modulated(R);
  const int64_t N = p.N, NN = N * N, B = p.B, T_ = p.T_, K = p.K;
  T* zeros = scratch;
  fill_zero(zeros, N);
  BwdLane<T> lane[kMaxGroup];
  for (int64_t s = 0; s < g; ++s) {
    BwdLane<T>& L = lane[s];
    const int64_t b = b0 + s;
    L.b = b;
    L.Hbuf = scratch + N + s * backward_scratch_size(N, K, kElig);
    L.Ebuf = L.Hbuf + K * NN;
    T* v = L.Ebuf + (kElig ? K * NN : 0);
    fill_zero(v, 9 * N);
    L.adj = Adjoints<T>{v, v + N, v + 2 * N, v + 3 * N, v + 4 * N};
    L.M = v + 5 * N;
    L.Mp = v + 6 * N;
    L.da = v + 7 * N;
    L.dH = o.dH0 + b * NN;
    L.dE = kElig ? o.dE0 + b * NN : nullptr;
    if (in.gH)
      copy(L.dH, in.gH + b * NN, NN);
    else
      fill_zero(L.dH, NN);
    if constexpr (kElig) {
      if (in.gE)
        copy(L.dE, in.gE + b * NN, NN);
      else
        fill_zero(L.dE, NN);
    }
    L.deta = L.dmb = T(0);
    L.dmw = kMod ? o.dmw + b * N : nullptr;
    L.dfw = o.dfw ? o.dfw + b * N : nullptr;
    L.dfb = o.dfb ? o.dfb + b * N : nullptr;
    L.h0 = p.h0 ? p.h0 + b * N : zeros;
  }
  auto h_at = [&](const BwdLane<T>& L, int64_t t) -> const T* {
    return t < 0 ? L.h0 : in.h + (t * B + L.b) * N;
  };
  auto mod_at = [&](const BwdLane<T>& L, int64_t t, T* out) {
    if constexpr (kMod) fanout(p, in.mod[t * B + L.b], out);
  };

  const int64_t n_chunks = (T_ + K - 1) / K;
  for (int64_t c = n_chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * K, t1 = (t0 + K < T_) ? t0 + K : T_;
    for (int64_t s = 0; s < g; ++s) {
      BwdLane<T>& L = lane[s];
      // Recompute the traces before steps t0 .. t1-1 from the chunk's checkpoint.
      copy(L.Hbuf, in.ck_h + (c * B + L.b) * NN, NN);
      if constexpr (kElig) copy(L.Ebuf, in.ck_e + (c * B + L.b) * NN, NN);
      for (int64_t t = t0; t < t1 - 1; ++t) {
        const int64_t k = t - t0;
        mod_at(L, t, L.M);
        const T* pre = h_at(L, t - 1);
        const T* post = h_at(L, t);
        for (int64_t i = 0; i < N; ++i) {
          T* Hn = L.Hbuf + (k + 1) * NN + i * N;
          T* En = kElig ? L.Ebuf + (k + 1) * NN + i * N : nullptr;
          copy(Hn, L.Hbuf + k * NN + i * N, N);
          if constexpr (kElig) copy(En, L.Ebuf + k * NN + i * N, N);
          update_row<R>(Hn, En, pre[i], post, L.M, p.eta, p.clip, N);
        }
      }
      // The chunk's last step: its trace-update adjoint cannot be fused with the step after it
      // (that one lives in the next chunk), so it runs on its own.
      const int64_t t = t1 - 1, k = t - t0;
      mod_at(L, t, L.M);
      const T* hp = h_at(L, t - 1);
      const T* hc = h_at(L, t);
      for (int64_t i = 0; i < N; ++i) {
        L.deta += rule_adjoint_row<R>(L.Hbuf + k * NN + i * N,
                                      kElig ? L.Ebuf + k * NN + i * N : nullptr, hp[i], hc, L.M,
                                      p.eta, p.clip, L.dH + i * N, kElig ? L.dE + i * N : nullptr,
                                      L.adj.prev + i, L.adj.cur, L.adj.dM, N);
      }
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t k = t - t0;
      for (int64_t s = 0; s < g; ++s) {
        BwdLane<T>& L = lane[s];
        const int64_t row = t * B + L.b;
        const T* hc = h_at(L, t);
        // Complete the adjoint of h_t: output gradient and the neuromodulator.
        if (in.gh) {
          const T* gr = in.gh + row * N;
          for (int64_t j = 0; j < N; ++j) L.adj.cur[j] += gr[j];
        }
        if constexpr (kMod) {
          const T m = in.mod[row];
          T ds = 0;
          for (int64_t j = 0; j < N; ++j) ds += p.fan_w ? L.adj.dM[j] * p.fan_w[j] : L.adj.dM[j];
          if (L.dfw) {
            for (int64_t j = 0; j < N; ++j) {
              L.dfw[j] += L.adj.dM[j] * m;
              L.dfb[j] += L.adj.dM[j];
            }
          }
          const T dz = ds * (T(1) - m * m);
          L.dmb += dz;
          for (int64_t j = 0; j < N; ++j) {
            L.adj.cur[j] += dz * p.mod_w[j];
            L.dmw[j] += dz * hc[j];
          }
        }
        // Through h_t = clamp ? u_t : tanh(a_t).
        const bool* c_t = p.clamp ? p.clamp + row * N : nullptr;
        T* du_t = o.du + row * N;
        T* da_t = o.da + row * N;
        for (int64_t j = 0; j < N; ++j) {
          const bool clamped = c_t && c_t[j];
          L.da[j] = clamped ? T(0) : L.adj.cur[j] * (T(1) - hc[j] * hc[j]);
          du_t[j] = clamped ? L.adj.cur[j] : L.da[j];
          da_t[j] = L.da[j];
        }
        if (t > t0) mod_at(L, t - 1, L.Mp);
      }
      // One pass over the rows: the mat-vec adjoint of step t, then (inside the chunk) the
      // trace-update adjoint of step t-1, for every sample of the group.
      const bool fuse = t > t0;
      for (int64_t i = 0; i < N; ++i) {
        const T* wrow = p.w + i * N;
        const T* Arow = p.A + i * p.a_stride;
        T* dArow = dA + i * p.a_stride;
        for (int64_t s = 0; s < g; ++s) {
          BwdLane<T>& L = lane[s];
          const T* hp = h_at(L, t - 1);
          L.adj.prev[i] += matvec_adjoint_row(L.Hbuf + k * NN + i * N, wrow, Arow, hp[i], L.da,
                                              L.dH + i * N, dArow, N);
          if (fuse) {
            const T* hpp = h_at(L, t - 2);
            L.deta += rule_adjoint_row<R>(
                L.Hbuf + (k - 1) * NN + i * N, kElig ? L.Ebuf + (k - 1) * NN + i * N : nullptr,
                hpp[i], hp, L.Mp, p.eta, p.clip, L.dH + i * N, kElig ? L.dE + i * N : nullptr,
                L.adj.prev2 + i, L.adj.prev, L.adj.dMp, N);
          }
        }
      }
      for (int64_t s = 0; s < g; ++s) lane[s].adj.rotate(N);
    }
  }
  for (int64_t s = 0; s < g; ++s) {
    const BwdLane<T>& L = lane[s];
    copy(o.dh0 + L.b * N, L.adj.cur, N);
    o.deta[L.b] = L.deta;
    if (o.dmb) o.dmb[L.b] = L.dmb;
  }
}

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

// [b0, b1) is one group of at most kMaxGroup samples (the caller forms the groups).
template <typename T>
void forward_range(Rule r, const RnnArgs<T>& p, const FwdOutPtrs<T>& o, int64_t b0, int64_t b1,
                   T* scratch) {
  with_rule(r, [&](auto tag) {
    constexpr Rule R = decltype(tag)::value;
    forward_group<R, T>(p, o, b0, b1 - b0, scratch);
  });
}

template <typename T>
void backward_range(Rule r, const RnnArgs<T>& p, const BwdInPtrs<T>& in, const BwdOutPtrs<T>& o,
                    int64_t b0, int64_t b1, T* dA, T* scratch) {
  with_rule(r, [&](auto tag) {
    constexpr Rule R = decltype(tag)::value;
    backward_group<R, T>(p, in, o, b0, b1 - b0, dA, scratch);
  });
}

}  // namespace

void forward(Rule r, const RnnArgs<float>& p, const FwdOutPtrs<float>& o, int64_t b0, int64_t b1,
             float* scratch) {
  forward_range(r, p, o, b0, b1, scratch);
}
void forward(Rule r, const RnnArgs<double>& p, const FwdOutPtrs<double>& o, int64_t b0, int64_t b1,
             double* scratch) {
  forward_range(r, p, o, b0, b1, scratch);
}
void backward(Rule r, const RnnArgs<float>& p, const BwdInPtrs<float>& in,
              const BwdOutPtrs<float>& o, int64_t b0, int64_t b1, float* dA, float* scratch) {
  backward_range(r, p, in, o, b0, b1, dA, scratch);
}
void backward(Rule r, const RnnArgs<double>& p, const BwdInPtrs<double>& in,
              const BwdOutPtrs<double>& o, int64_t b0, int64_t b1, double* dA, double* scratch) {
  backward_range(r, p, in, o, b0, b1, dA, scratch);
}

}  // namespace HEBBKERN_CPU_ISA
}  // namespace cpu
}  // namespace hebbkern
