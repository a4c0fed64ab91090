// The input, output and saved-state pointers of the plastic_rnn kernels, shared by the CPU kernels
// (csrc/cpu/plastic_rnn_kernel.h) and the CUDA block kernels (plastic_rnn_block.h): the
// torch-facing code fills them once (csrc/plastic_rnn_args.h) for either.
#pragma once

#include <cstdint>

namespace hebbkern {

// The inputs every plastic_rnn kernel reads (CPU: cpu::RnnArgs adds eta and mod_b by value; CUDA:
// simt::RnnParams adds them as device pointers).
template <typename T>
struct RnnInputs {
  int64_t T_, B, N, K;  // steps, batch, neurons, checkpoint interval (K <= T_)
  const T* u;           // [T, B, N]
  const T* w;           // [N, N], or [B, N, N] per sample: sample b's at w + b * w_bstride
  const T* A;           // alpha: row i of sample b at A + b * a_bstride + i * a_stride
  int64_t a_stride;     // N (per connection) or 0 (per post neuron or scalar: one shared row)
  // Per-sample parameters (a population, SPEC.md section 1): 0 when shared by the batch, else the
  // distance between samples: w N * N; alpha N * N (per connection) or N (one row per sample);
  // eta 1 (one per sample).
  int64_t w_bstride, a_bstride, eta_bstride;
  const T* h0;        // [B, N] or null (zeros)
  const T* hebb0;     // [B, N, N] or null
  const T* elig0;     // [B, N, N] or null
  const bool* clamp;  // [T, B, N] or null
  const T* mod_w;     // [N] or null
  const T* fan_w;     // [N] or null
  const T* fan_b;     // [N] or null
  T clip;
  // SPEC.md section 1.1 (zero: section 1): activation and modulator squash codes (Act, Squash of
  // plastic_rules.h), number of unmodulated post-synaptic neurons (the last ones).
  int act, squash;
  int64_t n_unmod;
  // 1 / clip, for the soft clip (computed once on the host: a division per element made the CUDA
  // backward spill registers).
  T inv_clip;
};

template <typename T>
struct RnnFwdOut {
  T* h;       // [T, B, N]
  T* hebb_T;  // [B, N, N]
  T* elig_T;  // [B, N, N] (retro)
  T* ck_h;    // [C, B, N, N]
  T* ck_e;    // [C, B, N, N] (retro)
  T* mod;     // [T, B] (modulated rules)
};

template <typename T>
struct RnnBwdIn {
  const T* gh;    // [T, B, N] or null
  const T* gH;    // [B, N, N] or null
  const T* gE;    // [B, N, N] or null
  const T* h;     // [T, B, N]
  const T* ck_h;  // [C, B, N, N]
  const T* ck_e;  // [C, B, N, N] (retro)
  const T* mod;   // [T, B] (modulated rules)
};

template <typename T>
struct RnnBwdOut {
  // Per-sample accumulators (written whole by the kernel), reduced over the batch afterwards.
  T* dA;    // [B, N, N] (alpha per connection) or [B, N]
  T* deta;  // [B]
  T* dmw;   // [B, N] (modulated rules)
  T* dmb;   // [B]    (modulated rules)
  T* dfw;   // [B, N] (fan-out)
  T* dfb;   // [B, N] (fan-out)
  T* du;    // [T, B, N]
  T* da;    // [T, B, N]: adjoint of the drive a_t, for the dw GEMM
  T* dh0;   // [B, N]
  T* dH0;   // [B, N, N]
  T* dE0;   // [B, N, N] (retro)
};

}  // namespace hebbkern
