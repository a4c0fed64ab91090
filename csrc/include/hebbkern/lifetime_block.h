// The lifetime op (SPEC.md section 10) as a thread-block kernel body on the simt::Block interface:
// one block per individual, run by the CUDA kernel (csrc/cuda/lifetime.cu) and by the CPU
// emulation (csrc/cpu/lifetime_emulated.cpp), which take their grid from lifetime_geometry().
//
// Every state lives in global memory (the op's outputs x, r, p, e plus a per-individual scratch of
// W + Pi P, the perturbations and five scalars): one individual's ~3 N^2 values stay in L1/L2 for
// the whole lifetime, and any N fits. Post-synaptic neuron j's mat-vec sums over i in order, as the
// CPU kernel does, so the emulation reproduces the CPU kernel's bits.
#pragma once

#include <cmath>
#include <cstdint>

#include "hebbkern/lifetime_rules.h"
#include "hebbkern/simt.h"

namespace hebbkern::simt {

template <typename T>
struct LifetimeArgs {
  const T* w;  // [B, N, N]
  const T* pi;
  const T* stimuli;     // [B, n_trials, 2]
  const T* targets;     // [B, n_trials]
  const int64_t* keys;  // [B]
  T* trial_loss;        // [B, n_trials]
  int64_t* trial_response;
  T* x;  // [B, N]
  T* r;
  T* p;  // [B, N, N]
  T* e;
  T* mean_loss;  // [B, 4]
  T* weff;       // scratch [B, N, N]
  T* delta;      // scratch [B, N]
  T* scalars;    // scratch [B, kLifetimeScalars]
  int64_t B, N, n_trials;
  uint64_t seed;
  int64_t iv[lifetime::kNumInts];
  double fv[lifetime::kNumFloats];
};

constexpr int kLifetimeScalars = 8;  // L, R0, R1, resp, m, (unused)
constexpr int kLifetimeThreads = 256;

struct LifetimeGeometry {
  int64_t blocks;
  int threads;
};

// The launch's grid and block size; the emulation takes the same (one block per individual).
inline LifetimeGeometry lifetime_geometry(int64_t B) { return {B, kLifetimeThreads}; }

template <typename T>
HK_DEVICE T lifetime_tanh(T x) {
#if defined(__CUDA_ARCH__)
  return tanh(x);
#else
  return std::tanh(x);
#endif
}

template <typename T>
HK_DEVICE T lifetime_sigmoid(T x) {
#if defined(__CUDA_ARCH__)
  return T(1) / (T(1) + exp(-x));
#else
  return T(1) / (T(1) + std::exp(-x));
#endif
}

template <typename T, class Block>
HK_DEVICE void lifetime_block(const Block& blk, const LifetimeArgs<T>& a, int64_t b) {
  using namespace lifetime;
  const int64_t N = a.N, NN = N * N, nt = a.n_trials;
  const T* W = a.w + b * NN;
  const T* Pi = a.pi + b * NN;
  T* P = a.p + b * NN;
  T* E = a.e + b * NN;
  T* Wf = a.weff + b * NN;
  T* x = a.x + b * N;
  T* r = a.r + b * N;
  T* delta = a.delta + b * N;
  T* sc = a.scalars + b * kLifetimeScalars;  // 0 L, 1 R0, 2 R1, 3 resp, 4 m
  T* lbar = a.mean_loss + b * 4;
  const uint32_t key = static_cast<uint32_t>(a.keys[b]);
  const Schedule<T> cf(a.iv, a.fv);

  blk.for_each(N, [&](int64_t j) {
    x[j] = j < 5 ? T(0) : T(0.1);
    r[j] = j == 4 ? cf.bias : x[j];
  });
  blk.for_each(NN, [&](int64_t q) {
    P[q] = T(0);
    E[q] = T(0);
    Wf[q] = W[q] + Pi[q] * T(0);
  });
  blk.single([&] {
    for (int c = 0; c < 4; ++c) lbar[c] = T(0);
    sc[3] = T(0);
  });
  blk.sync();

  for (int64_t t = 0; t < nt; ++t) {
    const T s1 = a.stimuli[(b * nt + t) * 2], s2 = a.stimuli[(b * nt + t) * 2 + 1];
    const T y = a.targets[b * nt + t];
    const T ytil = y < cf.lo ? cf.lo : (y > cf.hi ? cf.hi : y);
    const T tgt0 = T(1) - ytil, tgt1 = ytil;
    const int combo = (s1 > T(0.5) ? 2 : 0) + (s2 > T(0.5) ? 1 : 0);
    const bool noisy = t < nt - a.iv[kQuietTrials];
    blk.single([&] { sc[0] = sc[1] = sc[2] = T(0); });
    blk.sync();
    for (int64_t s = 0; s < cf.steps; ++s) {
      const bool perturb = noisy && s >= a.iv[kNoiseFromStep];
      const uint32_t k = static_cast<uint32_t>(t * cf.steps + s);
      // Mat-vec, leak and perturbation of neuron j; r is not written in this phase.
      blk.for_each(N, [&](int64_t j) {
        T acc = T(0);
        for (int64_t i = 0; i < N; ++i) acc += r[i] * Wf[i * N + j];
        T xj = x[j] + cf.dt_tau * (acc - x[j]);
        T d = T(0);
        if (perturb) {
          T d0, d1;
          perturbation_pair<T>(a.seed, key, k, static_cast<uint32_t>(j >> 1), a.fv[kNoiseProb],
                               a.fv[kNoiseScale], d0, d1);
          d = (j & 1) ? d1 : d0;
          xj = xj + d;
        }
        x[j] = xj;
        delta[j] = d;
      });
      blk.sync();
      // Eligibility with the previous step's rates (a zero perturbation adds exactly zero).
      if (perturb) {
        blk.for_each(NN, [&](int64_t q) { E[q] = (E[q] + r[q / N] * delta[q % N]) * cf.decay; });
      } else {
        blk.for_each(NN, [&](int64_t q) { E[q] = E[q] * cf.decay; });
      }
      blk.sync();
      T v = T(0);
      if (s < a.iv[kStimClampEnd] && a.iv[kStim1Start] <= s && s < a.iv[kStim1End]) {
        v = 2 * s1 - 1;
      } else if (s < a.iv[kStimClampEnd] && a.iv[kStim2Start] <= s && s < a.iv[kStim2End]) {
        v = 2 * s2 - 1;
      }
      blk.for_each(N, [&](int64_t j) {
        T rj = j >= N - 2 ? lifetime_sigmoid(x[j]) : lifetime_tanh(x[j]);
        if (j == 0) rj = cf.stim_size * v;
        if (j == 1) rj = -(cf.stim_size * v);
        if (j == 4) rj = cf.bias;
        r[j] = rj;
      });
      blk.sync();
      const bool learn = s == cf.fa && t > a.iv[kPlasticAfterTrial];
      blk.single([&] {
        T L = sc[0];
        if (cf.ra <= s && s < cf.rb) {
          sc[1] = sc[1] + r[N - 2];
          sc[2] = sc[2] + r[N - 1];
          const T d0 = r[N - 2] - tgt0, d1 = r[N - 1] - tgt1;
          L = L + (d0 * d0 + d1 * d1) / cf.window;
          sc[0] = L;
        } else {
          r[N - 2] = T(0);
          r[N - 1] = T(0);
        }
        if (s == cf.fa) {
          sc[3] = sc[2] > sc[1] ? T(1) : T(0);
          const T lb = lbar[combo];
          sc[4] = lb * (L - lb);
          lbar[combo] = cf.loss_decay * lb + cf.loss_gain * L;
        }
        if (cf.fa <= s && s < cf.fb) {
          const T rew = cf.reward_size * L;
          r[2] = r[3] = rew < T(0) ? T(0) : rew;
          r[5] = sc[3] == T(0) ? cf.signal_size : T(0);
          r[6] = sc[3] == T(1) ? cf.signal_size : T(0);
        } else {
          r[2] = r[3] = r[5] = r[6] = T(0);
        }
      });
      blk.sync();
      if (learn) {
        const T m = sc[4];
        blk.for_each(NN, [&](int64_t q) {
          const T dp = -(cf.eta * E[q] * m);
          P[q] = P[q] + (dp < -cf.max_dp ? -cf.max_dp : (dp > cf.max_dp ? cf.max_dp : dp));
          Wf[q] = W[q] + Pi[q] * P[q];
        });
        blk.sync();
      }
    }
    blk.single([&] {
      a.trial_loss[b * nt + t] = sc[0];
      a.trial_response[b * nt + t] = sc[3] == T(1) ? 1 : 0;
    });
    blk.sync();
  }
}

}  // namespace hebbkern::simt
