"""``hebbkern.lifetime``: a whole population's lifetimes of the evolved plastic network, fused.

The kernel is the ``torch.ops.hebbkern.lifetime_fwd`` custom op (schema in csrc/ops.cpp, CPU kernel
csrc/cpu/lifetime.cpp); this file gives it a fake kernel and wraps it in the public function.
Forward only: evolution strategies estimate the fitness gradient, so no autograd is registered (the
op's outputs carry no gradient)."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _extension, backends
from .._validation_lifetime import check_lifetime_args
from ..lifetime_config import LifetimeConfig
from ..reference.lifetime import LifetimeResult, summarise
from ..reference.lifetime import lifetime as _reference_lifetime

if _extension.available():

    @torch.library.register_fake("hebbkern::lifetime_fwd")
    def _lifetime_fwd_fake(w, pi, stimuli, targets, noise_key, seed, schedule, constants):
        B, N = w.shape[0], w.shape[1]
        n_trials = stimuli.shape[1]
        return (
            w.new_empty(B, n_trials),
            w.new_empty(B, n_trials, dtype=torch.int64),
            w.new_empty(B, N),
            w.new_empty(B, N),
            w.new_empty(B, N, N),
            w.new_empty(B, N, N),
            w.new_empty(B, 4),
        )


# The reference's signature plus backend, written out: the public signature help() shows.
def lifetime(
    w: Tensor,
    pi: Tensor,
    stimuli: Tensor,
    targets: Tensor,
    *,
    seed: int,
    noise_key: Tensor | None = None,
    config: LifetimeConfig | None = None,
    backend: str | None = None,
) -> LifetimeResult:
    r"""Lifetimes of a population of evolved plastic networks (docs/SPEC.md section 10), one call.

    Each individual b has its own innate weights ``w[b]`` and plasticity coefficients ``pi[b]``
    (``[N, N]``, ``[pre, post]``) and lives ``n_trials`` trials of ``config.steps`` steps:
    ``x <- x + 0.2 (r (W + Pi * P) - x)``, node perturbation from a Philox stream keyed by
    ``(seed, noise_key[b], step, neuron)``, eligibility trace ``E``, and once per trial
    ``P <- P + clip(-eta E Lbar (L - Lbar))``. Nothing is reset between trials.

    Forward only, no autograd: the outputs carry no gradient (evolution strategies estimate the
    fitness gradient from ``loss``).

    Args:
        w, pi: ``[B, N, N]`` float32 or float64, N >= 9.
        stimuli: ``[B, n_trials, 2]`` stimulus bits (0/1) of each trial, w's dtype.
        targets: ``[B, n_trials]`` target bit of each trial (the second response neuron's), w's
            dtype; see :func:`hebbkern.lifetime_config.make_trials`.
        seed: int >= 0, the Philox key.
        noise_key: ``[B]`` int64 in ``[0, 2^32)`` (default ``arange(B)``); individuals with the
            same key (antithetic partners) get the same perturbations.
        config: trial windows and constants (default: the public code's).
        backend: ``None`` (the C++ kernel on CPU tensors), ``"reference"`` or ``"cpu"``.

    Returns:
        :class:`~hebbkern.reference.lifetime.LifetimeResult`: ``loss`` (mean trial loss over the
        last ``config.loss_trials`` trials: the fitness, lower is better), ``correct`` (fraction
        of correct responses there), per-trial losses and responses, and the final state.
    """
    noise_key, config = check_lifetime_args(w, pi, stimuli, targets, seed, noise_key, config)
    if backends.resolve(backend, w.device, family="lifetime") == "reference":
        return _reference_lifetime(
            w, pi, stimuli, targets, seed=seed, noise_key=noise_key, config=config
        )
    trial_loss, trial_response, x, r, p, e, mean_loss = torch.ops.hebbkern.lifetime_fwd(
        w, pi, stimuli, targets, noise_key, seed, config.int_list(), config.float_list()
    )
    loss, correct = summarise(trial_loss, trial_response, targets, config)
    return LifetimeResult(loss, correct, trial_loss, trial_response, x, r, p, e, mean_loss)
