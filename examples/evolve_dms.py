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

The DMS score alone cannot tell learning from a fixed bias (a fixed network can answer DMS). After
evolution the example therefore measures learning within the lifetime (hebbkern.evolve_eval):
each run's mean network at every test generation, and the plastic one with Pi set to 0 at test
time, on DMS and DNMS in paired lifetimes (same stimuli, same noise). A network that ignores the
reward scores exactly 50% on the pair's mean; learning lifts it above 50% in the late trials.
Writes <out>_learning.md (the table), <out>_learning.csv (every row) and <out>_learning.png.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from hebbkern.evolve import Evolution, EvolveConfig, plot_curves
from hebbkern.evolve_eval import learning_test, plot_learning, summarise_learning, windows
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
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument(
        "--eval-lifetimes", type=int, default=48,
        help="test lifetimes per task (DMS, DNMS) for the learning measurement",
    )  # fmt: skip
    p.add_argument("--eval-seed", type=int, default=1234)
    p.add_argument(
        "--only", choices=("plastic", "control"), default=None,
        help="evolve (and evaluate) one population only, e.g. to run the two in parallel",
    )  # fmt: skip
    p.add_argument("--smoke", action="store_true", help="a tiny run end to end (tests)")
    a = p.parse_args(argv)
    if a.full:
        a.population, a.neurons, a.trials, a.generations, a.lr = 500, 70, 400, 1000, 1e-2
    if a.smoke:
        a.population, a.neurons, a.trials, a.generations, a.test_every = 6, 10, 12, 4, 2
        a.eval_lifetimes, a.progress = 3, False
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


def evolve(a, life: LifetimeConfig, plastic: bool, label: str):
    """One evolution run, resumable; returns its history and ``{k: (w, pi)}``, the mean after k
    generations for each test generation k and the end (kept beside the checkpoint, so a resumed
    run still has the earlier ones)."""
    cfg = EvolveConfig(
        n_neurons=a.neurons, population=a.population, n_trials=a.trials, lr=a.lr,
        test_every=a.test_every, plastic=plastic, seed=a.seed, lifetime=life,
    )  # fmt: skip
    evo = Evolution(cfg)
    ckpt = means_path = None
    means: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    if a.checkpoint_dir:
        a.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tag = "plastic" if plastic else "control"
        ckpt = str(a.checkpoint_dir / f"evolve_dms_{tag}.pt")
        means_path = a.checkpoint_dir / f"evolve_dms_{tag}_means.pt"
        if means_path.exists():
            means = torch.load(means_path, weights_only=False)
    tic = time.perf_counter()
    # Run up to each test generation in turn and keep the mean it tests.
    for stop in [*range(0, a.generations, a.test_every), a.generations]:
        evo.run(stop, checkpoint=ckpt, label=label, progress=a.progress)
        if evo.generation == stop and stop not in means:  # not when resumed past it
            means[stop] = (evo.w.clone(), evo.pi.clone())
            if means_path:
                torch.save(means, means_path)
    secs = time.perf_counter() - tic
    history = evo.history
    tests = [h for h in history if h["kind"] == "test"]
    per_gen = sum(h["seconds"] for h in history) / len(history)
    print(
        f"\n{label}: {a.generations} generations ({secs:.0f} s in this process, "
        f"{per_gen:.2f} s/generation)"
    )
    scores = [f"g{h['generation']}: {100 * h['correct_mean']:.1f}" for h in tests]
    print("  DMS % correct at test generations: " + ", ".join(scores), flush=True)
    return history, means


COLUMNS = ("dms_late", "dnms_late", "pair_early", "pair_late", "pair_gain")


def evaluate(a, life: LifetimeConfig, means: dict) -> list[dict]:
    """The learning measurement (hebbkern.evolve_eval): each run's mean network at every test
    generation on paired DMS / DNMS lifetimes, and the evolved plastic network with its Pi set to
    0 at test time; the same ``--eval-seed`` lifetimes for every network. Writes the table
    (``<out>_learning.md``), every row (``<out>_learning.csv``) and the curves (``.png``)."""
    wins = windows(a.trials, life)
    kw = dict(n_trials=a.trials, lifetimes=a.eval_lifetimes, seed=a.eval_seed, config=life)
    rows, finals, over = [], {}, {}
    for label, snaps in means.items():
        gens = sorted(snaps)
        if len(gens) > 1 and gens[-1] - 1 == gens[-2] and (gens[-2] % a.test_every == 0):
            gens.pop()  # the last generation was a test: no update, the same mean
        nets = [(label, g, *snaps[g]) for g in gens]
        if label == "plastic":
            w, pi = snaps[gens[-1]]
            nets.append(("plastic, Pi set to 0 at test", gens[-1], w, torch.zeros_like(pi)))
        over[label] = []
        for name, g, w, pi in nets:
            res = learning_test(w, pi, **kw)
            stats = summarise_learning(res, wins)
            row = dict(network=name, generation=g)
            for k, (m, s) in stats.items():
                row[f"{k}_mean"], row[f"{k}_sem"] = round(m, 3), round(s, 3)
            rows.append(row)
            if name == label:
                over[label].append((g, *stats["pair_late"]))
            if g == gens[-1]:
                finals[name] = res
    base = str(a.out)
    with open(base + "_learning.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (e0, e1), (l0, l1) = wins["early"], wins["late"]
    head = (
        f"% correct, mean +- SEM over {a.eval_lifetimes} test lifetimes per task (seed "
        f"{a.eval_seed}); early = trials {e0}-{e1 - 1} (before any plastic change), late = trials "
        f"{l0}-{l1 - 1}; pair = mean of DMS and DNMS on the same stimuli and noise (50 exactly for "
        f"a network that ignores the reward)\n\n"
        "| network | generation | DMS late | DNMS late | pair early | pair late | pair gain |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    last = {}
    for r in rows:  # the last generation of each network
        last[r["network"]] = r
    lines = [
        f"| {r['network']} | {r['generation']} | "
        + " | ".join(f"{r[c + '_mean']:.1f} +- {r[c + '_sem']:.1f}" for c in COLUMNS)
        + " |"
        for r in last.values()
    ]
    table = head + "\n".join(lines) + "\n"
    with open(base + "_learning.md", "w") as f:
        f.write(table)
    print("\n" + table)
    bin_trials = max(1, a.trials // 20)
    plot_learning(finals, over, bin_trials, base + "_learning.png")
    print(f"wrote {base}_learning.csv, {base}_learning.md, {base}_learning.png")
    return rows


def main(argv=None) -> int:
    a = parse(argv)
    torch.set_num_threads(a.threads)
    life = lifetime_config(a.trials)
    runs, means = {}, {}
    for label, plastic in (("plastic", True), ("Pi = 0 control", False)):
        if a.only in (None, "plastic" if plastic else "control"):
            runs[label], means[label] = evolve(a, life, plastic, label)
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
    evaluate(a, life, means)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
