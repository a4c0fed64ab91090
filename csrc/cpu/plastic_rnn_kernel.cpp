// Body of the CPU plastic_rnn kernels, compiled once per instruction set.
//
// The build compiles this file once per instruction set (isa_target.h defines HEBBKERN_CPU_ISA,
// the namespace of the entry points). Everything here has internal linkage and
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
#include <cmath>
#include <cstring>

#include "plastic_rnn_kernel_args.h"
#include "vec_math.h"

// Everything below is compiled for this compilation's instruction set (isa_target.h).
#include "isa_target.h"
#include "row_kernel.h"

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

// dst = src[offset : offset + n], or zeros when the optional input src is absent.
template <typename T>
inline void copy_or_zero(T* dst, const T* src, int64_t offset, int64_t n) {
  if (src)
    copy(dst, src + offset, n);
  else
    fill_zero(dst, n);
}

// h_t = tanh(a_t) (or f(a_t), SPEC.md section 1.1), or u_t where the clamp mask is set.
template <typename T>
inline void activation(const T* __restrict__ a, const T* __restrict__ u, const bool* __restrict__ c,
                       T* __restrict__ h, int64_t N, int act) {
  if (act != 0) {
    activation_other(act, a, u, c, h, N);
  } else if (c) {
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) {
      const T y = tanh_any(a[j]);
      h[j] = c[j] ? u[j] : y;
    }
  } else {
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) h[j] = tanh_any(a[j]);
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

template <Rule R, typename T>
void forward_sample(const RnnArgs<T>& batch_args, const FwdOutPtrs<T>& o, int64_t b, T* scratch) {
  const RnnArgs<T> p = sample_args(batch_args, b);
  constexpr bool kElig = has_eligibility(R);
  const int64_t N = p.N, NN = N * N, B = p.B;
  T* acc = scratch;  // a_t
  T* M = acc + N;    // m_t per post neuron
  T* zeros = M + N;
  fill_zero(M, N);
  fill_zero(zeros, N);
  T* H = o.hebb_T + b * NN;  // the trace, updated in place
  T* E = kElig ? o.elig_T + b * NN : nullptr;
  copy_or_zero(H, p.hebb0, b * NN, NN);
  if constexpr (kElig) copy_or_zero(E, p.elig0, b * NN, NN);
  const T* hprev = p.h0 ? p.h0 + b * N : zeros;  // h_{t-1}
  const T* hpp = nullptr;                        // h_{t-2}: pre of the pending update

  for (int64_t t = 0; t < p.T_; ++t) {
    const bool ck = (t % p.K) == 0;
    T* ckH = ck ? o.ck_h + ((t / p.K) * B + b) * NN : nullptr;
    T* ckE = (ck && kElig) ? o.ck_e + ((t / p.K) * B + b) * NN : nullptr;
    const T* u_t = p.u + (t * B + b) * N;
    copy(acc, u_t, N);
    for (int64_t i = 0; i < N; ++i) {
      T* Hrow = H + i * N;
      T* Erow = kElig ? E + i * N : nullptr;
      if (hpp) update_row<R>(Hrow, Erow, hpp[i], hprev, M, p.eta, p.clip, N);
      if (ckH) {
        copy(ckH + i * N, Hrow, N);
        if (ckE) copy(ckE + i * N, Erow, N);
      }
      const T x = hprev[i];
      const T* __restrict__ wrow = p.w + i * N;
      const T* __restrict__ Arow = p.A + i * p.a_stride;
      const T* __restrict__ Hr = Hrow;
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) acc[j] += x * (wrow[j] + Arow[j] * Hr[j]);
    }
    T* h_t = o.h + (t * B + b) * N;
    activation(acc, u_t, p.clamp ? p.clamp + (t * B + b) * N : nullptr, h_t, N, p.act);
    if constexpr (is_modulated(R)) {
      T z = p.mod_b;
      for (int64_t j = 0; j < N; ++j) z += h_t[j] * p.mod_w[j];
      const T s = squash_forward(p.squash, z);
      o.mod[t * B + b] = s;
      fanout(p, s, M);
    }
    hpp = hprev;
    hprev = h_t;
  }
  for (int64_t i = 0; i < N; ++i)
    update_row<R>(H + i * N, kElig ? E + i * N : nullptr, hpp[i], hprev, M, p.eta, p.clip, N);
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

template <Rule R, typename T>
void backward_sample(const RnnArgs<T>& batch_args, const BwdInPtrs<T>& in, const BwdOutPtrs<T>& o,
                     int64_t b, T* scratch) {
  const RnnArgs<T> p = sample_args(batch_args, b);
  constexpr bool kElig = has_eligibility(R);
  constexpr bool kMod = is_modulated(R);
  const int64_t N = p.N, NN = N * N, B = p.B, T_ = p.T_, K = p.K;
  T* Hbuf = scratch;  // traces before each step of the current chunk
  T* Ebuf = Hbuf + K * NN;
  T* v = Ebuf + (kElig ? K * NN : 0);
  Adjoints<T> adj{v, v + N, v + 2 * N, v + 3 * N, v + 4 * N};
  T* M = v + 5 * N;   // m_t
  T* Mp = v + 6 * N;  // m_{t-1}
  T* da = v + 7 * N;  // adjoint of a_t
  T* zeros = v + 8 * N;
  fill_zero(v, 9 * N);

  T* dH = o.dH0 + b * NN;  // adjoint of the trace, walked back in place to d hebb0
  T* dE = kElig ? o.dE0 + b * NN : nullptr;
  copy_or_zero(dH, in.gH, b * NN, NN);
  if constexpr (kElig) copy_or_zero(dE, in.gE, b * NN, NN);
  T* dA = o.dA + b * (p.a_stride ? NN : N);  // this sample's d alpha: [N, N] or one [N] row
  T deta = 0, dmb = 0;
  T* dmw = kMod ? o.dmw + b * N : nullptr;
  T* dfw = o.dfw ? o.dfw + b * N : nullptr;
  T* dfb = o.dfb ? o.dfb + b * N : nullptr;
  const T* h0 = p.h0 ? p.h0 + b * N : zeros;
  auto h_at = [&](int64_t t) -> const T* { return t < 0 ? h0 : in.h + (t * B + b) * N; };
  auto mod_at = [&](int64_t t, T* out) {
    if constexpr (kMod) fanout(p, in.mod[t * B + b], out);
  };

  const int64_t n_chunks = (T_ + K - 1) / K;
  for (int64_t c = n_chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * K, t1 = (t0 + K < T_) ? t0 + K : T_;
    // Recompute the traces before steps t0 .. t1-1 from the chunk's checkpoint.
    copy(Hbuf, in.ck_h + (c * B + b) * NN, NN);
    if constexpr (kElig) copy(Ebuf, in.ck_e + (c * B + b) * NN, NN);
    for (int64_t t = t0; t < t1 - 1; ++t) {
      const int64_t k = t - t0;
      mod_at(t, M);
      const T* pre = h_at(t - 1);
      const T* post = h_at(t);
      for (int64_t i = 0; i < N; ++i) {
        T* Hn = Hbuf + (k + 1) * NN + i * N;
        T* En = kElig ? Ebuf + (k + 1) * NN + i * N : nullptr;
        copy(Hn, Hbuf + k * NN + i * N, N);
        if constexpr (kElig) copy(En, Ebuf + k * NN + i * N, N);
        update_row<R>(Hn, En, pre[i], post, M, p.eta, p.clip, N);
      }
    }
    // The last step of the chunk: its trace-update adjoint could not be fused with the step after
    // it (that one lives in the next chunk), so it runs on its own.
    {
      const int64_t t = t1 - 1, k = t - t0;
      mod_at(t, M);
      const T* hp = h_at(t - 1);
      const T* hc = h_at(t);
      for (int64_t i = 0; i < N; ++i) {
        deta += rule_adjoint_row<R>(Hbuf + k * NN + i * N, kElig ? Ebuf + k * NN + i * N : nullptr,
                                    hp[i], hc, M, p.eta, p.clip, dH + i * N,
                                    kElig ? dE + i * N : nullptr, adj.prev + i, adj.cur, adj.dM, N);
      }
    }
    // The same walk as plastic_rnn_block.h's backward, kept apart: there warps share rows and
    // column partials; here one thread owns the sample and fuses the passes row by row.
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t k = t - t0;
      const T* hc = h_at(t);
      const T* hp = h_at(t - 1);
      // Complete the adjoint of h_t: output gradient and the neuromodulator.
      if (in.gh) {
        const T* g = in.gh + (t * B + b) * N;
        for (int64_t j = 0; j < N; ++j) adj.cur[j] += g[j];
      }
      if constexpr (kMod) {
        const T s = in.mod[t * B + b];
        const T dz = modulator_adjoint(p, s, adj.dM, dfw, dfb, &deta);
        dmb += dz;
        for (int64_t j = 0; j < N; ++j) {
          adj.cur[j] += dz * p.mod_w[j];
          dmw[j] += dz * hc[j];
        }
      }
      // Through h_t = clamp ? u_t : tanh(a_t).
      const bool* c_t = p.clamp ? p.clamp + (t * B + b) * N : nullptr;
      T* du_t = o.du + (t * B + b) * N;
      T* da_t = o.da + (t * B + b) * N;
      for (int64_t j = 0; j < N; ++j) {
        const bool clamped = c_t && c_t[j];
        da[j] = clamped ? T(0) : adj.cur[j] * act_grad_from_output(p.act, hc[j]);
        du_t[j] = clamped ? adj.cur[j] : da[j];
        da_t[j] = da[j];
      }
      const T* Hp = Hbuf + k * NN;
      if (t > t0) {
        // Fused pass: mat-vec adjoint of step t, then trace-update adjoint of step t-1, row by row.
        const T* Hpp = Hbuf + (k - 1) * NN;
        const T* Epp = kElig ? Ebuf + (k - 1) * NN : nullptr;
        const T* hpp = h_at(t - 2);
        mod_at(t - 1, Mp);
        for (int64_t i = 0; i < N; ++i) {
          adj.prev[i] += matvec_adjoint_row(Hp + i * N, p.w + i * N, p.A + i * p.a_stride, hp[i],
                                            da, dH + i * N, dA + i * p.a_stride, N);
          deta += rule_adjoint_row<R>(Hpp + i * N, kElig ? Epp + i * N : nullptr, hpp[i], hp, Mp,
                                      p.eta, p.clip, dH + i * N, kElig ? dE + i * N : nullptr,
                                      adj.prev2 + i, adj.prev, adj.dMp, N);
        }
      } else {
        for (int64_t i = 0; i < N; ++i)
          adj.prev[i] += matvec_adjoint_row(Hp + i * N, p.w + i * N, p.A + i * p.a_stride, hp[i],
                                            da, dH + i * N, dA + i * p.a_stride, N);
      }
      adj.rotate(N);
    }
  }
  copy(o.dh0 + b * N, adj.cur, N);
  o.deta[b] = deta;
  if (o.dmb) o.dmb[b] = dmb;
}

template <typename T>
void forward_range(Rule r, const RnnArgs<T>& p, const FwdOutPtrs<T>& o, int64_t b0, int64_t b1,
                   T* scratch) {
  with_rule(r, [&](auto tag) {
    constexpr Rule R = decltype(tag)::value;
    for (int64_t b = b0; b < b1; ++b) forward_sample<R, T>(p, o, b, scratch);
  });
}

template <typename T>
void backward_range(Rule r, const RnnArgs<T>& p, const BwdInPtrs<T>& in, const BwdOutPtrs<T>& o,
                    int64_t b0, int64_t b1, T* scratch) {
  with_rule(r, [&](auto tag) {
    constexpr Rule R = decltype(tag)::value;
    for (int64_t b = b0; b < b1; ++b) backward_sample<R, T>(p, in, o, b, scratch);
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
              const BwdOutPtrs<float>& o, int64_t b0, int64_t b1, float* scratch) {
  backward_range(r, p, in, o, b0, b1, scratch);
}
void backward(Rule r, const RnnArgs<double>& p, const BwdInPtrs<double>& in,
              const BwdOutPtrs<double>& o, int64_t b0, int64_t b1, double* scratch) {
  backward_range(r, p, in, o, b0, b1, scratch);
}

}  // namespace HEBBKERN_CPU_ISA
}  // namespace cpu
}  // namespace hebbkern

HEBBKERN_CPU_ISA_END
