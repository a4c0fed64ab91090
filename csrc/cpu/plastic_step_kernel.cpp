// Body of the CPU plastic_step kernels (one step of SPEC.md section 1), compiled once per
// instruction set by the build (isa_target.h defines HEBBKERN_CPU_ISA). Internal linkage only, as
// in plastic_rnn_kernel.cpp, so the per-ISA copies never get merged by the linker.
//
// Work layout: the caller splits the batch over threads; each sample's [N, N] trace is read by the
// mat-vec and then, while it is still in cache (64 KiB at N = 128 in float32), read again by the
// update that writes the new trace: the trace crosses the memory bus once in and once out. A
// single step cannot fold the update into the mat-vec as plastic_rnn does (the update of row i
// needs all of h_t, which needs every row), and the caller wants H_t itself back.
//
// Backward, per sample: pass A runs the trace-update adjoint over the rows (it yields the adjoints
// of h_t and m_t, which the drive's adjoint needs), pass B the mat-vec adjoint.
#include <cmath>
#include <cstring>

#include "plastic_step_kernel_args.h"
#include "vec_math.h"

// Everything below is compiled for this compilation's instruction set (isa_target.h).
#include "isa_target.h"
#include "row_kernel.h"

namespace hebbkern {
namespace cpu {
namespace HEBBKERN_CPU_ISA {
namespace {

template <Rule R, typename T>
void step_forward_sample(const StepArgs<T>& p, const StepFwdOut<T>& o, int64_t b, T* scratch) {
  constexpr bool kElig = has_eligibility(R);
  const int64_t N = p.N, NN = N * N;
  T* acc = scratch;
  T* M = acc + N;
  const T* u = p.u + b * N;
  const T* h = p.h + b * N;
  const T* H = p.hebb + b * NN;
  const T* w = p.w + b * p.w_bstride;
  const T* A = p.A + b * p.a_bstride;
  std::memcpy(acc, u, sizeof(T) * N);
  for (int64_t i = 0; i < N; ++i) {
    const T x = h[i];
    const T* __restrict__ wrow = w + i * N;
    const T* __restrict__ Arow = A + i * p.a_stride;
    const T* __restrict__ Hrow = H + i * N;
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) acc[j] += x * (wrow[j] + Arow[j] * Hrow[j]);
  }
  T* __restrict__ hn = o.h_new + b * N;
  const bool* c = p.clamp ? p.clamp + b * N : nullptr;
  if (p.act != 0) {
    activation_other(p.act, acc, u, c, hn, N);
  } else {
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) {
      const T y = tanh_any(acc[j]);
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
  const T* E = kElig ? p.elig + b * NN : nullptr;
  T* Hn = o.hebb_new + b * NN;
  T* En = kElig ? o.elig_new + b * NN : nullptr;
  for (int64_t i = 0; i < N; ++i) {
    const T pre = h[i];
    const T* __restrict__ Hrow = H + i * N;
    T* __restrict__ Hout = Hn + i * N;
    if constexpr (kElig) {
      const T* __restrict__ Erow = E + i * N;
      T* __restrict__ Eout = En + i * N;
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) {
        T hv = Hrow[j], ev = Erow[j];
        trace_forward<R>(hv, ev, pre, hn[j], M[j], p.eta, p.clip);
        Hout[j] = hv;
        Eout[j] = ev;
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) {
        T hv = Hrow[j], unused = T(0);
        trace_forward<R>(hv, unused, pre, hn[j], M[j], p.eta, p.clip);
        Hout[j] = hv;
      }
    }
  }
}

template <Rule R, typename T>
void step_backward_sample(const StepArgs<T>& p, const StepBwdIn<T>& in, const StepBwdOut<T>& o,
                          int64_t b, T* scratch) {
  constexpr bool kElig = has_eligibility(R);
  constexpr bool kMod = is_modulated(R);
  const int64_t N = p.N, NN = N * N;
  T* post_adj = scratch;  // adjoint of h_t
  T* dM = post_adj + N;   // adjoint of m_t per post neuron
  T* M = dM + N;          // m_t per post neuron
  T* da = o.da + b * N;   // adjoint of a_t
  T* dh = o.dh + b * N;   // adjoint of h_{t-1}
  const T* h = p.h + b * N;
  const T* hn = in.h_new + b * N;
  const T* H = p.hebb + b * NN;
  const T* E = kElig ? p.elig + b * NN : nullptr;
  T* dH = o.dH + b * NN;
  T* dE = kElig ? o.dE + b * NN : nullptr;
  if (in.gh)
    std::memcpy(post_adj, in.gh + b * N, sizeof(T) * N);
  else
    std::memset(post_adj, 0, sizeof(T) * N);
  std::memset(dM, 0, sizeof(T) * N);
  std::memset(dh, 0, sizeof(T) * N);
  if constexpr (kMod)
    fanout(p, in.mod[b], M);
  else
    std::memset(M, 0, sizeof(T) * N);

  // Pass A: adjoint of the trace update H_t = rule(H_{t-1}, h_{t-1}, h_t, m_t).
  T deta = 0;
  for (int64_t i = 0; i < N; ++i) {
    T* __restrict__ dHrow = dH + i * N;
    T* __restrict__ dErow = kElig ? dE + i * N : nullptr;
    if (in.gH)
      std::memcpy(dHrow, in.gH + b * NN + i * N, sizeof(T) * N);
    else
      std::memset(dHrow, 0, sizeof(T) * N);
    if constexpr (kElig) {
      if (in.gE)
        std::memcpy(dErow, in.gE + b * NN + i * N, sizeof(T) * N);
      else
        std::memset(dErow, 0, sizeof(T) * N);
    }
    const T* __restrict__ Hrow = H + i * N;
    const T pre = h[i];
    T dpre = 0, drow = 0;
    if constexpr (kElig) {
      const T* __restrict__ Erow = E + i * N;
#pragma omp simd reduction(+ : dpre, drow)
      for (int64_t j = 0; j < N; ++j) {
        const TraceGrad<T> g = trace_backward<R>(Hrow[j], Erow[j], pre, hn[j], M[j], p.eta, p.clip,
                                                 dHrow[j], dErow[j]);
        dpre += g.d_pre;
        post_adj[j] += g.d_post;
        dM[j] += g.d_mod;
        drow += g.d_eta;
      }
    } else {
#pragma omp simd reduction(+ : dpre, drow)
      for (int64_t j = 0; j < N; ++j) {
        T unused = T(0);
        const TraceGrad<T> g =
            trace_backward<R>(Hrow[j], T(0), pre, hn[j], M[j], p.eta, p.clip, dHrow[j], unused);
        dpre += g.d_pre;
        post_adj[j] += g.d_post;
        if constexpr (kMod) dM[j] += g.d_mod;
        drow += g.d_eta;
      }
    }
    dh[i] += dpre;
    deta += drow;
  }

  // The neuromodulator m = fanout(tanh(h_t . mod_w + mod_b)) feeds back into the adjoint of h_t.
  if constexpr (kMod) {
    const T s = in.mod[b];
    if (o.dfw) {
      std::memset(o.dfw + b * N, 0, sizeof(T) * N);
      std::memset(o.dfb + b * N, 0, sizeof(T) * N);
    }
    const T dz = modulator_adjoint(p, s, dM, o.dfw ? o.dfw + b * N : nullptr,
                                   o.dfb ? o.dfb + b * N : nullptr, &deta);
    o.dmb[b] = dz;
    for (int64_t j = 0; j < N; ++j) {
      post_adj[j] += dz * p.mod_w[j];
      o.dmw[b * N + j] = dz * hn[j];
    }
  }

  o.deta[b] = deta;

  // Through h_t = clamp ? u_t : tanh(a_t) (or f(a_t)).
  const bool* c = p.clamp ? p.clamp + b * N : nullptr;
  T* du = o.du + b * N;
  for (int64_t j = 0; j < N; ++j) {
    const bool clamped = c && c[j];
    da[j] = clamped ? T(0) : post_adj[j] * act_grad_from_output(p.act, hn[j]);
    du[j] = clamped ? post_adj[j] : da[j];
  }

  // Pass B: adjoint of a_t = u_t + h_{t-1} (w + alpha * H_{t-1}).
  const T* w = p.w + b * p.w_bstride;
  const T* A = p.A + b * p.a_bstride;
  const bool per_connection = p.a_stride != 0;
  const bool first_of_group = per_connection && b % o.dA_group == 0;
  T* dA = per_connection ? o.dA + (b / o.dA_group) * NN : o.dA + b * N;
  for (int64_t i = 0; i < N; ++i) {
    const T x = h[i];
    const T* __restrict__ Hrow = H + i * N;
    const T* __restrict__ wrow = w + i * N;
    const T* __restrict__ Arow = A + i * p.a_stride;
    T* __restrict__ dHrow = dH + i * N;
    T* __restrict__ dArow = dA + i * p.a_stride;
    T acc = 0;
    if (first_of_group) {
#pragma omp simd reduction(+ : acc)
      for (int64_t j = 0; j < N; ++j) {
        const T xd = x * da[j];
        dHrow[j] += Arow[j] * xd;
        dArow[j] = xd * Hrow[j];
        acc += (wrow[j] + Arow[j] * Hrow[j]) * da[j];
      }
    } else {
#pragma omp simd reduction(+ : acc)
      for (int64_t j = 0; j < N; ++j) {
        const T xd = x * da[j];
        dHrow[j] += Arow[j] * xd;
        dArow[j] += xd * Hrow[j];
        acc += (wrow[j] + Arow[j] * Hrow[j]) * da[j];
      }
    }
    dh[i] += acc;
    // d w[i, :] += h[i] * da: the slice of this sample's group (or of the sample, per-sample w).
    T* __restrict__ dWrow = o.dW + (b / o.dW_group) * NN + i * N;
    if (b % o.dW_group == 0) {
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) dWrow[j] = x * da[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) dWrow[j] += x * da[j];
    }
  }
}

template <typename T>
void step_forward_range(Rule r, const StepArgs<T>& p, const StepFwdOut<T>& o, int64_t b0,
                        int64_t b1, T* scratch) {
  with_rule(r, [&](auto tag) {
    constexpr Rule R = decltype(tag)::value;
    for (int64_t b = b0; b < b1; ++b) step_forward_sample<R, T>(p, o, b, scratch);
  });
}

template <typename T>
void step_backward_range(Rule r, const StepArgs<T>& p, const StepBwdIn<T>& in,
                         const StepBwdOut<T>& o, int64_t b0, int64_t b1, T* scratch) {
  with_rule(r, [&](auto tag) {
    constexpr Rule R = decltype(tag)::value;
    for (int64_t b = b0; b < b1; ++b) step_backward_sample<R, T>(p, in, o, b, scratch);
  });
}

}  // namespace

void step_forward(Rule r, const StepArgs<float>& p, const StepFwdOut<float>& o, int64_t b0,
                  int64_t b1, float* scratch) {
  step_forward_range(r, p, o, b0, b1, scratch);
}
void step_forward(Rule r, const StepArgs<double>& p, const StepFwdOut<double>& o, int64_t b0,
                  int64_t b1, double* scratch) {
  step_forward_range(r, p, o, b0, b1, scratch);
}
void step_backward(Rule r, const StepArgs<float>& p, const StepBwdIn<float>& in,
                   const StepBwdOut<float>& o, int64_t b0, int64_t b1, float* scratch) {
  step_backward_range(r, p, in, o, b0, b1, scratch);
}
void step_backward(Rule r, const StepArgs<double>& p, const StepBwdIn<double>& in,
                   const StepBwdOut<double>& o, int64_t b0, int64_t b1, double* scratch) {
  step_backward_range(r, p, in, o, b0, b1, scratch);
}

}  // namespace HEBBKERN_CPU_ISA
}  // namespace cpu
}  // namespace hebbkern

HEBBKERN_CPU_ISA_END
