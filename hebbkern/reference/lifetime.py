"""Eager reference of ``hebbkern.lifetime``: a population's lifetimes, batched over individuals.

Written the way the public code writes it (``bmm`` of the rates with ``W + Pi * P``, outer products,
``clamp``), one torch call per operation per step for all B individuals at once; SPEC.md section 10
is the math. Forward only: it runs under ``torch.no_grad`` and computes no gradient (evolution
estimates the fitness gradient from the losses).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..lifetime_config import LifetimeConfig
from .philox import perturbation_uniforms


class LifetimeResult(NamedTuple):
    """Per-individual outcome of one lifetime.

    ``loss`` ``[B]``: mean trial loss over the last ``loss_trials`` (the fitness, lower is better);
    ``correct`` ``[B]``: fraction of correct responses over the same trials; ``trial_loss``
    ``[B, n_trials]``; ``trial_response`` ``[B, n_trials]`` (int64, 0 or 1); final state ``x``,
    ``r`` ``[B, N]``, ``p``, ``e`` ``[B, N, N]``, ``mean_loss`` ``[B, 4]``.
    """

    loss: Tensor
    correct: Tensor
    trial_loss: Tensor
    trial_response: Tensor
    x: Tensor
    r: Tensor
    p: Tensor
    e: Tensor
    mean_loss: Tensor


def summarise(trial_loss: Tensor, trial_response: Tensor, targets: Tensor, cfg: LifetimeConfig):
    """Fitness and fraction correct over the last ``cfg.loss_trials`` trials."""
    k = cfg.loss_trials
    ytil = targets.clamp(cfg.target_lo, cfg.target_hi)
    want = (ytil > 1 - ytil).to(torch.int64)
    loss = trial_loss[:, -k:].mean(1)
    correct = (trial_response[:, -k:] == want[:, -k:]).to(trial_loss.dtype).mean(1)
    return loss, correct


@torch.no_grad()
def lifetime(
    w: Tensor,
    pi: Tensor,
    stimuli: Tensor,
    targets: Tensor,
    *,
    seed: int,
    noise_key: Tensor,
    config: LifetimeConfig | None = None,
) -> LifetimeResult:
    """Lifetimes of B individuals (``w``, ``pi`` ``[B, N, N]``, ``[pre, post]``).

    ``stimuli`` ``[B, n_trials, 2]`` (bits), ``targets`` ``[B, n_trials]`` (target of the second
    response neuron), ``noise_key`` ``[B]`` int64 (antithetic partners share one), ``seed`` >= 0.
    """
    cfg = config or LifetimeConfig()
    B, N, _ = w.shape
    n_trials = stimuli.shape[1]
    dt, dev = w.dtype, w.device
    T = cfg.steps
    (s1a, s1b), (s2a, s2b) = cfg.stim1, cfg.stim2
    (ra, rb), (fa, fb) = cfg.response, cfg.feedback
    rows = torch.arange(B, device=dev)

    x = torch.full((B, N), 0.1, dtype=dt, device=dev)
    x[:, :5] = 0
    r = x.clone()
    r[:, 4] = cfg.bias
    p = torch.zeros_like(w)
    e = torch.zeros_like(w)
    mean_loss = torch.zeros(B, 4, dtype=dt, device=dev)
    trial_loss = torch.empty(B, n_trials, dtype=dt, device=dev)
    trial_response = torch.empty(B, n_trials, dtype=torch.int64, device=dev)
    resp = torch.zeros(B, dtype=torch.int64, device=dev)

    for t in range(n_trials):
        s1, s2 = stimuli[:, t, 0], stimuli[:, t, 1]
        ytil = targets[:, t].clamp(cfg.target_lo, cfg.target_hi)
        tgt = torch.stack([1 - ytil, ytil], 1)
        combo = (s1 > 0.5).long() * 2 + (s2 > 0.5).long()
        noisy = t < n_trials - cfg.quiet_trials
        L = torch.zeros(B, dtype=dt, device=dev)
        R = torch.zeros(B, 2, dtype=dt, device=dev)
        for s in range(T):
            x = x + cfg.dt_tau * (torch.bmm(r[:, None, :], w + pi * p)[:, 0] - x)
            if noisy and s >= cfg.noise_from_step:
                u0, u1 = perturbation_uniforms(seed, noise_key, t * T + s, N)
                delta = torch.where(
                    u0 < cfg.noise_prob, cfg.noise_scale * (2 * u1 - 1), torch.zeros_like(u1)
                ).to(dt)
                x = x + delta
                e = e + r[:, :, None] * delta[:, None, :]
            e = e * cfg.elig_decay
            r = torch.tanh(x)
            r[:, N - 2 :] = torch.sigmoid(x[:, N - 2 :])
            if s < cfg.stim_clamp_end and s1a <= s < s1b:
                v = 2 * s1 - 1
            elif s < cfg.stim_clamp_end and s2a <= s < s2b:
                v = 2 * s2 - 1
            else:
                v = torch.zeros_like(s1)
            r[:, 0] = cfg.stim_size * v
            r[:, 1] = -(cfg.stim_size * v)
            r[:, 4] = cfg.bias
            if ra <= s < rb:
                R = R + r[:, N - 2 :]
                L = L + ((r[:, N - 2 :] - tgt) ** 2).sum(1) / (rb - ra)
            else:
                r[:, N - 2 :] = 0
            if s == fa:
                resp = (R[:, 1] > R[:, 0]).long()  # argmax, ties to response 0
                lbar = mean_loss[rows, combo]
                if t > cfg.plastic_after_trial:
                    m = lbar * (L - lbar)
                    p = p + (-(cfg.eta * e * m[:, None, None])).clamp(-cfg.max_dp, cfg.max_dp)
                mean_loss[rows, combo] = cfg.loss_decay * lbar + (1 - cfg.loss_decay) * L
            if fa <= s < fb:
                r[:, 2:4] = (cfg.reward_size * L).clamp(min=0)[:, None]
                r[:, 5] = cfg.signal_size * (resp == 0).to(dt)
                r[:, 6] = cfg.signal_size * (resp == 1).to(dt)
            else:
                r[:, 2:4] = 0
                r[:, 5:7] = 0
        trial_loss[:, t] = L
        trial_response[:, t] = resp
    loss, correct = summarise(trial_loss, trial_response, targets, cfg)
    return LifetimeResult(loss, correct, trial_loss, trial_response, x, r, p, e, mean_loss)
