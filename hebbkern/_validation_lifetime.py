"""Argument checks of ``hebbkern.lifetime``: TypeError/ValueError naming the argument, before any
kernel runs (same contract as ``_validation.py``)."""

from __future__ import annotations

from numbers import Integral

import torch
from torch import Tensor

from ._validation import check_like, check_tensor
from .lifetime_config import MIN_NEURONS, LifetimeConfig


def check_lifetime_args(
    w, pi, stimuli, targets, seed, noise_key, config
) -> tuple[Tensor, LifetimeConfig]:
    """Checks everything; returns the noise keys (default ``arange(B)``) and the config."""
    w = check_tensor("w", w)
    if w.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"w must be float32 or float64, got {w.dtype}")
    if w.dim() != 3 or w.shape[1] != w.shape[2]:
        raise ValueError(f"w must have shape [B, N, N], got {list(w.shape)}")
    B, N = w.shape[0], w.shape[1]
    if N < MIN_NEURONS:
        raise ValueError(
            f"w must have N >= {MIN_NEURONS} neurons (inputs 0-6, two responses), got {N}"
        )
    check_like("pi", check_tensor("pi", pi), w, "w", (B, N, N))
    stimuli = check_tensor("stimuli", stimuli)
    if stimuli.dim() != 3 or stimuli.shape[0] != B or stimuli.shape[2] != 2 or stimuli.shape[1] < 1:
        raise ValueError(
            f"stimuli must have shape [B={B}, n_trials >= 1, 2], got {list(stimuli.shape)}"
        )
    n_trials = stimuli.shape[1]
    check_like("stimuli", stimuli, w, "w", (B, n_trials, 2))
    check_like("targets", check_tensor("targets", targets), w, "w", (B, n_trials))
    if not bool(((stimuli == 0) | (stimuli == 1)).all()):
        raise ValueError("stimuli must hold stimulus bits (0 or 1)")
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= seed < 2**63:
        raise TypeError(f"seed must be an int in [0, 2^63), got {seed!r}")
    if noise_key is None:
        noise_key = torch.arange(B, device=w.device)
    noise_key = check_tensor("noise_key", noise_key)
    if noise_key.dtype != torch.int64:
        raise TypeError(f"noise_key must be int64, got {noise_key.dtype}")
    if tuple(noise_key.shape) != (B,) or noise_key.device != w.device:
        raise ValueError(
            f"noise_key must have shape [{B}] on {w.device}, "
            f"got {list(noise_key.shape)} on {noise_key.device}"
        )
    if B and not bool(((noise_key >= 0) & (noise_key < 2**32)).all()):
        raise ValueError("noise_key values must lie in [0, 2^32)")
    if config is None:
        config = LifetimeConfig()
    if not isinstance(config, LifetimeConfig):
        raise TypeError(f"config must be a LifetimeConfig, got {type(config).__name__}")
    config.check(n_trials)
    if n_trials * config.steps >= 2**32:
        raise ValueError(
            "stimuli: n_trials * config.steps must be < 2^32 (the Philox step counter)"
        )
    return noise_key, config
