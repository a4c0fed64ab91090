// Plain argument structs of the CPU plastic_step kernels (one step of SPEC.md section 1) and the
// per-ISA entry points. Same split as plastic_rnn: the kernel body (plastic_step_kernel.cpp) is
// compiled once per instruction set and picked at run time (isa.h).
#pragma once

#include <cstdint>

#include "hebbkern/plastic_rules.h"
#include "isa.h"

namespace hebbkern {
namespace cpu {

template <typename T>
struct StepArgs {
  int64_t B, N;
  const T* u;         // [B, N]
  const T* h;         // [B, N]: h_{t-1}
  const T* hebb;      // [B, N, N]: H_{t-1}
  const T* elig;      // [B, N, N] (retro) or null
  const T* w;         // [N, N] or [B, N, N]
  int64_t w_bstride;  // 0 (shared) or N * N (per sample)
  const T* A;         // alpha: row i of sample b at A + b * a_bstride + i * a_stride
  int64_t a_stride;   // N (per connection) or 0 (per post neuron, scalar: one shared row)
  int64_t a_bstride;  // 0 (shared) or N * N (per sample)
  const bool* clamp;  // [B, N] or null
  const T* mod_w;     // [N] or null
  const T* fan_w;     // [N] or null
  const T* fan_b;     // [N] or null
  T eta, mod_b, clip;
  // SPEC.md section 1.1 (zero: section 1): activation and modulator squash codes, number of
  // unmodulated post-synaptic neurons (the last ones).
  int act, squash;
  int64_t n_unmod;
};

template <typename T>
struct StepFwdOut {
  T* h_new;     // [B, N]
  T* hebb_new;  // [B, N, N]
  T* elig_new;  // [B, N, N] (retro)
  T* mod;       // [B] (modulated rules)
};

template <typename T>
struct StepBwdIn {
  const T* gh;     // [B, N] or null
  const T* gH;     // [B, N, N] or null
  const T* gE;     // [B, N, N] or null
  const T* h_new;  // [B, N]
  const T* mod;    // [B] (modulated rules)
};

template <typename T>
struct StepBwdOut {
  T* du;  // [B, N]
  T* dh;  // [B, N]
  T* dH;  // [B, N, N]
  T* dE;  // [B, N, N] (retro)
  T* da;  // [B, N]: adjoint of the drive, for dw (a GEMM or outer products outside)
  // d alpha. Per connection: [ceil(B / dA_group), N, N], one slice per group of dA_group
  // consecutive samples, written by the group's first sample and accumulated by the others (a
  // group is never split between threads, so the sums do not depend on the thread count); per
  // sample alpha has dA_group = 1. Per neuron or scalar: [B, N], zeroed by the caller.
  T* dA;
  int64_t dA_group;
  // d w, grouped the same way: [ceil(B / dW_group), N, N]; per-sample w has dW_group = 1.
  T* dW;
  int64_t dW_group;
  T* deta;  // [B]
  T* dmw;   // [B, N] (modulated rules)
  T* dmb;   // [B]    (modulated rules)
  T* dfw;   // [B, N] (fan-out)
  T* dfb;   // [B, N] (fan-out)
};

// The phases of one sample's step (plastic_step_kernel.cpp); the *Matvec, FwdUpdate and BwdTrace
// phases take a row range, so that one sample's rows can be split over threads.
enum class StepPhase : int { FwdMatvec, FwdFinish, FwdUpdate, BwdTrace, BwdFinish, BwdMatvec };

// One call of a phase: sample b, rows [r0, r1) (rows are pre neurons in the pre_post layout, post
// neurons in post_pre). Buffers of [N]: col0/col1 the partials of this row chunk, scal its partial
// d eta; M (m_t), post_adj (d h_t) and dM (d m_t) the sample's. See the phase functions.
template <typename T>
struct StepPhaseArgs {
  // The instruction set of this op call's kernels, read once per call (active_isa reads the
  // environment: a getenv per phase was 3.6% of a small step, NOTES P12).
  Isa isa;
  StepPhase phase;
  Rule rule;
  bool post_pre;
  const StepArgs<T>* p;
  const StepFwdOut<T>* fo;
  const StepBwdIn<T>* bi;
  const StepBwdOut<T>* bo;
  int64_t b, r0, r1;
  T *col0, *col1, *scal, *M, *post_adj, *dM;
};

#define HEBBKERN_DECLARE_STEP_ISA(ns)              \
  namespace ns {                                   \
  void step_phase(const StepPhaseArgs<float>& a);  \
  void step_phase(const StepPhaseArgs<double>& a); \
  }

HEBBKERN_FOR_EACH_CPU_ISA(HEBBKERN_DECLARE_STEP_ISA)

}  // namespace cpu
}  // namespace hebbkern
