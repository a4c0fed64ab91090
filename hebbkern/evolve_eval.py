"""Does an evolved network learn within its lifetime? Paired lifetimes on a task and its complement.

The held-out score of :mod:`hebbkern.evolve` (% correct on DMS over the last trials) cannot tell
learning from a fixed bias: DMS is a fixed function of the two stimuli, so a network that never
changes can answer it. :func:`learning_test` runs the same network on DMS and on its complement
DNMS with the *same* stimuli and the *same* perturbation noise in each pair of lifetimes. A network
whose responses do not depend on the reward it receives gives the same response in both lifetimes
of a pair on every trial, so it is correct on exactly one of the two: its mean over the pair is
50% on every trial. Only adaptation to the reward (through plasticity, or through activity that the
reward inputs drive) lifts the pair mean above 50%, and learning shows as a rise from the early
trials (before plasticity starts) to the late ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .evolve import finish_percent_axes, pyplot, save_figure
from .lifetime_config import LifetimeConfig, make_trials, task_targets
from .ops.lifetime import lifetime


@dataclass
class LearningTest:
    """Per-trial correctness of paired lifetimes.

    ``correct`` ``[n_tasks, lifetimes, n_trials]`` (0/1, float64): lifetime l of every task shares
    its stimuli and noise with lifetime l of the others.
    """

    tasks: tuple[str, ...]
    correct: Tensor

    def window(self, start: int, end: int) -> Tensor:
        """Fraction correct over trials ``[start, end)``, ``[n_tasks, lifetimes]``."""
        n = self.correct.shape[-1]
        if not 0 <= start < end <= n:
            raise ValueError(f"window must satisfy 0 <= start < end <= n_trials ({n})")
        return self.correct[..., start:end].mean(-1)

    def pair_mean(self, start: int, end: int) -> Tensor:
        """Mean over the tasks of the fraction correct over ``[start, end)``, ``[lifetimes]``
        (exactly 0.5 for complementary tasks and a network that ignores the reward)."""
        return self.window(start, end).mean(0)

    def curve(self, bin_trials: int) -> Tensor:
        """Fraction correct per block of ``bin_trials`` trials, ``[n_tasks, lifetimes, n_bins]``
        (a last partial block is dropped)."""
        n_bins = self.correct.shape[-1] // bin_trials
        if n_bins < 1:
            raise ValueError(f"bin_trials must be in [1, n_trials], got {bin_trials}")
        c = self.correct[..., : n_bins * bin_trials]
        return c.reshape(*c.shape[:-1], n_bins, bin_trials).mean(-1)


def mean_sem(x: Tensor) -> tuple[float, float]:
    """Mean and standard error of the mean over the last dimension (lifetimes)."""
    n = x.shape[-1]
    sem = float(x.std(-1) / n**0.5) if n > 1 else float("nan")
    return float(x.mean(-1)), sem


@torch.no_grad()
def learning_test(
    w: Tensor,
    pi: Tensor,
    *,
    n_trials: int,
    lifetimes: int = 32,
    tasks: Sequence[str] = ("dms", "dnms"),
    seed: int = 0,
    config: LifetimeConfig | None = None,
    backend: str | None = None,
) -> LearningTest:
    """Runs the network ``w``, ``pi`` (``[N, N]``) for ``lifetimes`` lifetimes on each task, in one
    :func:`hebbkern.lifetime` call; lifetime l of every task has the same stimuli and noise key.

    ``seed`` fixes the stimuli and the noise, so networks compared with the same seed see the same
    lifetimes. Pass ``pi = 0`` to switch plasticity off at test time.
    """
    if w.dim() != 2 or w.shape != pi.shape:
        raise ValueError(f"w and pi must both be [N, N], got {tuple(w.shape)}, {tuple(pi.shape)}")
    if lifetimes < 1:
        raise ValueError(f"lifetimes must be >= 1, got {lifetimes}")
    tasks = tuple(tasks)
    if not tasks:
        raise ValueError("tasks must not be empty")
    gen = torch.Generator().manual_seed(seed)
    stimuli, _ = make_trials(["dms"] * lifetimes, n_trials, gen, dtype=w.dtype)
    noise_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    targets = torch.cat(
        [task_targets(t, stimuli[..., 0], stimuli[..., 1]) for t in tasks]
    )  # [tasks * lifetimes, n_trials]
    k = len(tasks)
    B = k * lifetimes
    dev = w.device
    out = lifetime(
        w.expand(B, -1, -1).contiguous(),
        pi.expand(B, -1, -1).contiguous(),
        stimuli.repeat(k, 1, 1).to(dev),
        targets.to(dev),
        seed=noise_seed,
        noise_key=torch.arange(lifetimes, device=dev).repeat(k),
        config=config,
        backend=backend,
    )
    # The op's response is the argmax of the two response neurons; the right one is 1 iff y = 1.
    correct = (out.trial_response.cpu() == (targets > 0.5).long()).to(torch.float64)
    return LearningTest(tasks, correct.view(k, lifetimes, n_trials))


def windows(n_trials: int, config: LifetimeConfig) -> dict[str, tuple[int, int]]:
    """``early``: the trials whose responses come before any plastic change (P = 0 up to the
    feedback of trial ``plastic_after_trial + 1``); ``late``: the fitness window, the last
    ``loss_trials``."""
    return {
        "early": (0, min(n_trials, config.plastic_after_trial + 1)),
        "late": (n_trials - config.loss_trials, n_trials),
    }


def summarise_learning(res: LearningTest, wins: dict[str, tuple[int, int]]) -> dict[str, tuple]:
    """``{name: (mean, sem)}`` over lifetimes, in %: each task and the pair mean in each window,
    and ``pair_gain``, the per-lifetime rise of the pair mean from ``early`` to ``late``."""
    out = {}
    for win, (a, b) in wins.items():
        scores = res.window(a, b)
        for i, task in enumerate(res.tasks):
            out[f"{task}_{win}"] = mean_sem(100 * scores[i])
        out[f"pair_{win}"] = mean_sem(100 * scores.mean(0))
    if "early" in wins and "late" in wins:
        gain = res.pair_mean(*wins["late"]) - res.pair_mean(*wins["early"])
        out["pair_gain"] = mean_sem(100 * gain)
    return out


def plot_learning(
    finals: dict[str, LearningTest],
    over_generations: dict[str, list[tuple[int, float, float]]],
    bin_trials: int,
    path: str,
) -> None:
    """Left: % correct over the test lifetime (pair mean, solid; first task alone, dotted), mean
    and SEM over lifetimes, per network. Right: the late pair mean over generations per run."""
    plt = pyplot("plot_learning")
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for label, res in finals.items():
        curve = 100 * res.curve(bin_trials)  # [tasks, lifetimes, bins]
        x = (torch.arange(curve.shape[-1]) + 0.5) * bin_trials
        pair = curve.mean(0)
        m, s = pair.mean(0), pair.std(0) / pair.shape[0] ** 0.5
        (line,) = ax.plot(x, m, "-", label=f"{label}: {' + '.join(res.tasks)} mean")
        ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.2)
        ax.plot(x, curve[0].mean(0), ":", color=line.get_color(), label=f"{label}: {res.tasks[0]}")
    finish_percent_axes(
        ax, "trial of the test lifetime", f"% correct (blocks of {bin_trials} trials)", 7
    )
    ax.set_title("within one lifetime, after evolution")
    for label, rows in over_generations.items():
        g = [r[0] for r in rows]
        m = torch.tensor([r[1] for r in rows])
        s = torch.tensor([r[2] for r in rows])
        (line,) = bx.plot(g, m, "-o", markersize=3, label=label)
        bx.fill_between(g, m - s, m + s, color=line.get_color(), alpha=0.2)
    finish_percent_axes(bx, "generation", "DMS + DNMS mean % correct, late trials", 7)
    bx.set_title("learning the held-out pair, over evolution")
    save_figure(plt, fig, path)
