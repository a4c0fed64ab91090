// Fused CPU kernels of the plastic recurrent layer (SPEC.md section 1).
//
// Layout of the work: samples are independent, so OpenMP (through at::parallel_for) splits the
// batch and each thread runs the whole time loop of its samples with the sample's [N, N] trace hot
// in its own cache. Each time step makes ONE pass over the trace: row i first receives the pending
// update of step t-1 (which needed all of h_{t-1}), then feeds the mat-vec of step t. Inner loops run
// over the post-synaptic index j, contiguous in memory, and are written for the vectoriser.
//
// Backward: the forward saves the trace every K steps (K ~ sqrt(T)); the backward walks the chunks
// from last to first, recomputes the K traces of a chunk from its checkpoint into a per-thread buffer
// and back-propagates through them. Per-sample gradient accumulators make the parameter gradients
// independent of the thread count (deterministic), and dw is one GEMM at the end.
#include <ATen/Parallel.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../plastic_rnn.h"

namespace hebbkern {
namespace {

template <typename T>
struct RnnArgs {
  int64_t T_, B, N, K;
  const T* u;      // [T, B, N]
  const T* w;      // [N, N]
  const T* A;      // alpha materialised to [N, N]
  const T* h0;     // [B, N] or null (zeros)
  const T* hebb0;  // [B, N, N] or null
  const T* elig0;  // [B, N, N] or null
  const bool* clamp;  // [T, B, N] or null
  const T* mod_w;  // [N] or null
  const T* fan_w;  // [N] or null
  const T* fan_b;  // [N] or null
  T eta, mod_b, clip;
};

template <typename T>
inline const T* row_or_null(const T* base, int64_t offset) {
  return base ? base + offset : nullptr;
}

// m_t[j] for the modulated rules, from the new activity h of one sample; returns tanh(z).
template <typename T>
inline T modulator(const RnnArgs<T>& p, const T* h, T* M) {
  T z = p.mod_b;
  for (int64_t j = 0; j < p.N; ++j) z += h[j] * p.mod_w[j];
  const T s = std::tanh(z);
  for (int64_t j = 0; j < p.N; ++j) M[j] = p.fan_w ? p.fan_w[j] * s + p.fan_b[j] : s;
  return s;
}

template <typename T>
inline void fanout_from_mod(const RnnArgs<T>& p, T s, T* M) {
  for (int64_t j = 0; j < p.N; ++j) M[j] = p.fan_w ? p.fan_w[j] * s + p.fan_b[j] : s;
}

// Applies one step's update to row i of the trace (and eligibility).
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
void forward_sample(const RnnArgs<T>& p, int64_t b, T* h_out, T* hebb_T, T* elig_T, T* ck_h,
                    T* ck_e, T* mod_out, std::vector<T>& a, std::vector<T>& M) {
  const int64_t N = p.N, NN = N * N, B = p.B;
  T* H = hebb_T + b * NN;
  T* E = has_eligibility(R) ? elig_T + b * NN : nullptr;
  if (p.hebb0) std::memcpy(H, p.hebb0 + b * NN, sizeof(T) * NN);
  else std::fill(H, H + NN, T(0));
  if constexpr (has_eligibility(R)) {
    if (p.elig0) std::memcpy(E, p.elig0 + b * NN, sizeof(T) * NN);
    else std::fill(E, E + NN, T(0));
  }
  std::vector<T> zeros_h(p.h0 ? 0 : N, T(0));
  const T* hprev = p.h0 ? p.h0 + b * N : zeros_h.data();  // h_{t-1}
  const T* hpp = nullptr;                                  // h_{t-2}: pre of the pending update
  std::fill(M.begin(), M.end(), T(0));

  for (int64_t t = 0; t < p.T_; ++t) {
    const bool ck = (t % p.K) == 0;
    T* ckH = ck ? ck_h + ((t / p.K) * B + b) * NN : nullptr;
    T* ckE = (ck && has_eligibility(R)) ? ck_e + ((t / p.K) * B + b) * NN : nullptr;
    const T* u_t = p.u + (t * B + b) * N;
    T* acc = a.data();
    std::memcpy(acc, u_t, sizeof(T) * N);
    for (int64_t i = 0; i < N; ++i) {
      T* Hrow = H + i * N;
      T* Erow = has_eligibility(R) ? E + i * N : nullptr;
      if (hpp) update_row<R>(Hrow, Erow, hpp[i], hprev, M.data(), p.eta, p.clip, N);
      if (ckH) {
        std::memcpy(ckH + i * N, Hrow, sizeof(T) * N);
        if (ckE) std::memcpy(ckE + i * N, Erow, sizeof(T) * N);
      }
      const T x = hprev[i];
      const T* __restrict__ wrow = p.w + i * N;
      const T* __restrict__ Arow = p.A + i * N;
#pragma omp simd
      for (int64_t j = 0; j < N; ++j) acc[j] += x * (wrow[j] + Arow[j] * Hrow[j]);
    }
    T* h_t = h_out + (t * B + b) * N;
    const bool* c_t = p.clamp ? p.clamp + (t * B + b) * N : nullptr;
    for (int64_t j = 0; j < N; ++j) {
      const T y = std::tanh(acc[j]);
      h_t[j] = (c_t && c_t[j]) ? u_t[j] : y;
    }
    if constexpr (is_modulated(R)) mod_out[t * B + b] = modulator(p, h_t, M.data());
    hpp = hprev;
    hprev = h_t;
  }
  for (int64_t i = 0; i < N; ++i) {
    update_row<R>(H + i * N, has_eligibility(R) ? E + i * N : nullptr, hpp[i], hprev, M.data(),
                  p.eta, p.clip, N);
  }
}

template <typename T>
struct BwdBuffers {
  // Per-sample accumulators, reduced over the batch after the parallel loop.
  T* dA;     // [B, N, N]
  T* deta;   // [B]
  T* dmw;    // [B, N]
  T* dmb;    // [B]
  T* dfw;    // [B, N]
  T* dfb;    // [B, N]
  // Outputs.
  T* du;     // [T, B, N]
  T* da;     // [T, B, N]  drive adjoint, for the dw GEMM
  T* dh0;    // [B, N]
  T* dH0;    // [B, N, N]
  T* dE0;    // [B, N, N] (retro)
};

template <Rule R, typename T>
void backward_sample(const RnnArgs<T>& p, int64_t b, const T* gh, const T* gH, const T* gE,
                     const T* h_all, const T* ck_h, const T* ck_e, const T* mod, const BwdBuffers<T>& o,
                     std::vector<T>& Hbuf, std::vector<T>& Ebuf, std::vector<T>& vec) {
  const int64_t N = p.N, NN = N * N, B = p.B, T_ = p.T_, K = p.K;
  constexpr bool kElig = has_eligibility(R);
  T* dH = o.dH0 + b * NN;  // adjoint of the trace, walked back in place to d hebb0
  T* dE = kElig ? o.dE0 + b * NN : nullptr;
  if (gH) std::memcpy(dH, gH + b * NN, sizeof(T) * NN);
  else std::fill(dH, dH + NN, T(0));
  if constexpr (kElig) {
    if (gE) std::memcpy(dE, gE + b * NN, sizeof(T) * NN);
    else std::fill(dE, dE + NN, T(0));
  }
  T* dh = vec.data();         // adjoint of h_t
  T* dhp = dh + N;            // adjoint of h_{t-1}, carried to the previous step
  T* M = dhp + N;             // m_t per post neuron
  T* Mk = M + N;              // m of the recomputed step
  T* dM = Mk + N;
  T* da = dM + N;
  T* zeros = da + N;
  std::fill(dhp, dhp + N, T(0));
  std::fill(zeros, zeros + N, T(0));
  std::fill(M, M + N, T(0));
  T* dA = o.dA + b * NN;
  T deta = 0, dmb = 0;
  T* dmw = o.dmw ? o.dmw + b * N : nullptr;
  T* dfw = o.dfw ? o.dfw + b * N : nullptr;
  T* dfb = o.dfb ? o.dfb + b * N : nullptr;
  const T* h0 = p.h0 ? p.h0 + b * N : zeros;
  auto h_at = [&](int64_t t) -> const T* { return t < 0 ? h0 : h_all + (t * B + b) * N; };

  const int64_t n_chunks = (T_ + K - 1) / K;
  for (int64_t c = n_chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * K, t1 = std::min(T_, t0 + K);
    // Recompute the traces before steps t0 .. t1-1 from the checkpoint.
    std::memcpy(Hbuf.data(), ck_h + (c * B + b) * NN, sizeof(T) * NN);
    if constexpr (kElig) std::memcpy(Ebuf.data(), ck_e + (c * B + b) * NN, sizeof(T) * NN);
    for (int64_t t = t0; t < t1 - 1; ++t) {
      const int64_t k = t - t0;
      T* Hn = Hbuf.data() + (k + 1) * NN;
      std::memcpy(Hn, Hbuf.data() + k * NN, sizeof(T) * NN);
      T* En = nullptr;
      if constexpr (kElig) {
        En = Ebuf.data() + (k + 1) * NN;
        std::memcpy(En, Ebuf.data() + k * NN, sizeof(T) * NN);
      }
      if constexpr (is_modulated(R)) fanout_from_mod(p, mod[t * B + b], Mk);
      const T* pre = h_at(t - 1);
      const T* post = h_at(t);
      for (int64_t i = 0; i < N; ++i)
        update_row<R>(Hn + i * N, kElig ? En + i * N : nullptr, pre[i], post,
                      is_modulated(R) ? Mk : zeros, p.eta, p.clip, N);
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t k = t - t0;
      const T* Hp = Hbuf.data() + k * NN;
      const T* Ep = kElig ? Ebuf.data() + k * NN : nullptr;
      const T* hp = h_at(t - 1);
      const T* hc = h_at(t);
      T s = 0;
      if constexpr (is_modulated(R)) {
        s = mod[t * B + b];
        fanout_from_mod(p, s, M);
      }
      const T* g_t = gh ? gh + (t * B + b) * N : zeros;
      for (int64_t j = 0; j < N; ++j) {
        dh[j] = g_t[j] + dhp[j];
        dhp[j] = T(0);
        dM[j] = T(0);
      }
      // Pass A: through the trace update of step t (H_{t-1} -> H_t).
      for (int64_t i = 0; i < N; ++i) {
        const T pre = hp[i];
        const T* __restrict__ Hrow = Hp + i * N;
        T* __restrict__ dHrow = dH + i * N;
        T dpre = 0, deta_row = 0;
        if constexpr (kElig) {
          const T* __restrict__ Erow = Ep + i * N;
          T* __restrict__ dErow = dE + i * N;
#pragma omp simd reduction(+ : dpre, deta_row)
          for (int64_t j = 0; j < N; ++j) {
            const TraceGrad<T> g = trace_backward<R>(Hrow[j], Erow[j], pre, hc[j], M[j], p.eta,
                                                     p.clip, dHrow[j], dErow[j]);
            dpre += g.d_pre;
            dh[j] += g.d_post;
            dM[j] += g.d_mod;
            deta_row += g.d_eta;
          }
        } else {
#pragma omp simd reduction(+ : dpre, deta_row)
          for (int64_t j = 0; j < N; ++j) {
            T unused = T(0);
            const TraceGrad<T> g = trace_backward<R>(Hrow[j], T(0), pre, hc[j], M[j], p.eta,
                                                     p.clip, dHrow[j], unused);
            dpre += g.d_pre;
            dh[j] += g.d_post;
            if constexpr (is_modulated(R)) dM[j] += g.d_mod;
            deta_row += g.d_eta;
          }
        }
        dhp[i] += dpre;
        deta += deta_row;
      }
      // Through the neuromodulator m = fanout(tanh(h_t . mod_w + mod_b)).
      if constexpr (is_modulated(R)) {
        T ds = 0;
        for (int64_t j = 0; j < N; ++j) {
          ds += p.fan_w ? dM[j] * p.fan_w[j] : dM[j];
          if (dfw) {
            dfw[j] += dM[j] * s;
            dfb[j] += dM[j];
          }
        }
        const T dz = ds * (T(1) - s * s);
        dmb += dz;
        for (int64_t j = 0; j < N; ++j) {
          dh[j] += dz * p.mod_w[j];
          dmw[j] += dz * hc[j];
        }
      }
      // Through h_t = clamp ? u_t : tanh(a_t).
      const bool* c_t = p.clamp ? p.clamp + (t * B + b) * N : nullptr;
      T* du_t = o.du + (t * B + b) * N;
      T* da_t = o.da + (t * B + b) * N;
      for (int64_t j = 0; j < N; ++j) {
        if (c_t && c_t[j]) {
          da[j] = T(0);
          du_t[j] = dh[j];
        } else {
          da[j] = dh[j] * (T(1) - hc[j] * hc[j]);
          du_t[j] = da[j];
        }
        da_t[j] = da[j];
      }
      // Pass B: through a_t = u_t + h_{t-1} (w + alpha * H_{t-1}).
      for (int64_t i = 0; i < N; ++i) {
        const T x = hp[i];
        const T* __restrict__ Hrow = Hp + i * N;
        const T* __restrict__ wrow = p.w + i * N;
        const T* __restrict__ Arow = p.A + i * N;
        T* __restrict__ dHrow = dH + i * N;
        T* __restrict__ dArow = dA + i * N;
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < N; ++j) {
          const T xd = x * da[j];
          dHrow[j] += Arow[j] * xd;
          dArow[j] += xd * Hrow[j];
          acc += (wrow[j] + Arow[j] * Hrow[j]) * da[j];
        }
        dhp[i] += acc;
      }
    }
  }
  std::memcpy(o.dh0 + b * N, dhp, sizeof(T) * N);
  o.deta[b] = deta;
  if (o.dmb) o.dmb[b] = dmb;
}

template <typename T, typename F>
void dispatch_rule(Rule r, F&& f) {
  switch (r) {
    case Rule::Hebb: f(std::integral_constant<Rule, Rule::Hebb>{}); break;
    case Rule::Oja: f(std::integral_constant<Rule, Rule::Oja>{}); break;
    case Rule::Clip: f(std::integral_constant<Rule, Rule::Clip>{}); break;
    case Rule::Neuromod: f(std::integral_constant<Rule, Rule::Neuromod>{}); break;
    case Rule::Retro: f(std::integral_constant<Rule, Rule::Retro>{}); break;
  }
}

at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->contiguous() : at::Tensor();
}

template <typename T>
T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// Shared by forward and backward: the argument tensors made contiguous and the scalars read.
struct Prepared {
  at::Tensor u, w, A, h0, hebb0, elig0, clamp, mod_w, fan_w, fan_b;
  double eta = 0, mod_b = 0;
};

Prepared prepare(const at::Tensor& u, const at::Tensor& w, const at::Tensor& alpha,
                 const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& hebb0,
                 const std::optional<at::Tensor>& elig0, const std::optional<at::Tensor>& clamp_mask,
                 const std::optional<at::Tensor>& eta, const std::optional<at::Tensor>& mod_w,
                 const std::optional<at::Tensor>& mod_b, const std::optional<at::Tensor>& fanout_w,
                 const std::optional<at::Tensor>& fanout_b, Rule rule) {
  TORCH_CHECK(u.dim() == 3 && u.size(0) >= 1 && u.size(2) >= 1,
              "hebbkern::plastic_rnn: u must be [T, B, N] with T, N >= 1");
  const int64_t N = u.size(2);
  TORCH_CHECK(w.dim() == 2 && w.size(0) == N && w.size(1) == N, "plastic_rnn: w must be [N, N]");
  TORCH_CHECK(alpha.dim() <= 2, "plastic_rnn: alpha must be [N, N], [N] or 0-dim");
  TORCH_CHECK(!uses_eta(rule) || (eta.has_value() && eta->defined()),
              "plastic_rnn: this rule needs eta");
  TORCH_CHECK(!is_modulated(rule) || (mod_w.has_value() && mod_w->defined()),
              "plastic_rnn: this rule needs mod_w");
  Prepared p;
  p.u = u.contiguous();
  p.w = w.contiguous();
  p.A = alpha.expand({N, N}).contiguous();
  p.h0 = contiguous_or_undefined(h0);
  p.hebb0 = contiguous_or_undefined(hebb0);
  p.elig0 = contiguous_or_undefined(elig0);
  p.clamp = contiguous_or_undefined(clamp_mask);
  if (p.clamp.defined()) p.clamp = p.clamp.to(at::kBool).contiguous();
  p.mod_w = contiguous_or_undefined(mod_w);
  p.fan_w = contiguous_or_undefined(fanout_w);
  p.fan_b = contiguous_or_undefined(fanout_b);
  TORCH_CHECK(p.fan_w.defined() == p.fan_b.defined(),
              "plastic_rnn: fanout_w and fanout_b go together");
  if (uses_eta(rule)) p.eta = eta->item<double>();
  if (mod_b.has_value() && mod_b->defined()) p.mod_b = mod_b->item<double>();
  return p;
}

template <typename T>
RnnArgs<T> make_args(const Prepared& q, double clip, int64_t K) {
  RnnArgs<T> p;
  p.T_ = q.u.size(0);
  p.B = q.u.size(1);
  p.N = q.u.size(2);
  p.K = K;
  p.u = q.u.data_ptr<T>();
  p.w = q.w.data_ptr<T>();
  p.A = q.A.data_ptr<T>();
  p.h0 = ptr_or_null<T>(q.h0);
  p.hebb0 = ptr_or_null<T>(q.hebb0);
  p.elig0 = ptr_or_null<T>(q.elig0);
  p.clamp = q.clamp.defined() ? q.clamp.data_ptr<bool>() : nullptr;
  p.mod_w = ptr_or_null<T>(q.mod_w);
  p.fan_w = ptr_or_null<T>(q.fan_w);
  p.fan_b = ptr_or_null<T>(q.fan_b);
  p.eta = static_cast<T>(q.eta);
  p.mod_b = static_cast<T>(q.mod_b);
  p.clip = static_cast<T>(clip);
  return p;
}

at::Tensor empty_like_opts(const at::Tensor& ref) { return at::empty({0}, ref.options()); }

}  // namespace

FwdOut plastic_rnn_fwd_cpu(const at::Tensor& u, const at::Tensor& w, const at::Tensor& alpha,
                           const std::optional<at::Tensor>& h0,
                           const std::optional<at::Tensor>& hebb0,
                           const std::optional<at::Tensor>& elig0,
                           const std::optional<at::Tensor>& clamp_mask,
                           const std::optional<at::Tensor>& eta,
                           const std::optional<at::Tensor>& mod_w,
                           const std::optional<at::Tensor>& mod_b,
                           const std::optional<at::Tensor>& fanout_w,
                           const std::optional<at::Tensor>& fanout_b, const std::string& rule_name,
                           double clip, int64_t ckpt_every) {
  const Rule rule = parse_rule(rule_name);
  TORCH_CHECK(ckpt_every >= 1, "plastic_rnn: ckpt_every must be >= 1");
  const Prepared q =
      prepare(u, w, alpha, h0, hebb0, elig0, clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b, rule);
  const int64_t T_ = u.size(0), B = u.size(1), N = u.size(2);
  const int64_t C = (T_ + ckpt_every - 1) / ckpt_every;
  const auto opts = u.options();
  at::Tensor h = at::empty({T_, B, N}, opts);
  at::Tensor hebb_T = at::empty({B, N, N}, opts);
  at::Tensor ck_h = at::empty({C, B, N, N}, opts);
  const bool elig = has_eligibility(rule);
  at::Tensor elig_T = elig ? at::empty({B, N, N}, opts) : empty_like_opts(u);
  at::Tensor ck_e = elig ? at::empty({C, B, N, N}, opts) : empty_like_opts(u);
  at::Tensor mod = is_modulated(rule) ? at::empty({T_, B}, opts) : empty_like_opts(u);

  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "plastic_rnn_fwd_cpu", [&] {
    const RnnArgs<scalar_t> p = make_args<scalar_t>(q, clip, ckpt_every);
    dispatch_rule<scalar_t>(rule, [&](auto r) {
      constexpr Rule R = decltype(r)::value;
      at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
        std::vector<scalar_t> a(N), M(N);
        for (int64_t b = b0; b < b1; ++b)
          forward_sample<R, scalar_t>(p, b, h.data_ptr<scalar_t>(), hebb_T.data_ptr<scalar_t>(),
                                      elig ? elig_T.data_ptr<scalar_t>() : nullptr,
                                      ck_h.data_ptr<scalar_t>(),
                                      elig ? ck_e.data_ptr<scalar_t>() : nullptr,
                                      is_modulated(R) ? mod.data_ptr<scalar_t>() : nullptr, a, M);
      });
    });
  });
  return {h, hebb_T, elig_T, ck_h, ck_e, mod};
}

BwdOut plastic_rnn_bwd_cpu(const std::optional<at::Tensor>& grad_h,
                           const std::optional<at::Tensor>& grad_hebb,
                           const std::optional<at::Tensor>& grad_elig, const at::Tensor& u,
                           const at::Tensor& w, const at::Tensor& alpha,
                           const std::optional<at::Tensor>& h0, const at::Tensor& h,
                           const at::Tensor& hebb_ckpt, const at::Tensor& elig_ckpt,
                           const at::Tensor& mod, const std::optional<at::Tensor>& clamp_mask,
                           const std::optional<at::Tensor>& eta,
                           const std::optional<at::Tensor>& mod_w,
                           const std::optional<at::Tensor>& mod_b,
                           const std::optional<at::Tensor>& fanout_w,
                           const std::optional<at::Tensor>& fanout_b, const std::string& rule_name,
                           double clip, int64_t ckpt_every) {
  const Rule rule = parse_rule(rule_name);
  TORCH_CHECK(ckpt_every >= 1, "plastic_rnn: ckpt_every must be >= 1");
  const Prepared q = prepare(u, w, alpha, h0, std::nullopt, std::nullopt, clamp_mask, eta, mod_w,
                             mod_b, fanout_w, fanout_b, rule);
  const int64_t T_ = u.size(0), B = u.size(1), N = u.size(2);
  const bool elig = has_eligibility(rule), modulated = is_modulated(rule);
  const bool fan = q.fan_w.defined();
  const auto opts = u.options();
  at::Tensor gh = contiguous_or_undefined(grad_h);
  at::Tensor gH = contiguous_or_undefined(grad_hebb);
  at::Tensor gE = elig ? contiguous_or_undefined(grad_elig) : at::Tensor();
  at::Tensor h_c = h.contiguous(), ck_h = hebb_ckpt.contiguous(), ck_e = elig_ckpt.contiguous();
  at::Tensor mod_c = mod.contiguous();

  at::Tensor du = at::empty({T_, B, N}, opts);
  at::Tensor da = at::empty({T_, B, N}, opts);
  at::Tensor dA = at::zeros({B, N, N}, opts);
  at::Tensor deta_ps = at::zeros({B}, opts);
  at::Tensor dmw_ps = modulated ? at::zeros({B, N}, opts) : at::Tensor();
  at::Tensor dmb_ps = modulated ? at::zeros({B}, opts) : at::Tensor();
  at::Tensor dfw_ps = fan ? at::zeros({B, N}, opts) : at::Tensor();
  at::Tensor dfb_ps = fan ? at::zeros({B, N}, opts) : at::Tensor();
  at::Tensor dh0 = at::empty({B, N}, opts);
  at::Tensor dH0 = at::empty({B, N, N}, opts);
  at::Tensor dE0 = elig ? at::empty({B, N, N}, opts) : empty_like_opts(u);

  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "plastic_rnn_bwd_cpu", [&] {
    using T = scalar_t;
    const RnnArgs<T> p = make_args<T>(q, clip, ckpt_every);
    BwdBuffers<T> o{dA.data_ptr<T>(),       deta_ps.data_ptr<T>(), ptr_or_null<T>(dmw_ps),
                    ptr_or_null<T>(dmb_ps), ptr_or_null<T>(dfw_ps), ptr_or_null<T>(dfb_ps),
                    du.data_ptr<T>(),       da.data_ptr<T>(),       dh0.data_ptr<T>(),
                    dH0.data_ptr<T>(),      elig ? dE0.data_ptr<T>() : nullptr};
    const int64_t K = std::min<int64_t>(ckpt_every, T_);
    dispatch_rule<T>(rule, [&](auto r) {
      constexpr Rule R = decltype(r)::value;
      at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
        std::vector<T> Hbuf(K * N * N), Ebuf(elig ? K * N * N : 0), vec(7 * N);
        for (int64_t b = b0; b < b1; ++b)
          backward_sample<R, T>(p, b, ptr_or_null<T>(gh), ptr_or_null<T>(gH), ptr_or_null<T>(gE),
                                h_c.data_ptr<T>(), ck_h.data_ptr<T>(),
                                elig ? ck_e.data_ptr<T>() : nullptr,
                                modulated ? mod_c.data_ptr<T>() : nullptr, o, Hbuf, Ebuf, vec);
      });
    });
  });

  // dw = sum_t h_{t-1}^T da_t: one GEMM over all steps and samples.
  at::Tensor h_prev = at::cat({q.h0.defined() ? q.h0.unsqueeze(0) : at::zeros({1, B, N}, opts),
                               h_c.narrow(0, 0, T_ - 1)});
  at::Tensor dw = h_prev.reshape({T_ * B, N}).t().mm(da.reshape({T_ * B, N}));
  at::Tensor dalpha = dA.sum(0);
  if (alpha.dim() == 1) dalpha = dalpha.sum(0);
  else if (alpha.dim() == 0) dalpha = dalpha.sum();
  at::Tensor none = empty_like_opts(u);
  at::Tensor deta = uses_eta(rule) ? deta_ps.sum() : none;
  at::Tensor dmw = modulated ? dmw_ps.sum(0) : none;
  at::Tensor dmb = modulated ? dmb_ps.sum() : none;
  at::Tensor dfw = fan ? dfw_ps.sum(0) : none;
  at::Tensor dfb = fan ? dfb_ps.sum(0) : none;
  return {du, dw, dalpha, dh0, dH0, dE0, deta, dmw, dmb, dfw, dfb};
}

}  // namespace hebbkern
