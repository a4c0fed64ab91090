"""ANML (Beaulieu et al., "Learning to Continually Learn", ECAI 2020) on a procedurally generated,
Omniglot-like stream of classes, with ``hebbkern.nn.ANML`` and ``hebbkern.meta``.

Data (nothing downloads): each class is a random "character", three pen strokes through random
control points on a 16x16 canvas; each sample re-draws the character with its control points
jittered (0.6 px) and the whole image shifted by up to 1 px, so classes differ in shape and
samples of a class differ like hand-drawn copies. 20 samples per class: 15 to learn, 5 to test.
Disjoint class sets: meta-training, meta-validation (choose the meta-test learning rate) and
meta-test.

Meta-training (ANML): per iteration one new class, its 10 samples learned one SGD step each
(inner loop, learning rate 0.1, the prediction network only; the classifier rows of the class
reset first), then an Adam step on the loss of the final fast weights on those 10 samples plus
10 samples of other meta-training classes, differentiated through the whole inner loop
(``torch.func.functional_call`` + ``create_graph``): it updates the neuromodulatory (NM) network
and the prediction network's initial weights.

Meta-test: a fresh classifier; N new classes learned one at a time, each sample one SGD step
on the prediction network and classifier (NM fixed), one pass; then the accuracy on the test
samples of all N classes (the prediction: the best of the N learned classes' logits).
Methods, all the same prediction network (MLP 256-128-128):
- ANML: gated by the meta-learned NM network;
- no gating: the same meta-training without the NM network (OML-like);
- pretrained: ordinary i.i.d. training on the meta-training classes, then sequential SGD;
- plain sequential SGD from a random initialisation.
The meta-test learning rate of each method is the best of a grid on the validation classes.

    python examples/anml_stream.py            # reduced size (README: measured time)
    python examples/anml_stream.py --smoke    # a few steps, for the test suite

Writes examples/results/anml_stream.csv, anml_stream_summary.md and anml_stream.png.
"""

from __future__ import annotations

import argparse
import copy
import csv
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import add_options

from hebbkern.meta import meta_step, reset_rows
from hebbkern.nn.anml import ANML

HERE = Path(__file__).resolve().parent
SIDE = 16


def make_classes(n_classes: int, n_samples: int, seed: int) -> torch.Tensor:
    """``[n_classes, n_samples, SIDE * SIDE]`` images in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    # 3 strokes x 3 control points per class, inside the canvas margin.
    ctrl = 2.5 + torch.rand(n_classes, 3, 3, 2, generator=g) * (SIDE - 5)
    pts = ctrl.unsqueeze(1) + 0.6 * torch.randn(n_classes, n_samples, 3, 3, 2, generator=g)
    pts = pts + torch.randint(-1, 2, (n_classes, n_samples, 1, 1, 2), generator=g).float()
    # 8 points along each of the 2 segments of each stroke.
    t = torch.linspace(0, 1, 8).view(1, 1, 1, 1, 8, 1)
    seg = pts[:, :, :, :-1].unsqueeze(4) * (1 - t) + pts[:, :, :, 1:].unsqueeze(4) * t
    seg = seg.reshape(n_classes, n_samples, -1, 2)  # [C, S, P, 2]
    yy, xx = torch.meshgrid(torch.arange(float(SIDE)), torch.arange(float(SIDE)), indexing="ij")
    grid = torch.stack([yy, xx], -1).view(-1, 2)  # [HW, 2]
    flat = seg.reshape(-1, seg.shape[2], 2)  # [C * S, P, 2]
    # Distance of each pixel to the nearest stroke point, in chunks (bounded memory).
    d = torch.cat([torch.cdist(chunk, grid).min(1).values for chunk in flat.split(500)])
    return torch.exp(-(d**2) / (2 * 0.7**2)).view(n_classes, n_samples, SIDE * SIDE)


def split(data: torch.Tensor, n_train: int):
    return data[:, :n_train], data[:, n_train:]


def sequential_eval(model, train, test, lr, seed):
    """Learn the classes of ``train`` [N, S, D] one at a time (one SGD step per sample, one
    pass, NM network fixed; plain SGD as in the inner loop of meta-training); accuracy on
    ``test`` [N, S', D] of all of them."""
    model = copy.deepcopy(model)
    N = train.shape[0]
    with torch.no_grad():
        reset_rows(model.classifier, torch.arange(model.num_classes))
    params = [p for n, p in model.named_parameters() if not n.startswith("nm.")]
    opt = torch.optim.SGD(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(N, generator=g)
    for k, c in enumerate(order.tolist()):
        for x in train[c]:
            loss = F.cross_entropy(model(x.unsqueeze(0)), torch.tensor([k]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        labels = torch.empty(N, dtype=torch.int64)
        labels[order] = torch.arange(N)
        x = test.reshape(-1, test.shape[-1])
        y = labels.repeat_interleave(test.shape[1])
        # The prediction among the N classes learned: the classifier's other rows are untrained
        # (random), and a large representation can make one of them win everywhere.
        return (model(x)[:, :N].argmax(1) == y).float().mean().item()


def meta_train(model, data, args, seed, log):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.meta_lr)
    names = model.pln_names()
    C, S, _ = data.shape
    hist = []
    for it in range(args.meta_iters):
        c = int(torch.randint(C, (1,), generator=g))
        idx = torch.randperm(S, generator=g)[: args.traj]
        traj_x, traj_y = data[c, idx], torch.full((args.traj,), c)
        rc = torch.randint(C, (args.remember,), generator=g)
        rs = torch.randint(S, (args.remember,), generator=g)
        loss, acc = meta_step(model, opt, traj_x, traj_y, data[rc, rs], rc, args.inner_lr, names,
                              classifier=model.classifier)  # fmt: skip
        hist.append(loss)
        if (it + 1) % max(1, args.meta_iters // 10) == 0:
            log(f"  meta-iter {it + 1}: meta-loss {np.mean(hist[-50:]):.3f}")
    return hist


def pretrain(model, data, args, seed):
    """Ordinary i.i.d. minibatch training on the meta-training classes."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    C, S, D = data.shape
    x, y = data.reshape(-1, D), torch.arange(C).repeat_interleave(S)
    for _ in range(args.pretrain_epochs):
        perm = torch.randperm(len(y), generator=g)
        for b in range(0, len(y), 64):
            i = perm[b : b + 64]
            loss = F.cross_entropy(model(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true")
    add_options(p, meta_classes=200, val_classes=20, test_classes=[10, 25, 50, 100],
                meta_iters=5000, traj=10, remember=10, inner_lr=0.1, meta_lr=1e-3,
                pretrain_epochs=5, lrs=[0.003, 0.01, 0.03, 0.1])  # fmt: skip
    p.add_argument("--seeds", type=int, default=1, help="meta-training seeds")
    p.add_argument("--orders", type=int, default=3, help="meta-test class orders per seed")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.smoke:
        args.meta_classes, args.val_classes, args.test_classes = 12, 4, [3, 5]
        args.meta_iters, args.pretrain_epochs, args.lrs = 3, 1, [0.03]
        args.seeds, args.orders = 1, 1
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    def log(msg):
        print(f"{msg}  ({time.time() - t0:.0f} s)", flush=True)

    n_test = max(args.test_classes)
    total = args.meta_classes + args.val_classes + n_test
    rows = []
    for seed in range(args.seeds):
        data = make_classes(total, 20, seed=1000 + seed)
        meta = data[: args.meta_classes]
        val_tr, val_te = split(data[args.meta_classes : args.meta_classes + args.val_classes], 15)
        te_tr, te_te = split(data[args.meta_classes + args.val_classes :], 15)
        D, K = data.shape[-1], max(args.meta_classes, n_test)
        models = {}
        torch.manual_seed(seed)
        for name, gated in (("ANML", True), ("no gating (meta-trained)", False)):
            m = ANML(D, K, hidden=(128, 128), nm_hidden=(128,), gated=gated)
            log(f"seed {seed}: meta-training {name}")
            meta_train(m, meta, args, seed, log)
            models[name] = m
        m = ANML(D, K, hidden=(128, 128), gated=False)
        pretrain(m, meta, args, seed)
        models["pretrained + SGD"] = m
        models["sequential SGD (scratch)"] = ANML(D, K, hidden=(128, 128), gated=False)
        log(f"seed {seed}: meta-trained; meta-testing")
        for name, m in models.items():
            val = {lr: sequential_eval(m, val_tr, val_te, lr, seed) for lr in args.lrs}
            lr = max(val, key=val.get)
            for n in args.test_classes:
                for o in range(args.orders):
                    acc = sequential_eval(m, te_tr[:n], te_te[:n], lr, 100 * seed + o)
                    rows.append({"method": name, "seed": seed, "order": o, "classes": n,
                                 "lr": lr, "test_acc": acc})  # fmt: skip
            accs = [r["test_acc"] for r in rows if r["method"] == name and r["classes"] == n_test
                    and r["seed"] == seed]  # fmt: skip
            log(f"  {name:26s} lr {lr:g}: {n_test} classes, test acc {np.mean(accs):.3f}")
    elapsed = time.time() - t0
    with open(args.out / "anml_stream.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = [
        f"ANML on procedural classes: {args.meta_classes} meta-training classes, "
        f"{args.meta_iters} meta-iterations, {args.seeds} seeds x {args.orders} class orders; "
        f"test accuracy after learning N classes one at a time (15 samples each, one pass), "
        f"mean +- std; {elapsed:.0f} s wall, {time.process_time():.0f} s CPU in all",
        "",
        "| method | " + " | ".join(f"N = {n}" for n in args.test_classes) + " |",
        "|---|" + "---|" * len(args.test_classes),
    ]
    for m in methods:
        cells = []
        for n in args.test_classes:
            v = [r["test_acc"] for r in rows if r["method"] == m and r["classes"] == n]
            cells.append(f"{100 * np.mean(v):.1f} +- {100 * np.std(v):.1f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("\nchance at N classes: 100/N %")
    (args.out / "anml_stream_summary.md").write_text("\n".join(lines) + "\n")
    plot(rows, methods, args, data)
    log(f"total {elapsed:.0f} s")
    return rows


def plot(rows, methods, args, data):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1.6, 1]})
    for m in methods:
        ys = [[r["test_acc"] for r in rows if r["method"] == m and r["classes"] == n]
              for n in args.test_classes]  # fmt: skip
        mean, std = [100 * np.mean(y) for y in ys], [100 * np.std(y) for y in ys]
        axes[0].errorbar(args.test_classes, mean, yerr=std, marker="o", capsize=2, label=m)
    axes[0].set_xlabel("classes learned one at a time")
    axes[0].set_ylabel("test accuracy on all of them (%)")
    axes[0].set_title("meta-test: sequential class stream")
    axes[0].legend(fontsize=7)
    tiles = data[:8, :4].reshape(8, 4, SIDE, SIDE).permute(1, 2, 0, 3).reshape(4 * SIDE, 8 * SIDE)
    axes[1].imshow(tiles.numpy(), cmap="gray_r")
    axes[1].set_title("8 generated classes x 4 samples")
    axes[1].axis("off")
    fig.tight_layout()
    fig.savefig(args.out / "anml_stream.png", dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
