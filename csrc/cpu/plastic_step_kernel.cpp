// Body of the CPU plastic_step kernels (one step of SPEC.md section 1), compiled once per
// instruction set by the build (isa_target.h defines HEBBKERN_CPU_ISA). Internal linkage only, as
// in plastic_rnn_kernel.cpp, so the per-ISA copies never get merged by the linker.
//
// Work layout: the step of one sample is cut into phases over row ranges (StepPhase), so that the
// caller can hand a whole sample to one thread (the batch split) or, when the batch is smaller
// than the thread count, cut one sample's rows into fixed chunks (the row split). A phase that
// reduces across rows writes one partial [N] vector per chunk (`col`), which the caller sums in
// chunk order: the result depends on the chunk sizes (fixed by the shape), never on the threads.
// Within a sample the trace is read by the mat-vec and then, while still in cache, by the update
// that writes the new trace. A single step cannot fold the update into the mat-vec as plastic_rnn
// does (the update of a row needs all of h_t, which needs every row).
//
// Layouts (template parameter PP): pre_post stores w, alpha and the trace [pre, post], so a row is
// one pre-synaptic neuron and the mat-vec sums rows into a vector (axpy); post_pre (Backpropamine's
// batched code) stores them [post, pre], so a row is one post-synaptic neuron and the mat-vec is a
// dot product over the contiguous row. Both read the trace where it lies: no transposed copy.
//
// Backward, per sample: pass A (BwdTrace) runs the trace-update adjoint over the rows (it yields
// the adjoints of h_t and m_t, which the drive's adjoint needs), pass B (BwdMatvec) the mat-vec
// adjoint.
#include <cmath>
#include <cstring>
#include <type_traits>

#include "plastic_step_kernel_args.h"
#include "vec_math.h"

// Everything below is compiled for this compilation's instruction set (isa_target.h).
#include "isa_target.h"
#include "lanes.h"
#include "row_kernel.h"

namespace hebbkern {
namespace cpu {
namespace HEBBKERN_CPU_ISA {
namespace {

// a_t partial of rows [r0, r1). pre_post: col[j] = sum_i h[i] (w + alpha H)[i, j] over the rows
// (a partial sum); post_pre: col[j] = the whole sum for the rows j themselves.
template <bool PP, typename T>
void fwd_matvec(const StepArgs<T>& p, int64_t b, int64_t r0, int64_t r1, T* col) {
  const int64_t N = p.N, NN = N * N;
  const T* h = p.h + b * N;
  const T* H = p.hebb + b * NN;
  const T* w = p.w + b * p.w_bstride;
  const T* A = p.A + b * p.a_bstride;
  if constexpr (!PP) {
    std::memset(col, 0, sizeof(T) * N);
    for (int64_t i = r0; i < r1; ++i) {
      const T x = h[i];
      const T* __restrict__ wrow = w + i * N;
      const T* __restrict__ Arow = A + i * p.a_stride;
      const T* __restrict__ Hrow = H + i * N;
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) col[j] += x * (wrow[j] + Arow[j] * Hrow[j]);
    }
  } else {
    for (int64_t j = r0; j < r1; ++j) {
      const T* __restrict__ wrow = w + j * N;
      const T* __restrict__ Arow = A + j * p.a_stride;
      const T* __restrict__ Hrow = H + j * N;
      col[j] = lane_sum<T>(
          N, [&](int64_t i) HK_VEC_LAMBDA { return h[i] * (wrow[i] + Arow[i] * Hrow[i]); });
    }
  }
}

// h_t from the drive a (u_t already added), the neuromodulator and m_t (M).
template <Rule R, typename T>
void fwd_finish(const StepArgs<T>& p, const StepFwdOut<T>& o, int64_t b, const T* a, T* M) {
  const int64_t N = p.N;
  const T* u = p.u + b * N;
  T* __restrict__ hn = o.h_new + b * N;
  const bool* c = p.clamp ? p.clamp + b * N : nullptr;
  if (p.act != 0) {
    activation_other(p.act, a, u, c, hn, N);
  } else {
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) {
      const T y = tanh_any(a[j]);
      hn[j] = (c && c[j]) ? u[j] : y;
    }
  }
  if constexpr (is_modulated(R)) {
    T z = p.mod_b;
    for (int64_t j = 0; j < N; ++j) z += hn[j] * p.mod_w[j];
    const T s = squash_forward(p.squash, z);
    o.mod[b] = s;
    fanout(p, s, M);
  } else {
    std::memset(M, 0, sizeof(T) * N);
  }
}

// Sample b's h_{t-1}, H_{t-1} and (rules with eligibility) E_{t-1}, read by the trace passes.
// Each pass keeps its own output pointers: they are different arrays (new traces, adjoints).
template <typename T>
struct TraceInputs {
  const T* h;
  const T* H;
  const T* E;
};

template <bool ELIG, typename T>
inline TraceInputs<T> trace_inputs(const StepArgs<T>& p, int64_t b) {
  const int64_t N = p.N, NN = N * N;
  return {p.h + b * N, p.hebb + b * NN, ELIG ? p.elig + b * NN : nullptr};
}

// The new trace (and eligibility) of rows [r0, r1).
template <Rule R, bool PP, typename T>
void fwd_update(const StepArgs<T>& p, const StepFwdOut<T>& o, int64_t b, int64_t r0, int64_t r1,
                const T* M) {
  constexpr bool kElig = has_eligibility(R);
  const int64_t N = p.N, NN = N * N;
  const auto [h, H, E] = trace_inputs<kElig>(p, b);
  const T* hn = o.h_new + b * N;
  T* Hn = o.hebb_new + b * NN;
  T* En = kElig ? o.elig_new + b * NN : nullptr;
  for (int64_t r = r0; r < r1; ++r) {
    const T* __restrict__ Hrow = H + r * N;
    T* __restrict__ Hout = Hn + r * N;
    // pre_post: row r is pre neuron r, columns are post; post_pre: row r is post neuron r.
    const T* __restrict__ pre_v = PP ? h : nullptr;
    const T* __restrict__ post_v = PP ? nullptr : hn;
    const T pre_s = PP ? T(0) : h[r], post_s = PP ? hn[r] : T(0), m_s = PP ? M[r] : T(0);
    if constexpr (kElig) {
      const T* __restrict__ Erow = E + r * N;
      T* __restrict__ Eout = En + r * N;
#pragma omp simd
      for (int64_t k = 0; k < N; ++k) {
        T hv = Hrow[k], ev = Erow[k];
        trace_forward<R>(hv, ev, PP ? pre_v[k] : pre_s, PP ? post_s : post_v[k], PP ? m_s : M[k],
                         p.eta, p.clip);
        Hout[k] = hv;
        Eout[k] = ev;
      }
    } else {
#pragma omp simd
      for (int64_t k = 0; k < N; ++k) {
        T hv = Hrow[k], unused = T(0);
        trace_forward<R>(hv, unused, PP ? pre_v[k] : pre_s, PP ? post_s : post_v[k],
                         PP ? m_s : M[k], p.eta, p.clip);
        Hout[k] = hv;
      }
    }
  }
}

// Pass A over rows [r0, r1): the trace-update adjoint. Writes dH, dE of the rows. pre_post: dh[i]
// of the rows (set), partials col0 = d h_t, col1 = d m_t over the rows; post_pre: post_adj[j] and
// dM[j] of the rows (set), partial col0 = d h_{t-1}. *scal: partial d eta.
template <Rule R, bool PP, typename T>
void bwd_trace(const StepArgs<T>& p, const StepBwdIn<T>& in, const StepBwdOut<T>& o, int64_t b,
               int64_t r0, int64_t r1, const T* M, T* post_adj, T* dM, T* col0, T* col1, T* scal) {
  constexpr bool kElig = has_eligibility(R);
  constexpr bool kMod = is_modulated(R);
  const int64_t N = p.N, NN = N * N;
  const auto [h, H, E] = trace_inputs<kElig>(p, b);
  const T* hn = in.h_new + b * N;
  T* dH = o.dH + b * NN;
  T* dE = kElig ? o.dE + b * NN : nullptr;
  T* dh = o.dh + b * N;
  std::memset(col0, 0, sizeof(T) * N);
  if (!PP) std::memset(col1, 0, sizeof(T) * N);
  T deta = 0;
  for (int64_t r = r0; r < r1; ++r) {
    T* __restrict__ dHrow = dH + r * N;
    T* __restrict__ dErow = kElig ? dE + r * N : nullptr;
    // The incoming adjoints read where they lie, not copied into dH first (NOTES P6); the caller
    // passes zeros for an absent one.
    const T* __restrict__ gHrow = in.gH + b * NN + r * N;
    const T* __restrict__ gErow = kElig ? in.gE + b * NN + r * N : nullptr;
    const T* __restrict__ Hrow = H + r * N;
    const T* __restrict__ Erow = kElig ? E + r * N : nullptr;
    T rsum = 0, rmod = 0, drow = 0;
    if constexpr (!PP) {
      const T pre = h[r];
#pragma omp simd reduction(+ : rsum, drow)
      for (int64_t k = 0; k < N; ++k) {
        T dhv = gHrow[k], dev = kElig ? gErow[k] : T(0);
        const TraceGrad<T> g = trace_backward<R>(Hrow[k], kElig ? Erow[k] : T(0), pre, hn[k], M[k],
                                                 p.eta, p.clip, dhv, dev);
        dHrow[k] = dhv;
        if constexpr (kElig) dErow[k] = dev;
        rsum += g.d_pre;
        col0[k] += g.d_post;
        if constexpr (kMod) col1[k] += g.d_mod;
        drow += g.d_eta;
      }
      dh[r] = rsum;
    } else {
      const T post = hn[r], m = M[r];
#pragma omp simd reduction(+ : rsum, rmod, drow)
      for (int64_t k = 0; k < N; ++k) {
        T dhv = gHrow[k], dev = kElig ? gErow[k] : T(0);
        const TraceGrad<T> g = trace_backward<R>(Hrow[k], kElig ? Erow[k] : T(0), h[k], post, m,
                                                 p.eta, p.clip, dhv, dev);
        dHrow[k] = dhv;
        if constexpr (kElig) dErow[k] = dev;
        col0[k] += g.d_pre;
        rsum += g.d_post;
        rmod += g.d_mod;
        drow += g.d_eta;
      }
      post_adj[r] = rsum;
      dM[r] = rmod;
    }
    deta += drow;
  }
  *scal = deta;
}

// Between the passes: the modulator's adjoint and the drive's (da, du). post_adj holds d h_t
// without the modulator's share, dM d m_t, both complete.
template <Rule R, typename T>
void bwd_finish(const StepArgs<T>& p, const StepBwdIn<T>& in, const StepBwdOut<T>& o, int64_t b,
                T* post_adj, const T* dM) {
  const int64_t N = p.N;
  const T* hn = in.h_new + b * N;
  // The neuromodulator m = fanout(tanh(h_t . mod_w + mod_b)) feeds back into the adjoint of h_t.
  if constexpr (is_modulated(R)) {
    const T s = in.mod[b];
    if (o.dfw) {
      std::memset(o.dfw + b * N, 0, sizeof(T) * N);
      std::memset(o.dfb + b * N, 0, sizeof(T) * N);
    }
    // The unmodulated neurons' d eta (their m_t is eta) joins pass A's sum, already stored.
    T deta = 0;
    const T dz = modulator_adjoint(p, s, dM, o.dfw ? o.dfw + b * N : nullptr,
                                   o.dfb ? o.dfb + b * N : nullptr, &deta);
    o.deta[b] += deta;
    o.dmb[b] = dz;
    for (int64_t j = 0; j < N; ++j) {
      post_adj[j] += dz * p.mod_w[j];
      o.dmw[b * N + j] = dz * hn[j];
    }
  }
  // Through h_t = clamp ? u_t : tanh(a_t) (or f(a_t)).
  const bool* c = p.clamp ? p.clamp + b * N : nullptr;
  T* da = o.da + b * N;
  T* du = o.du + b * N;
  for (int64_t j = 0; j < N; ++j) {
    const bool clamped = c && c[j];
    da[j] = clamped ? T(0) : post_adj[j] * act_grad_from_output(p.act, hn[j]);
    du[j] = clamped ? post_adj[j] : da[j];
  }
}

// Pass B over rows [r0, r1): the adjoint of a_t = u_t + h_{t-1} (w + alpha * H_{t-1}). Adds to dH
// of the rows, writes (first sample of a group) or adds to the rows of the d w and d alpha slices.
// pre_post: adds to dh[i] of the rows; per-neuron alpha: partial col0 = d alpha over the rows.
// post_pre: partial col0 = d h_{t-1} over the rows (alpha is per connection there).
template <bool PP, typename T>
void bwd_matvec(const StepArgs<T>& p, const StepBwdOut<T>& o, int64_t b, int64_t r0, int64_t r1,
                T* col0) {
  const int64_t N = p.N, NN = N * N;
  const T* h = p.h + b * N;
  const T* H = p.hebb + b * NN;
  const T* da = o.da + b * N;
  T* dh = o.dh + b * N;
  T* dH = o.dH + b * NN;
  const T* w = p.w + b * p.w_bstride;
  const T* A = p.A + b * p.a_bstride;
  const bool per_connection = p.a_stride != 0;
  const bool first_of_group = per_connection && b % o.dA_group == 0;
  T* dA = per_connection ? o.dA + (b / o.dA_group) * NN : col0;
  if (!per_connection || PP) std::memset(col0, 0, sizeof(T) * N);
  T* dW = o.dW + (b / o.dW_group) * NN;
  const bool first_w = b % o.dW_group == 0;
  for (int64_t r = r0; r < r1; ++r) {
    const T* __restrict__ Hrow = H + r * N;
    const T* __restrict__ wrow = w + r * N;
    const T* __restrict__ Arow = A + r * p.a_stride;
    T* __restrict__ dHrow = dH + r * N;
    T* __restrict__ dArow = dA + r * p.a_stride;
    T* __restrict__ dWrow = dW + r * N;
    if constexpr (!PP) {
      const T x = h[r];
      dh[r] += first_of_group ? matvec_adjoint_row<true>(Hrow, wrow, Arow, x, da, dHrow, dArow, N)
                              : matvec_adjoint_row(Hrow, wrow, Arow, x, da, dHrow, dArow, N);
      // d w[i, :] += h[i] * da: the slice of this sample's group (or of the sample, per-sample w).
      if (first_w) {
#pragma omp simd
        for (int64_t j = 0; j < N; ++j) dWrow[j] = x * da[j];
      } else {
#pragma omp simd
        for (int64_t j = 0; j < N; ++j) dWrow[j] += x * da[j];
      }
    } else {
      const T d = da[r];
      if (first_of_group) {
#pragma omp simd
        for (int64_t i = 0; i < N; ++i) {
          const T xd = h[i] * d;
          dHrow[i] += Arow[i] * xd;
          dArow[i] = xd * Hrow[i];
          col0[i] += (wrow[i] + Arow[i] * Hrow[i]) * d;
        }
      } else {
#pragma omp simd
        for (int64_t i = 0; i < N; ++i) {
          const T xd = h[i] * d;
          dHrow[i] += Arow[i] * xd;
          dArow[i] += xd * Hrow[i];
          col0[i] += (wrow[i] + Arow[i] * Hrow[i]) * d;
        }
      }
      if (first_w) {
#pragma omp simd
        for (int64_t i = 0; i < N; ++i) dWrow[i] = h[i] * d;
      } else {
#pragma omp simd
        for (int64_t i = 0; i < N; ++i) dWrow[i] += h[i] * d;
      }
    }
  }
}

template <typename F>
void with_layout(bool post_pre, F&& f) {
  if (post_pre)
    f(std::true_type{});
  else
    f(std::false_type{});
}

template <typename T>
void phase_impl(const StepPhaseArgs<T>& a) {
  with_rule(a.rule, [&](auto tag) {
    constexpr Rule R = decltype(tag)::value;
    with_layout(a.post_pre, [&](auto layout) {
      constexpr bool PP = decltype(layout)::value;
      switch (a.phase) {
        case StepPhase::FwdMatvec: return fwd_matvec<PP>(*a.p, a.b, a.r0, a.r1, a.col0);
        case StepPhase::FwdFinish: return fwd_finish<R>(*a.p, *a.fo, a.b, a.col0, a.M);
        case StepPhase::FwdUpdate: return fwd_update<R, PP>(*a.p, *a.fo, a.b, a.r0, a.r1, a.M);
        case StepPhase::BwdTrace:
          return bwd_trace<R, PP>(*a.p, *a.bi, *a.bo, a.b, a.r0, a.r1, a.M, a.post_adj, a.dM,
                                  a.col0, a.col1, a.scal);
        case StepPhase::BwdFinish: return bwd_finish<R>(*a.p, *a.bi, *a.bo, a.b, a.post_adj, a.dM);
        case StepPhase::BwdMatvec: return bwd_matvec<PP>(*a.p, *a.bo, a.b, a.r0, a.r1, a.col0);
      }
    });
  });
}

}  // namespace

void step_phase(const StepPhaseArgs<float>& a) { phase_impl(a); }
void step_phase(const StepPhaseArgs<double>& a) { phase_impl(a); }

}  // namespace HEBBKERN_CPU_ISA
}  // namespace cpu
}  // namespace hebbkern

HEBBKERN_CPU_ISA_END
