"""Evolve plastic networks on 12 two-stimulus tasks; test them on DMS, never seen during evolution.

The claim of Miconi (ICML 2023), SPEC.md section 10: networks evolved with reward-modulated
Hebbian plasticity learn a held-out task (delayed match-to-sample, DMS) within their lifetime. The
control is the same evolution with the plasticity coefficients Pi fixed at 0. Every
``--test-every``-th generation runs DMS with the unmutated mean network: the reported % correct is
over the last ``loss_trials`` trials of each lifetime, averaged over the population.

    python examples/evolve_dms.py               # reduced size, a few minutes on 2 shared cores
    python examples/evolve_dms.py --full        # the paper's size: population 500, N 70,
                                                # 400 trials x 50 steps, 1000 generations

Writes examples/evolve_dms.csv (both runs' histories) and examples/evolve_dms.png (% correct on
the training tasks and on DMS over generations), and checkpoints under --checkpoint-dir, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from hebbkern.evolve import Evolution, EvolveConfig, plot_curves
from hebbkern.lifetime_config import LifetimeConfig

HERE = Path(__file__).resolve().parent


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="the paper's size (about half a day)")
    p.add_argument("--population", type=int, default=96)
    p.add_argument("--neurons", type=int, default=24)
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--generations", type=int, default=101)
    p.add_argument("--test-every", type=int, default=10)
    p.add_argument("--lr", type=float, default=3e-2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=HERE / "evolve_dms")
    a = p.parse_args(argv)
    if a.full:
        a.population, a.neurons, a.trials, a.generations, a.lr = 500, 70, 400, 1000, 1e-2
    return a


def lifetime_config(trials: int) -> LifetimeConfig:
    """The public schedule, with the trial counts scaled to a shorter lifetime."""
    if trials == 400:
        return LifetimeConfig()
    return LifetimeConfig(
        plastic_after_trial=max(1, trials * 30 // 400),
        quiet_trials=max(1, trials * 20 // 400),
        loss_trials=max(1, trials // 4),
    )


def main(argv=None) -> int:
    a = parse(argv)
    torch.set_num_threads(a.threads)
    life = lifetime_config(a.trials)
    runs = {}
    for label, plastic in (("plastic", True), ("Pi = 0 control", False)):
        cfg = EvolveConfig(
            n_neurons=a.neurons, population=a.population, n_trials=a.trials, lr=a.lr,
            test_every=a.test_every, plastic=plastic, seed=a.seed, lifetime=life,
        )  # fmt: skip
        evo = Evolution(cfg)
        ckpt = None
        if a.checkpoint_dir:
            a.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            ckpt = str(a.checkpoint_dir / f"evolve_dms_{'plastic' if plastic else 'control'}.pt")
        tic = time.perf_counter()
        history = evo.run(a.generations, checkpoint=ckpt, label=label)
        secs = time.perf_counter() - tic
        runs[label] = history
        tests = [h for h in history if h["kind"] == "test"]
        per_gen = sum(h["seconds"] for h in history) / len(history)
        print(
            f"\n{label}: {a.generations} generations in {secs:.0f} s ({per_gen:.2f} s/generation)"
        )
        scores = [f"g{h['generation']}: {100 * h['correct_mean']:.1f}" for h in tests]
        print("  DMS % correct at test generations: " + ", ".join(scores))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out.with_suffix(".csv"), "w", newline="") as f:
        rows = [dict(run=k, **h) for k, hs in runs.items() for h in hs]
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_curves(runs, str(a.out.with_suffix(".png")))
    best = {
        k: max(100 * h["correct_mean"] for h in hs if h["kind"] == "test") for k, hs in runs.items()
    }
    last = {
        k: 100 * [h for h in hs if h["kind"] == "test"][-1]["correct_mean"]
        for k, hs in runs.items()
    }
    print(
        f"\nsize: population {a.population}, N {a.neurons}, "
        f"{a.trials} trials x {life.steps} steps, {a.generations} generations"
    )
    for k in runs:
        print(
            f"  {k:>15}: DMS % correct at the last test generation {last[k]:.1f} "
            f"(best {best[k]:.1f})"
        )
    print(f"wrote {a.out.with_suffix('.csv')}, {a.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
