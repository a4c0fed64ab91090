// Plain argument structs of the CPU plastic_lstm kernels and their per-ISA entry points.
//
// As for plastic_rnn, the per-sample kernels (plastic_lstm_kernel.cpp) are compiled once per
// instruction set and picked at run time (isa.h); only these POD structs cross between the
// torch-facing code (plastic_lstm.cpp) and the ISA-specific translation units.
#pragma once

#include <cstdint>

#include "hebbkern/plastic_rules.h"
#include "isa.h"

namespace hebbkern {
namespace cpu {

template <typename T>
struct LstmArgs {
  int64_t T_, B, N, K;  // steps, batch, hidden size, checkpoint interval
  const T* A;           // alpha: row i at A + i * a_stride
  int64_t a_stride;     // N (per connection) or 0 (per post neuron, scalar: one shared row)
  const T* mod_w;       // [N] or null
  const T* fan_w;       // [N] or null
  const T* fan_b;       // [N] or null
  T eta, mod_b, clip;   // clip: the update's bound (infinite with the read-out clip)
  // The variants of SPEC.md section 2.1: the read-out clip (its bound) and the post-synaptic term
  // (LstmPost in csrc/plastic_lstm.h: 0 candidate, 1 drive, 2 cell, 3 hidden).
  bool read;
  T read_clip;
  int post;
};

// One sample, one step of the forward.
template <typename T>
struct LstmFwdStep {
  T* G;  // in: gate pre-activations without the plastic term [4N] (post "drive": h_{t-1} wh only,
         // u not added); out: activated, and with post "drive" the drive in G[4N, 5N)
  const T* u;        // post "drive": the step's gate inputs [4N], else null
  T* q;              // in: this step's plastic term [N]; out: the next step's (when need_q)
  const T *hp, *cp;  // h_{t-1}, c_{t-1}
  T *ho, *co;        // out: h_t, c_t
  T *H, *E;          // trace (and eligibility) [N, N], advanced in place
  T* mod_out;        // out: the neuromodulator m_t (modulated rules)
  bool need_q;
  T* mm;  // scratch [N]
};

// One sample, one step of the backward.
template <typename T>
struct LstmBwdStep {
  const T *Hp, *Ep;      // trace and eligibility before the step [N, N]
  const T *hp, *cp;      // h_{t-1}, c_{t-1}
  const T *hc, *cc, *G;  // h_t, c_t, activated gates [4N]
  const T* y;            // the step's post-synaptic term (g_t, the drive, c_t or h_t) [N]
  T m;                   // neuromodulator of the step
  const T *gh, *gc;      // incoming output gradients of the step, or null
  T *dH, *dE;            // adjoints of H_t, E_t in; of H_{t-1}, E_{t-1} out
  const T* dh_next;      // adjoint of h_t from the later steps' gates
  T* dc;                 // adjoint of c_t from later steps in; of c_{t-1} out
  T *du, *dpre;          // out: gate pre-activation adjoints [4N]; adjoint of h_{t-1} (partial)
  T* dug;                // post "drive": out: the candidate block of u's adjoint (du's block adds
                         // the drive's adjoint, which reaches wh and h_{t-1} but not u)
  T *dA, *deta, *dmw, *dmb, *dfw, *dfb;  // per-sample accumulators
  T *mm, *dpost, *dmm;                   // scratch [N] each
};

#define HEBBKERN_DECLARE_LSTM_ISA(ns)                                                             \
  namespace ns {                                                                                  \
  void lstm_plastic_term(const LstmArgs<float>& p, const float* h, const float* H, float* q);     \
  void lstm_plastic_term(const LstmArgs<double>& p, const double* h, const double* H, double* q); \
  void lstm_forward_step(Rule r, const LstmArgs<float>& p, const LstmFwdStep<float>& s);          \
  void lstm_forward_step(Rule r, const LstmArgs<double>& p, const LstmFwdStep<double>& s);        \
  void lstm_trace_step(Rule r, const LstmArgs<float>& p, const float* hp, const float* g,         \
                       const float* mm, const float* Hi, const float* Ei, float* Ho, float* Eo);  \
  void lstm_trace_step(Rule r, const LstmArgs<double>& p, const double* hp, const double* g,      \
                       const double* mm, const double* Hi, const double* Ei, double* Ho,          \
                       double* Eo);                                                               \
  void lstm_backward_step(Rule r, const LstmArgs<float>& p, const LstmBwdStep<float>& s);         \
  void lstm_backward_step(Rule r, const LstmArgs<double>& p, const LstmBwdStep<double>& s);       \
  }

HEBBKERN_FOR_EACH_CPU_ISA(HEBBKERN_DECLARE_LSTM_ISA)

}  // namespace cpu
}  // namespace hebbkern
