// Per-neuron pieces of the lifetime op (SPEC.md section 10) shared by the CPU kernel and any
// device kernel: the node perturbation drawn from Philox, and the schedule's layout. Nothing here
// depends on torch.
#pragma once

#include <cstdint>

#include "hebbkern/philox.h"

namespace hebbkern {
namespace lifetime {

// Positions in the op's integer list (hebbkern/lifetime_config.py, LifetimeConfig.int_list).
enum IntSlot : int {
  kSteps = 0,
  kStim1Start,
  kStim1End,
  kStim2Start,
  kStim2End,
  kStimClampEnd,
  kRespStart,
  kRespEnd,
  kFeedStart,
  kFeedEnd,
  kNoiseFromStep,
  kPlasticAfterTrial,
  kQuietTrials,
  kLossTrials,
  kNumInts
};
// Positions in the float list (LifetimeConfig.float_list).
enum FloatSlot : int {
  kDtTau = 0,
  kEligDecay,
  kEta,
  kMaxDp,
  kNoiseProb,
  kNoiseScale,
  kLossDecay,
  kStimSize,
  kRewardSize,
  kSignalSize,
  kBias,
  kTargetLo,
  kTargetHi,
  kNumFloats
};

// The schedule's windows and the step's constants in the kernel's type, read once from the op's
// lists: one reading for the CPU kernel and the device block, whose results must agree to rounding.
template <typename T>
struct Schedule {
  int64_t steps, ra, rb, fa, fb;  // steps per trial; response [ra, rb) and feedback [fa, fb)
  T dt_tau, decay, eta, max_dp, loss_decay, loss_gain;
  T stim_size, reward_size, signal_size, bias, lo, hi, window;

  HK_PHILOX_HD Schedule(const int64_t* iv, const double* fv)
      : steps(iv[kSteps]),
        ra(iv[kRespStart]),
        rb(iv[kRespEnd]),
        fa(iv[kFeedStart]),
        fb(iv[kFeedEnd]),
        dt_tau(T(fv[kDtTau])),
        decay(T(fv[kEligDecay])),
        eta(T(fv[kEta])),
        max_dp(T(fv[kMaxDp])),
        loss_decay(T(fv[kLossDecay])),
        loss_gain(T(1 - fv[kLossDecay])),
        stim_size(T(fv[kStimSize])),
        reward_size(T(fv[kRewardSize])),
        signal_size(T(fv[kSignalSize])),
        bias(T(fv[kBias])),
        lo(T(fv[kTargetLo])),
        hi(T(fv[kTargetHi])),
        window(T(iv[kRespEnd] - iv[kRespStart])) {}
};

// Perturbations of neurons 2 jp and 2 jp + 1 at global step k for noise key `key`:
// counter (jp, k, key, 0), key (seed lo, seed hi); words 0, 1 for the even neuron, 2, 3 for the
// odd.
template <typename T>
HK_PHILOX_HD void perturbation_pair(uint64_t seed, uint32_t key, uint32_t k, uint32_t jp,
                                    double prob, double scale, T& even, T& odd) {
  const philox::U32x4 w = philox::philox4x32_10(jp, k, key, 0u, static_cast<uint32_t>(seed),
                                                static_cast<uint32_t>(seed >> 32));
  even = philox::to_unit(w.v[0]) < prob ? static_cast<T>(scale * (2 * philox::to_unit(w.v[1]) - 1))
                                        : T(0);
  odd = philox::to_unit(w.v[2]) < prob ? static_cast<T>(scale * (2 * philox::to_unit(w.v[3]) - 1))
                                       : T(0);
}

}  // namespace lifetime
}  // namespace hebbkern
