"""``hebbkern.evolve``: antithetic evolution strategies over a population of plastic networks.

The loop of SPEC.md section 10 (Miconi, ICML 2023): each generation mutates the mean ``[W, Pi]``
into a population with antithetic noise, runs every individual's lifetime in one
:func:`hebbkern.lifetime` call, and feeds the estimate ``g = sum_b eps_b loss_b / (B sigma^2)`` to
Adam; every ``test_every``-th generation runs the held-out task (DMS) with the unmutated mean and no
update.

:class:`Evolution` keeps the mean, the Adam state and the random state, so ``state_dict`` /
``load_state_dict`` (and :meth:`Evolution.run`'s ``checkpoint``) resume a run exactly. With
``torch.distributed`` initialised, each process runs its slice of the population and one all-gather
per generation shares the losses; every process then takes the same step.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .lifetime_config import HELD_OUT, TRAINING_TASKS, LifetimeConfig, make_trials
from .ops.lifetime import lifetime

# Neurons whose incoming connections start at zero (SPEC.md section 10): the inputs (clamped) and
# the modulatory outputs.
_INPUTS = 5


@dataclass
class EvolveConfig:
    """Settings of an evolution run (defaults: the public code's full size)."""

    n_neurons: int = 70
    population: int = 500
    n_trials: int = 400
    sigma: float = 0.03
    lr: float = 1e-2
    weight_decay: float = 3e-4
    test_every: int = 10
    test_task: str = "dms"
    plastic: bool = True  # False: the Pi = 0 control (W evolves, Pi stays 0)
    init_scale: float = 1.5
    init_pi: float = 0.5
    seed: int = 0
    dtype: torch.dtype = torch.float32
    # Where the mean and the lifetimes live ("cuda" for the CUDA kernel, and NCCL across GPUs); the
    # random draws are made on the CPU generator either way, so runs are device-independent.
    device: str = "cpu"
    lifetime: LifetimeConfig = field(default_factory=LifetimeConfig)

    def __post_init__(self):
        if self.population < 2 or self.population % 2:
            raise ValueError(f"population must be even and >= 2, got {self.population}")
        if self.sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        if self.test_every < 1:
            raise ValueError(f"test_every must be >= 1, got {self.test_every}")


def es_gradient(eps: Tensor, losses: Tensor, sigma: float) -> Tensor:
    """The antithetic ES estimate ``sum_b eps_b loss_b / (B sigma^2)`` (eps ``[B, ...]``)."""
    B = eps.shape[0]
    return torch.tensordot(losses.to(eps.dtype), eps, dims=1) / (B * sigma * sigma)


def _dist():
    """(rank, world size) of the default process group, (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class Evolution:
    """An ES run: the mean ``w``, ``pi`` (``[N, N]``), Adam, and the random state."""

    def __init__(self, config: EvolveConfig | None = None, *, backend: str | None = None):
        self.config = cfg = config or EvolveConfig()
        self.backend = backend
        N = cfg.n_neurons
        self.generator = torch.Generator().manual_seed(cfg.seed)
        w = (
            torch.randn(N, N, generator=self.generator, dtype=torch.float64)
            * cfg.init_scale
            / N**0.5
        )
        w[:, :_INPUTS] = 0  # [pre, post]: nothing flows into the input neurons
        w[:, N - 4 : N - 2] = 0  # nor into the modulatory neurons
        dev = torch.device(cfg.device)
        self.w = w.to(dtype=cfg.dtype, device=dev)
        pi0 = cfg.init_pi if cfg.plastic else 0.0
        self.pi = torch.full((N, N), pi0, dtype=cfg.dtype, device=dev)
        params = [self.w, self.pi] if cfg.plastic else [self.w]
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.generation = 0
        self.history: list[dict] = []
        self.last: dict = {}

    # -- one generation -------------------------------------------------------------------------

    def is_test(self, generation: int) -> bool:
        return generation % self.config.test_every == 0

    def _mutations(self) -> tuple[Tensor, Tensor]:
        """Antithetic noise ``[B, N, N]`` for W, Pi: ``eps[B/2 + b] = -eps[b]``, ``eps[0] = 0``."""
        cfg = self.config
        half, N = cfg.population // 2, cfg.n_neurons
        out = []
        for evolved in (True, cfg.plastic):
            e = torch.randn(half, N, N, generator=self.generator, dtype=torch.float64) * cfg.sigma
            e[0] = 0
            if not evolved:
                e.zero_()
            out.append(torch.cat([e, -e]).to(dtype=cfg.dtype, device=cfg.device))
        return out[0], out[1]

    def _tasks(self, test: bool) -> tuple[list[str], Tensor, Tensor, Tensor]:
        """Tasks, stimuli, targets and noise keys of the whole population; partners share them."""
        cfg = self.config
        B, half = cfg.population, cfg.population // 2
        if test:
            tasks = [cfg.test_task] * B
            stimuli, targets = make_trials(tasks, cfg.n_trials, self.generator, dtype=cfg.dtype)
            dev = cfg.device
            return tasks, stimuli.to(dev), targets.to(dev), torch.arange(B, device=dev)
        training = [t for t in TRAINING_TASKS if t not in HELD_OUT + (cfg.test_task,)]
        pick = torch.randint(0, len(training), (half,), generator=self.generator)
        tasks = [training[i] for i in pick.tolist()]
        stimuli, targets = make_trials(tasks, cfg.n_trials, self.generator, dtype=cfg.dtype)
        keys = torch.arange(half, device=cfg.device)
        stimuli, targets = stimuli.to(cfg.device), targets.to(cfg.device)
        return tasks * 2, stimuli.repeat(2, 1, 1), targets.repeat(2, 1), torch.cat([keys, keys])

    def _population_losses(self, w, pi, stimuli, targets, keys, seed):
        """Lifetimes of this process's slice, then one all-gather of (loss, correct) [B, 2]."""
        rank, world = _dist()
        B = w.shape[0]
        if B % world:
            raise ValueError(f"population ({B}) must be divisible by the world size ({world})")
        lo, hi = rank * B // world, (rank + 1) * B // world
        out = lifetime(
            w[lo:hi].contiguous(),
            pi[lo:hi].contiguous(),
            stimuli[lo:hi],
            targets[lo:hi],
            seed=seed,
            noise_key=keys[lo:hi],
            config=self.config.lifetime,
            backend=self.backend,
        )
        mine = torch.stack([out.loss, out.correct], 1)
        if world == 1:
            return mine
        parts = [torch.empty_like(mine) for _ in range(world)]
        torch.distributed.all_gather(parts, mine)
        return torch.cat(parts)

    @torch.no_grad()
    def step(self) -> dict:
        """Runs one generation (a test generation every ``test_every``) and returns its record."""
        cfg = self.config
        tic = time.perf_counter()
        gen, test = self.generation, self.is_test(self.generation)
        if cfg.plastic:
            self.pi.clamp_(min=0)
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        _, stimuli, targets, keys = self._tasks(test)
        B = cfg.population
        if test:
            eps_w = eps_pi = torch.zeros(
                B, cfg.n_neurons, cfg.n_neurons, dtype=cfg.dtype, device=cfg.device
            )
        else:
            eps_w, eps_pi = self._mutations()
        w = self.w + eps_w
        pi = self.pi + eps_pi
        res = self._population_losses(w, pi, stimuli, targets, keys, seed)
        loss, correct = res[:, 0], res[:, 1]
        if not test:
            self.w.grad = es_gradient(eps_w, loss, cfg.sigma)
            if cfg.plastic:
                self.pi.grad = es_gradient(eps_pi, loss, cfg.sigma)
            self.optimizer.step()
            if cfg.plastic:
                self.pi.clamp_(min=0)
        self.last = dict(eps_w=eps_w, eps_pi=eps_pi, loss=loss, seed=seed)
        rec = dict(
            generation=gen,
            kind="test" if test else "train",
            loss_mean=float(loss.mean()),
            loss_0=float(loss[0]),
            correct_mean=float(correct.mean()),
            correct_0=float(correct[0]),
            seconds=time.perf_counter() - tic,
        )
        self.history.append(rec)
        self.generation += 1
        return rec

    # -- checkpoints, logs, the loop --------------------------------------------------------------

    def state_dict(self) -> dict:
        return dict(
            config=dataclasses.asdict(self.config),
            w=self.w.clone(),
            pi=self.pi.clone(),
            optimizer=self.optimizer.state_dict(),
            generator=self.generator.get_state(),
            generation=self.generation,
            history=list(self.history),
        )

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.w.copy_(state["w"])
            self.pi.copy_(state["pi"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.generation = int(state["generation"])
        self.history = list(state["history"])

    def run(
        self,
        generations: int,
        *,
        checkpoint: str | None = None,
        csv_path: str | None = None,
        png_path: str | None = None,
        progress: bool = True,
        label: str = "evolve",
    ) -> list[dict]:
        """Runs until ``generations`` generations are done.

        Resumes from ``checkpoint`` if it exists and saves it after each generation; writes the
        history as CSV and a PNG learning curve at the end.
        """
        rank, _ = _dist()
        if checkpoint and os.path.exists(checkpoint):
            self.load_state_dict(torch.load(checkpoint, weights_only=False))
        bar = None
        if progress and rank == 0:
            try:  # tqdm is optional (hebbkern[evolve]); without it the run shows no bar
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                bar = tqdm(total=generations, initial=self.generation, desc=label, unit="gen")
        while self.generation < generations:
            rec = self.step()
            if rank == 0:
                if checkpoint:
                    tmp = checkpoint + ".tmp"
                    torch.save(self.state_dict(), tmp)
                    os.replace(tmp, checkpoint)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        kind=rec["kind"],
                        correct=f"{rec['correct_mean']:.2f}",
                        loss=f"{rec['loss_mean']:.3f}",
                    )
        if bar is not None:
            bar.close()
        if rank == 0 and csv_path:
            write_csv(self.history, csv_path)
        if rank == 0 and png_path:
            plot_curves({label: self.history}, png_path)
        return self.history


def write_csv(history: list[dict], path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def pyplot(what: str):
    """matplotlib's pyplot on the Agg backend; ImportError naming ``what`` without matplotlib."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError(
            f"{what} needs matplotlib: pip install matplotlib (or hebbkern[evolve])"
        ) from e

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def finish_percent_axes(ax, xlabel: str, ylabel: str, fontsize: int = 8) -> None:
    """A % correct panel: the 50% chance line, labels, legend."""
    ax.axhline(50, color="grey", lw=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=fontsize)


def save_figure(plt, fig, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(runs: dict[str, list[dict]], path: str) -> None:
    """% correct over generations: training generations and held-out test generations, per run."""
    plt = pyplot("png_path")
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, history in runs.items():
        for kind, style in (("train", ":"), ("test", "-o")):
            rows = [h for h in history if h["kind"] == kind]
            if rows:
                ax.plot(
                    [h["generation"] for h in rows],
                    [100 * h["correct_mean"] for h in rows],
                    style,
                    markersize=3,
                    label=f"{label}: {'training tasks' if kind == 'train' else 'held-out DMS'}",
                )
    finish_percent_axes(
        ax, "generation", "% correct (last trials of the lifetime, population mean)"
    )
    save_figure(plt, fig, path)
