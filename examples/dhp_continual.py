"""DHP Softmax for continual learning (Thangarasa et al., "Enabling continual learning with
differentiable Hebbian plasticity"), at digit scale.

Benchmarks built from scikit-learn's handwritten digits (1797 images, 8x8, shipped with
scikit-learn: nothing downloads):

- ``permuted``: 5 tasks, each the 10-way problem under its own fixed pixel permutation (task 1 the
  identity); one shared 10-way head (domain-incremental, as the paper's Permuted MNIST).
- ``split``: 5 tasks {0,1}, {2,3}, ..., {8,9}; the logits are masked to the task's two classes in
  training and testing (the multi-headed protocol of the paper's Split MNIST).
- ``imbalanced``: ``permuted`` with, per task, each class's training samples kept with a random
  probability in [0.1, 1] (the paper's Imbalanced Permuted MNIST; test sets stay balanced).

Network: 64 -> 100 (ReLU) -> 100 (ReLU) -> head, the head either ``nn.Linear`` (the baseline) or
``hebbkern.nn.DHPSoftmax``. Methods: fine-tuning and each consolidation penalty of
``hebbkern.consolidation`` (EWC, online EWC, SI, MAS), each with and without DHP Softmax. The
penalties act on the slow weights only (every parameter but DHP's ``alpha`` and ``eta``), as in
the paper. Metrics after the last task: ACC, the mean test accuracy over the tasks, and BWT, the
mean over tasks 1..T-1 of (accuracy after the last task - accuracy just after learning the task).

    python examples/dhp_continual.py            # 3 seeds, every benchmark; see README for time
    python examples/dhp_continual.py --smoke    # a few steps, for the test suite

Writes examples/results/dhp_continual.csv (one row per benchmark, method, seed),
dhp_continual_summary.md (means +- std over seeds) and dhp_continual.png.
"""

from __future__ import annotations

import argparse
import csv
import functools
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import add_options
from sklearn.datasets import load_digits
from torch import nn

from hebbkern.consolidation import EWC, MAS, SI, OnlineEWC
from hebbkern.nn import DHPSoftmax

HERE = Path(__file__).resolve().parent
PENALTIES = ("none", "ewc", "online_ewc", "si", "mas")
# Strengths chosen by a small sweep on held-out seed 100 on `permuted` (see README); the same
# values serve every benchmark and both heads, so DHP gets no tuning of its own.
STRENGTH = {"ewc": 100.0, "online_ewc": 100.0, "si": 10.0, "mas": 1.0}


@functools.cache
def _digits():
    d = load_digits()  # parses a CSV each call: once per process
    return torch.tensor(d.data, dtype=torch.float32) / 16.0, torch.tensor(d.target)


def load_tasks(bench: str, n_tasks: int, seed: int):
    """A list of (x_train, y_train, x_test, y_test, classes) per task."""
    x, y = _digits()
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=g)
    n_test = len(y) // 4
    test_idx, train_idx = order[:n_test], order[n_test:]
    tasks = []
    for t in range(n_tasks):
        if bench == "split":
            classes = torch.tensor([2 * t, 2 * t + 1])
            tr = train_idx[torch.isin(y[train_idx], classes)]
            te = test_idx[torch.isin(y[test_idx], classes)]
            tasks.append((x[tr], y[tr], x[te], y[te], classes))
            continue
        perm = torch.arange(64) if t == 0 else torch.randperm(64, generator=g)
        tr = train_idx
        if bench == "imbalanced":
            keep_p = 0.1 + 0.9 * torch.rand(10, generator=g)
            keep = torch.rand(len(tr), generator=g) < keep_p[y[tr]]
            tr = tr[keep]
        tasks.append((x[tr][:, perm], y[tr], x[test_idx][:, perm], y[test_idx], torch.arange(10)))
    return tasks


class Net(nn.Module):
    def __init__(self, dhp: bool, hidden: int = 100) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.dhp = dhp
        self.head = DHPSoftmax(hidden, 10) if dhp else nn.Linear(hidden, 10)

    def forward(self, x, target=None):
        h = self.body(x)
        return self.head(h, target) if self.dhp else self.head(h)

    def slow_params(self):
        return [(n, p) for n, p in self.named_parameters() if not n.endswith(("alpha", "eta"))]


def masked(z, classes):
    """Logits restricted to the task's classes (others -inf): the multi-headed protocol."""
    if len(classes) == z.shape[1]:
        return z
    mask = torch.full((z.shape[1],), float("-inf"))
    mask[classes] = 0.0
    return z + mask


@torch.no_grad()
def accuracy(net, task):
    net.eval()
    _, _, xte, yte, classes = task
    acc = (masked(net(xte), classes).argmax(1) == yte).float().mean().item()
    net.train()
    return acc


def make_penalty(kind, net, strength):
    params = net.slow_params()
    if kind == "ewc":
        return EWC(params, strength)
    if kind == "online_ewc":
        return OnlineEWC(params, strength, gamma=1.0)
    if kind == "si":
        return SI(params, strength, xi=0.1)
    if kind == "mas":
        return MAS(params, strength)
    return None


def consolidate(kind, pen, net, task, n_samples, g):
    if pen is None:
        return
    xtr, ytr, _, _, classes = task
    idx = torch.randperm(len(ytr), generator=g)[:n_samples]
    net.eval()  # read the trace, do not move it, while estimating importances
    if kind in ("ewc", "online_ewc"):
        pen.consolidate(
            (lambda i=i: F.cross_entropy(masked(net(xtr[i : i + 1]), classes), ytr[i : i + 1]))
            for i in idx.tolist()
        )
    elif kind == "mas":
        pen.consolidate(
            (lambda i=i: masked(net(xtr[i : i + 1]), classes).clamp(min=-1e4)) for i in idx.tolist()
        )
    else:
        pen.consolidate()
    net.train()


def run(bench, dhp, kind, seed, args, strength=None):
    torch.manual_seed(seed)
    tasks = load_tasks(bench, args.tasks, seed)
    net = Net(dhp)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    pen = make_penalty(kind, net, STRENGTH.get(kind, 0.0) if strength is None else strength)
    g = torch.Generator().manual_seed(seed + 1)
    R = np.zeros((len(tasks), len(tasks)))  # R[i, j]: accuracy on task j after training task i
    for i, task in enumerate(tasks):
        xtr, ytr, _, _, classes = task
        for _ in range(args.epochs):
            order = torch.randperm(len(ytr), generator=g)
            for b in range(0, len(ytr), args.batch):
                idx = order[b : b + args.batch]
                xb, yb = xtr[idx], ytr[idx]
                z = net(xb, yb) if dhp else net(xb)
                loss = F.cross_entropy(masked(z, classes), yb)
                if pen is not None:
                    loss = loss + pen()
                opt.zero_grad()
                loss.backward()
                if kind == "si":
                    pen.before_step()
                opt.step()
                if kind == "si":
                    pen.after_step()
                if args.smoke:
                    break
        consolidate(kind, pen, net, task, args.fisher_samples, g)
        for j in range(len(tasks)):
            R[i, j] = accuracy(net, tasks[j])
    if dhp and getattr(args, "diagnose", False):
        h = net.head
        print(
            f"{bench} DHP + {kind} seed {seed}: eta {h.eta.item():.4f} (init {h.eta_init}), "
            f"mean |alpha| {h.alpha.abs().mean().item():.4f} (init ~0.005), mean |theta| "
            f"{h.theta.abs().mean().item():.4f}, mean |alpha * hebb| "
            f"{(h.alpha * h.hebb).abs().mean().item():.4f}"
        )
    T = len(tasks)
    acc = R[-1].mean()
    bwt = np.mean([R[-1, j] - R[j, j] for j in range(T - 1)])
    return acc, bwt, R


def label(dhp, kind):
    name = {
        "none": "fine-tune",
        "ewc": "EWC",
        "online_ewc": "online EWC",
        "si": "SI",
        "mas": "MAS",
    }[kind]
    return ("DHP + " if dhp else "") + name if kind != "none" or not dhp else "DHP Softmax"


def sweep(args):
    """The strength sweep on held-out seed 100 (permuted): prints ACC per strength."""
    for kind in ("ewc", "online_ewc", "si", "mas"):
        for s in (1.0, 10.0, 100.0, 1000.0, 10000.0):
            acc, bwt, _ = run("permuted", False, kind, 100, args, strength=s)
            print(f"sweep {kind:10s} strength={s:7.1f} ACC={acc:.3f} BWT={bwt:+.3f}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="one batch per epoch, one seed")
    add_options(p, seeds=3, tasks=5, epochs=5, batch=32, lr=1e-3, fisher_samples=200,
                benchmarks="permuted,split,imbalanced")  # fmt: skip
    p.add_argument("--sweep", action="store_true", help="run the strength sweep and exit")
    p.add_argument(
        "--diagnose", action="store_true", help="print DHP's eta and alpha (seed 0) and exit"
    )
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.smoke:
        args.seeds, args.epochs, args.fisher_samples, args.tasks = 1, 1, 4, 2
    if args.diagnose:
        for kind in ("none", "ewc"):
            run("permuted", True, kind, 0, args)
        return None
    if args.sweep:
        sweep(args)
        return None
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.time()
    for bench in args.benchmarks.split(","):
        for dhp in (False, True):
            for kind in PENALTIES:
                for seed in range(args.seeds):
                    acc, bwt, _ = run(bench, dhp, kind, seed, args)
                    rows.append(
                        {"benchmark": bench, "method": label(dhp, kind), "dhp": int(dhp),
                         "penalty": kind, "seed": seed, "acc": acc, "bwt": bwt}
                    )  # fmt: skip
                m = [r for r in rows if r["benchmark"] == bench and r["method"] == label(dhp, kind)]
                print(
                    f"{bench:10s} {label(dhp, kind):18s} ACC {np.mean([r['acc'] for r in m]):.3f}"
                    f" BWT {np.mean([r['bwt'] for r in m]):+.3f}  ({time.time() - t0:.0f} s)",
                    flush=True,
                )
    elapsed = time.time() - t0
    with open(args.out / "dhp_continual.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    write_summary(rows, args, elapsed)
    plot(rows, args)
    print(f"total {elapsed:.0f} s")
    return rows


def _stats(rows, bench, method, key):
    v = [r[key] for r in rows if r["benchmark"] == bench and r["method"] == method]
    return float(np.mean(v)), float(np.std(v))


def write_summary(rows, args, elapsed):
    benches = list(dict.fromkeys(r["benchmark"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = [
        f"DHP continual learning on digits: {args.tasks} tasks, {args.epochs} epochs/task, "
        f"Adam lr {args.lr}, batch {args.batch}, {args.seeds} seeds; mean +- std over seeds; "
        f"{elapsed:.0f} s wall, {time.process_time():.0f} s CPU in all",
        "",
        "| method | " + " | ".join(f"{b} ACC | {b} BWT" for b in benches) + " |",
        "|---|" + "---|---|" * len(benches),
    ]
    for m in methods:
        cells = []
        for b in benches:
            a, sa = _stats(rows, b, m, "acc")
            w, sw = _stats(rows, b, m, "bwt")
            cells += [f"{100 * a:.1f} +- {100 * sa:.1f}", f"{100 * w:+.1f} +- {100 * sw:.1f}"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    (args.out / "dhp_continual_summary.md").write_text("\n".join(lines) + "\n")


def plot(rows, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = list(dict.fromkeys(r["benchmark"] for r in rows))
    fig, axes = plt.subplots(1, len(benches), figsize=(4.5 * len(benches), 3.6), squeeze=False)
    names = ["fine-tune", "EWC", "online EWC", "SI", "MAS"]
    xs = np.arange(len(names))
    for ax, b in zip(axes[0], benches, strict=True):
        for k, (dhp, col) in enumerate(((False, "tab:gray"), (True, "tab:blue"))):
            st = [_stats(rows, b, label(dhp, kind), "acc") for kind in PENALTIES]
            ax.bar(xs + (k - 0.5) * 0.38, [100 * s[0] for s in st], 0.38,
                   yerr=[100 * s[1] for s in st], color=col,
                   label="DHP Softmax head" if dhp else "linear softmax head")  # fmt: skip
        ax.set_xticks(xs, names, rotation=20)
        ax.set_title(f"{b} digits")
        ax.set_ylabel("ACC after last task (%)")
        lo = min(100 * r["acc"] for r in rows if r["benchmark"] == b)
        ax.set_ylim(max(0, lo - 10), 100)
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out / "dhp_continual.png", dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
