// CPU kernel of the lifetime op: each individual's whole lifetime (SPEC.md section 10) in one pass,
// individuals in parallel (at::parallel_for, OpenMP).
//
// An individual's W + Pi * P, P, E and activity stay in the thread's cache for all its trials: that
// is the whole gain over the batched eager reference, which streams B [N, N] tensors through
// memory several times per step. W + Pi * P is rebuilt only when P changes (once per trial); the
// inner loops run over the post-synaptic index j, contiguous, so the compiler vectorises them.
// The arithmetic is the reference's, operation for operation, so that float64 results agree to
// rounding (the matrix-vector product's summation order is the only difference).
#include "../lifetime.h"

#include <ATen/Parallel.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "hebbkern/lifetime_rules.h"

namespace hebbkern {

namespace {

using namespace lifetime;

template <typename T>
struct Io {
  const T* w;
  const T* pi;
  const T* stimuli;
  const T* targets;
  const int64_t* keys;
  T* trial_loss;
  int64_t* trial_response;
  T* x;
  T* r;
  T* p;
  T* e;
  T* mean_loss;
};

template <typename T>
T clamp_sym(T v, T c) {
  return v < -c ? -c : (v > c ? c : v);  // comparisons: NaN passes through, as torch.clamp
}

template <typename T>
void run_individual(const Io<T>& io, int64_t b, int64_t N, int64_t n_trials, uint64_t seed,
                    const int64_t* iv, const double* fv, std::vector<T>& weff_buf,
                    std::vector<T>& acc_buf, std::vector<T>& delta_buf) {
  // As lifetime_block.h's set-up, kept apart: here the work rows live in per-thread buffers.
  const int64_t NN = N * N;
  const T* W = io.w + b * NN;
  const T* Pi = io.pi + b * NN;
  T* P = io.p + b * NN;
  T* E = io.e + b * NN;
  T* x = io.x + b * N;
  T* r = io.r + b * N;
  T* lbar = io.mean_loss + b * 4;
  T* weff = weff_buf.data();
  T* acc = acc_buf.data();
  T* delta = delta_buf.data();
  const uint32_t key = static_cast<uint32_t>(io.keys[b]);

  const Schedule<T> cf(iv, fv);

  for (int64_t j = 0; j < N; ++j) x[j] = j < 5 ? T(0) : T(0.1);
  for (int64_t j = 0; j < N; ++j) r[j] = x[j];
  r[4] = cf.bias;
  std::fill(P, P + NN, T(0));
  std::fill(E, E + NN, T(0));
  std::fill(lbar, lbar + 4, T(0));
  for (int64_t q = 0; q < NN; ++q) weff[q] = W[q] + Pi[q] * P[q];

  int64_t resp = 0;
  for (int64_t t = 0; t < n_trials; ++t) {
    const T s1 = io.stimuli[(b * n_trials + t) * 2], s2 = io.stimuli[(b * n_trials + t) * 2 + 1];
    const T y = io.targets[b * n_trials + t];
    const T ytil = y < cf.lo ? cf.lo : (y > cf.hi ? cf.hi : y);
    const T tgt0 = T(1) - ytil, tgt1 = ytil;
    const int combo = (s1 > T(0.5) ? 2 : 0) + (s2 > T(0.5) ? 1 : 0);
    const bool noisy = t < n_trials - iv[kQuietTrials];
    T L = 0, R0 = 0, R1 = 0;
    for (int64_t s = 0; s < cf.steps; ++s) {
      // x <- x + dt/tau (r (W + Pi P) - x)
      std::fill(acc, acc + N, T(0));
      for (int64_t i = 0; i < N; ++i) {
        const T ri = r[i];
        const T* row = weff + i * N;
        for (int64_t j = 0; j < N; ++j) acc[j] += ri * row[j];
      }
      for (int64_t j = 0; j < N; ++j) x[j] = x[j] + cf.dt_tau * (acc[j] - x[j]);
      bool any = false;
      if (noisy && s >= iv[kNoiseFromStep]) {
        const uint32_t k = static_cast<uint32_t>(t * cf.steps + s);
        for (int64_t jp = 0; 2 * jp < N; ++jp) {
          T d0, d1;
          perturbation_pair<T>(seed, key, k, static_cast<uint32_t>(jp), fv[kNoiseProb],
                               fv[kNoiseScale], d0, d1);
          delta[2 * jp] = d0;
          if (2 * jp + 1 < N) delta[2 * jp + 1] = d1;
          any = any || d0 != T(0) || (2 * jp + 1 < N && d1 != T(0));
        }
      }
      if (any) {
        for (int64_t j = 0; j < N; ++j) x[j] = x[j] + delta[j];
        // E <- (E + r_prev^T delta) * decay; r still holds the previous step's rates.
        for (int64_t i = 0; i < N; ++i) {
          const T ri = r[i];
          T* erow = E + i * N;
          for (int64_t j = 0; j < N; ++j) erow[j] = (erow[j] + ri * delta[j]) * cf.decay;
        }
      } else {
        // Adding a zero perturbation leaves E unchanged: only the decay.
        for (int64_t q = 0; q < NN; ++q) E[q] = E[q] * cf.decay;
      }
      for (int64_t j = 0; j < N - 2; ++j) r[j] = std::tanh(x[j]);
      for (int64_t j = N - 2; j < N; ++j) r[j] = T(1) / (T(1) + std::exp(-x[j]));
      T v = 0;
      if (s < iv[kStimClampEnd] && iv[kStim1Start] <= s && s < iv[kStim1End]) {
        v = 2 * s1 - 1;
      } else if (s < iv[kStimClampEnd] && iv[kStim2Start] <= s && s < iv[kStim2End]) {
        v = 2 * s2 - 1;
      }
      r[0] = cf.stim_size * v;
      r[1] = -(cf.stim_size * v);
      r[4] = cf.bias;
      if (cf.ra <= s && s < cf.rb) {
        R0 = R0 + r[N - 2];
        R1 = R1 + r[N - 1];
        const T d0 = r[N - 2] - tgt0, d1 = r[N - 1] - tgt1;
        L = L + (d0 * d0 + d1 * d1) / cf.window;
      } else {
        r[N - 2] = 0;
        r[N - 1] = 0;
      }
      if (s == cf.fa) {
        resp = R1 > R0 ? 1 : 0;
        const T lb = lbar[combo];
        if (t > iv[kPlasticAfterTrial]) {
          const T m = lb * (L - lb);
          for (int64_t q = 0; q < NN; ++q) P[q] = P[q] + clamp_sym(-(cf.eta * E[q] * m), cf.max_dp);
          for (int64_t q = 0; q < NN; ++q) weff[q] = W[q] + Pi[q] * P[q];
        }
        lbar[combo] = cf.loss_decay * lb + cf.loss_gain * L;
      }
      if (cf.fa <= s && s < cf.fb) {
        const T rew = cf.reward_size * L;
        r[2] = r[3] = rew < T(0) ? T(0) : rew;
        r[5] = resp == 0 ? cf.signal_size : T(0);
        r[6] = resp == 1 ? cf.signal_size : T(0);
      } else {
        r[2] = r[3] = r[5] = r[6] = 0;
      }
    }
    io.trial_loss[b * n_trials + t] = L;
    io.trial_response[b * n_trials + t] = resp;
  }
}

template <typename T>
void run(const Io<T>& io, int64_t B, int64_t N, int64_t n_trials, uint64_t seed, const int64_t* iv,
         const double* fv) {
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<T> weff(N * N), acc(N), delta(N);
    for (int64_t b = b0; b < b1; ++b)
      run_individual<T>(io, b, N, n_trials, seed, iv, fv, weff, acc, delta);
  });
}

}  // namespace

void lifetime_check(const at::Tensor& w, const at::Tensor& pi, const at::Tensor& stimuli,
                    const at::Tensor& targets, const at::Tensor& noise_key, int64_t seed,
                    at::IntArrayRef ints, at::ArrayRef<double> floats) {
  TORCH_CHECK_VALUE(w.dim() == 3 && w.size(1) == w.size(2), "lifetime: w must be [B, N, N]");
  const int64_t B = w.size(0), N = w.size(1);
  TORCH_CHECK_VALUE(N >= 9, "lifetime: N must be >= 9");
  TORCH_CHECK_VALUE(pi.sizes() == w.sizes(), "lifetime: pi must have w's shape");
  TORCH_CHECK_VALUE(stimuli.dim() == 3 && stimuli.size(0) == B && stimuli.size(2) == 2,
                    "lifetime: stimuli must be [B, n_trials, 2]");
  const int64_t n_trials = stimuli.size(1);
  TORCH_CHECK_VALUE(targets.dim() == 2 && targets.size(0) == B && targets.size(1) == n_trials,
                    "lifetime: targets must be [B, n_trials]");
  TORCH_CHECK_VALUE(
      noise_key.dim() == 1 && noise_key.size(0) == B && noise_key.scalar_type() == at::kLong,
      "lifetime: noise_key must be int64 [B]");
  TORCH_CHECK_VALUE(static_cast<int64_t>(ints.size()) == kNumInts, "lifetime: expected ",
                    int(kNumInts), " schedule integers");
  TORCH_CHECK_VALUE(static_cast<int64_t>(floats.size()) == kNumFloats, "lifetime: expected ",
                    int(kNumFloats), " constants");
  TORCH_CHECK_VALUE(seed >= 0, "lifetime: seed must be >= 0");
  TORCH_CHECK_VALUE(ints[kSteps] >= 1 && ints[kRespStart] < ints[kRespEnd] &&
                        ints[kRespEnd] <= ints[kFeedStart] && ints[kFeedStart] < ints[kFeedEnd] &&
                        ints[kFeedEnd] <= ints[kSteps],
                    "lifetime: windows out of order");
  TORCH_CHECK_VALUE(n_trials * ints[kSteps] < (int64_t(1) << 32),
                    "lifetime: n_trials * steps must be < 2^32 (the Philox step counter)");
  TORCH_CHECK_TYPE(w.scalar_type() == at::kFloat || w.scalar_type() == at::kDouble,
                   "lifetime: w must be float32 or float64");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
lifetime_fwd_cpu(const at::Tensor& w, const at::Tensor& pi, const at::Tensor& stimuli,
                 const at::Tensor& targets, const at::Tensor& noise_key, int64_t seed,
                 at::IntArrayRef ints, at::ArrayRef<double> floats) {
  lifetime_check(w, pi, stimuli, targets, noise_key, seed, ints, floats);
  const int64_t B = w.size(0), N = w.size(1), n_trials = stimuli.size(1);
  const auto dtype = w.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble,
                   "lifetime: w must be float32 or float64");
  const at::Tensor wc = w.contiguous(), pc = pi.to(dtype).contiguous();
  const at::Tensor sc = stimuli.to(dtype).contiguous(), tc = targets.to(dtype).contiguous();
  const at::Tensor kc = noise_key.contiguous();
  auto opt = w.options();
  at::Tensor trial_loss = at::empty({B, n_trials}, opt);
  at::Tensor trial_response = at::empty({B, n_trials}, opt.dtype(at::kLong));
  at::Tensor x = at::empty({B, N}, opt), r = at::empty({B, N}, opt);
  at::Tensor p = at::empty({B, N, N}, opt), e = at::empty({B, N, N}, opt);
  at::Tensor mean_loss = at::empty({B, 4}, opt);
  AT_DISPATCH_FLOATING_TYPES(dtype, "lifetime_fwd_cpu", [&] {
    Io<scalar_t> io{wc.data_ptr<scalar_t>(),
                    pc.data_ptr<scalar_t>(),
                    sc.data_ptr<scalar_t>(),
                    tc.data_ptr<scalar_t>(),
                    kc.data_ptr<int64_t>(),
                    trial_loss.data_ptr<scalar_t>(),
                    trial_response.data_ptr<int64_t>(),
                    x.data_ptr<scalar_t>(),
                    r.data_ptr<scalar_t>(),
                    p.data_ptr<scalar_t>(),
                    e.data_ptr<scalar_t>(),
                    mean_loss.data_ptr<scalar_t>()};
    run<scalar_t>(io, B, N, n_trials, static_cast<uint64_t>(seed), ints.data(), floats.data());
  });
  return {trial_loss, trial_response, x, r, p, e, mean_loss};
}

}  // namespace hebbkern
