"""Meta-RL on procedurally generated tasks (issue 17): a Backpropamine-style plastic agent and an
LSTM with at least as many parameters, trained by A2C on generated task templates and tested on
held-out templates and on two held-out named tasks (Daw two-step, 2-armed bandit).

    python examples/meta_rl_tasks.py                      # the reduced run (README numbers)
    python examples/meta_rl_tasks.py --iters 20000 --batch 64 --steps 100 --hidden 100 --seeds 3

Writes to --out: a CSV of training curves, a CSV and JSON of the within-episode evaluation
(reward per trial along the episode), PNG plots, and checkpoints (ckpt_<agent>_<seed>.pt, every
--ckpt-every iterations and at the end; --resume continues from them).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import torch
from _common import add_options

from hebbkern.agents import (
    A2CConfig,
    LSTMAgent,
    PlasticAgent,
    evaluate,
    lstm_hidden_for,
    n_params,
    train_step,
)
from hebbkern.tasks import MetaTaskEnv, generate_templates, named_task

try:
    from tqdm import tqdm
except ImportError:  # a plain counter instead
    tqdm = None


def template_sets(n_train: int, n_test: int):
    train = generate_templates(n_train, seed=1000)
    seen = {json.dumps({k: v for k, v in t.to_dict().items() if k != "name"}) for t in train}
    test = [
        t
        for t in generate_templates(n_test * 2, seed=2000)
        if json.dumps({k: v for k, v in t.to_dict().items() if k != "name"}) not in seen
    ][:n_test]
    return train, test


def make_agent(kind: str, args, obs_size: int):
    plastic = PlasticAgent(obs_size, args.hidden, rule=args.rule)
    if kind == "plastic":
        return plastic
    return LSTMAgent(obs_size, lstm_hidden_for(obs_size, n_params(plastic)))


def late_early(ev: dict, frac: float = 0.9) -> tuple[float, float, int]:
    """Mean reward per trial over the first 3 trials and over the last third of the trials that
    at least ``frac`` of the episodes reached."""
    counts, r = ev["episodes_per_trial"], ev["reward_per_trial"]
    K = int((counts >= frac * counts[0]).sum())
    return r[:3].mean().item(), r[2 * K // 3 : K].mean().item(), K


def run(kind: str, seed: int, args, train, tests, out: Path, writer) -> dict:
    torch.manual_seed(seed)
    env = MetaTaskEnv(train, args.batch, args.steps, seed=seed)
    agent = make_agent(kind, args, env.obs_size)
    opt = torch.optim.Adam(agent.parameters(), lr=args.lr)
    cfg = A2CConfig(entropy_coef=args.entropy, n_step=args.n_step, gamma=args.gamma)
    ckpt = out / f"ckpt_{kind}_{seed}.pt"
    start = 0
    if args.resume and ckpt.exists():
        state = torch.load(ckpt)
        agent.load_state_dict(state["agent"])
        opt.load_state_dict(state["opt"])
        start = state["iter"]
    bar = tqdm(range(start, args.iters), desc=f"{kind} seed {seed}", leave=False) if tqdm else None
    t0 = time.perf_counter()
    recent = []
    for it in bar if bar is not None else range(start, args.iters):
        stats = train_step(agent, env, opt, cfg)
        recent.append(stats["reward"])
        if (it + 1) % args.log_every == 0:
            row = {"agent": kind, "seed": seed, "iter": it + 1,
                   "reward_per_step": sum(recent) / len(recent), "entropy": stats["entropy"],
                   "seconds": time.perf_counter() - t0}  # fmt: skip
            writer.writerow(row)
            recent = []
            if bar is not None:
                bar.set_postfix(reward=f"{row['reward_per_step']:.3f}")
        if (it + 1) % args.ckpt_every == 0 or it + 1 == args.iters:
            torch.save({"agent": agent.state_dict(), "opt": opt.state_dict(), "iter": it + 1}, ckpt)
    train_seconds = time.perf_counter() - t0
    result = {"agent": kind, "seed": seed, "params": n_params(agent),
              "train_seconds": train_seconds, "tests": {}}  # fmt: skip
    for name, templates in tests.items():
        tenv = MetaTaskEnv(templates, args.eval_batch, args.eval_steps, seed=10_000 + seed)
        ev = evaluate(agent, tenv, n_batches=args.eval_batches)
        early, late, K = late_early(ev)
        result["tests"][name] = {
            "reward_per_trial": ev["reward_per_trial"][:K].tolist(),
            "early": early, "late": late, "trials": K,
        }  # fmt: skip
    return result


def plot(curves_csv: Path, results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(curves_csv)))
    colors = {"plastic": "tab:red", "lstm": "tab:blue"}
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind in colors:
        for seed in sorted({r["seed"] for r in rows if r["agent"] == kind}):
            rr = [r for r in rows if r["agent"] == kind and r["seed"] == seed]
            ax.plot([int(r["iter"]) for r in rr], [float(r["reward_per_step"]) for r in rr],
                    color=colors[kind], alpha=0.7, label=f"{kind} seed {seed}")  # fmt: skip
    ax.set_xlabel("A2C update")
    ax.set_ylabel("reward per step (training templates)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "meta_rl_training.png", dpi=100)
    tests = list(results[0]["tests"])
    fig, axes = plt.subplots(1, len(tests), figsize=(4 * len(tests), 3.5))
    for ax, name in zip(axes, tests, strict=True):
        for res in results:
            y = res["tests"][name]["reward_per_trial"]
            ax.plot(range(1, len(y) + 1), y, color=colors[res["agent"]], alpha=0.7,
                    label=f"{res['agent']} seed {res['seed']}")  # fmt: skip
        ax.set_title(name)
        ax.set_xlabel("trial in the episode")
    axes[0].set_ylabel("mean reward in the trial")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "meta_rl_within_episode.png", dpi=100)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_options(p, agents="plastic,lstm", seeds=3, iters=150, batch=64)
    p.add_argument("--steps", type=int, default=40, help="episode length in steps")
    add_options(p, hidden=32)
    p.add_argument("--rule", default="neuromod", choices=("neuromod", "retro"))
    add_options(p, lr=3e-3, entropy=0.03, n_step=10, gamma=0.9, train_templates=200,
                test_templates=50, eval_batch=256, eval_batches=2)  # fmt: skip
    p.add_argument("--eval-steps", type=int, default=None, help="default: --steps")
    add_options(p, log_every=10, ckpt_every=50, threads=1)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--out", default="examples/meta_rl_out")
    args = p.parse_args(argv)
    args.eval_steps = args.eval_steps or args.steps
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = template_sets(args.train_templates, args.test_templates)
    tests = {"held-out generated": test, "two-step (held out)": [named_task("two_step")],
             "bandit (held out)": [named_task("bandit")]}  # fmt: skip
    curves = out / "meta_rl_training.csv"
    fields = ["agent", "seed", "iter", "reward_per_step", "entropy", "seconds"]
    results, t0 = [], time.perf_counter()
    with open(curves, "a" if args.resume else "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if not args.resume:
            writer.writeheader()
        for seed in range(args.seeds):
            for kind in args.agents.split(","):
                res = run(kind, seed, args, train, tests, out, writer)
                f.flush()
                results.append(res)
                line = ", ".join(
                    f"{n}: early {v['early']:.3f} late {v['late']:.3f}"
                    for n, v in res["tests"].items()
                )
                print(f"{kind} seed {seed} ({res['params']} params, "
                      f"{res['train_seconds']:.0f} s): {line}", flush=True)  # fmt: skip
    summary = {"args": vars(args), "wall_seconds": time.perf_counter() - t0,
               "loadavg": os.getloadavg(), "results": results}  # fmt: skip
    (out / "meta_rl_eval.json").write_text(json.dumps(summary, indent=1))
    with open(out / "meta_rl_eval.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["agent", "seed", "test", "trial", "reward"])
        for res in results:
            for name, v in res["tests"].items():
                for k, r in enumerate(v["reward_per_trial"]):
                    w.writerow([res["agent"], res["seed"], name, k + 1, f"{r:.4f}"])
    plot(curves, results, out)
    print(f"total {summary['wall_seconds']:.0f} s; outputs in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
