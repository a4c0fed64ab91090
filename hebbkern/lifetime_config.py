"""The lifetime op's schedule and constants (SPEC.md section 10), and the task set.

``LifetimeConfig`` holds the trial windows and the model's constants, with the public code's values
as defaults; the op passes them to the kernels as one integer list and one float list. ``TASKS``
maps each of the 14 two-stimulus tasks to its truth function, and :func:`make_trials` turns a task
per individual into the stimulus and target tensors the op takes, so any task set runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass

import torch
from torch import Tensor

# Neuron roles (SPEC.md section 10): 0, 1 stimulus; 2, 3 reward; 4 bias; 5, 6 response-given;
# the last two are the response neurons. N must leave room for all of them.
MIN_NEURONS = 9


@dataclass(frozen=True)
class LifetimeConfig:
    """Trial windows (steps, half-open ``[start, end)``) and constants of one lifetime."""

    steps: int = 50
    stim1: tuple[int, int] = (0, 8)
    stim2: tuple[int, int] = (10, 18)
    stim_clamp_end: int = 20
    response: tuple[int, int] = (25, 35)
    feedback: tuple[int, int] = (36, 46)
    noise_from_step: int = 2  # perturbations on steps >= this of each trial
    plastic_after_trial: int = 30  # P changes on trials > this
    quiet_trials: int = 20  # no perturbation in the last trials
    loss_trials: int = 100  # fitness = mean trial loss over the last trials
    dt_tau: float = 0.2
    elig_decay: float = 0.98
    eta: float = 0.03
    max_dp: float = 0.01
    noise_prob: float = 0.1
    noise_scale: float = 0.5
    loss_decay: float = 0.9
    stim_size: float = 3.0
    reward_size: float = 3.0
    signal_size: float = 3.0
    bias: float = 1.0
    target_lo: float = 0.1
    target_hi: float = 0.9

    def int_list(self) -> list[int]:
        return [
            self.steps,
            *self.stim1,
            *self.stim2,
            self.stim_clamp_end,
            *self.response,
            *self.feedback,
            self.noise_from_step,
            self.plastic_after_trial,
            self.quiet_trials,
            self.loss_trials,
        ]

    def float_list(self) -> list[float]:
        return [float(v) for v in astuple(self)[10:]]

    def check(self, n_trials: int) -> None:
        """ValueError naming the field when the windows do not fit a trial or the lifetime."""
        T = self.steps
        if T < 1:
            raise ValueError(f"config.steps must be >= 1, got {T}")
        for name in ("stim1", "stim2", "response", "feedback"):
            a, b = getattr(self, name)
            if not 0 <= a <= b <= T:
                raise ValueError(f"config.{name} must satisfy 0 <= start <= end <= steps ({T})")
        ra, rb = self.response
        fa, fb = self.feedback
        if ra == rb:
            raise ValueError("config.response must not be empty")
        if not rb <= fa < fb:
            raise ValueError(
                "config.feedback must be non-empty and start at or after response's end"
            )
        if not 0 <= self.stim_clamp_end <= T:
            raise ValueError(
                f"config.stim_clamp_end must lie in [0, steps], got {self.stim_clamp_end}"
            )
        for name in ("noise_from_step", "quiet_trials"):
            if getattr(self, name) < 0:
                raise ValueError(f"config.{name} must be >= 0")
        if not 1 <= self.loss_trials <= n_trials:
            raise ValueError(
                f"config.loss_trials must lie in [1, n_trials] ({n_trials}), got {self.loss_trials}"
            )


def _bits(s1: Tensor, s2: Tensor) -> dict:
    a, b = s1.bool(), s2.bool()
    return {
        "and": a & b,
        "nand": ~(a & b),
        "01": ~a & b,
        "anti01": ~(~a & b),
        "10": a & ~b,
        "anti10": ~(a & ~b),  # the public code computes '10' here
        "watchstim1": a,
        "watchstim2": b,
        "antiwatchstim1": ~a,
        "antiwatchstim2": ~b,
        "or": a | b,
        "nor": ~(a | b),  # the public code computes clip(1 - s1 + s2, 0, 1) here
        "dms": a == b,
        "dnms": a != b,
    }


TASKS: tuple[str, ...] = tuple(_bits(torch.zeros(1), torch.zeros(1)).keys())
HELD_OUT: tuple[str, ...] = ("dms", "dnms")
TRAINING_TASKS: tuple[str, ...] = tuple(t for t in TASKS if t not in HELD_OUT)


def task_targets(task: str, s1: Tensor, s2: Tensor) -> Tensor:
    """The target bit (float 0/1) of ``task`` for stimulus bits ``s1``, ``s2``."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return _bits(s1, s2)[task].to(s1.dtype)


def make_trials(
    tasks: Sequence[str],
    n_trials: int,
    generator: torch.Generator | None = None,
    *,
    dtype=torch.float64,
) -> tuple[Tensor, Tensor]:
    """Random stimuli and the targets of each individual's task.

    Returns ``stimuli`` ``[B, n_trials, 2]`` (bits s1, s2, uniform) and ``targets``
    ``[B, n_trials]`` for ``B = len(tasks)``.
    """
    B = len(tasks)
    stimuli = torch.randint(0, 2, (B, n_trials, 2), generator=generator).to(dtype)
    targets = torch.empty(B, n_trials, dtype=dtype)
    for b, task in enumerate(tasks):
        targets[b] = task_targets(task, stimuli[b, :, 0], stimuli[b, :, 1])
    return stimuli, targets
