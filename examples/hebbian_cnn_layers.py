"""A three-layer Hebbian CNN with and without the Hebbian-CNN paper's interventions.

Miconi (2021), "Multi-layer Hebbian networks with modern deep learning frameworks", claims that a
plain multi-layer Hebbian CNN (each layer passing on its sparse winner-take-all output, all
connections present) decodes worse with each layer and its higher layers learn large, simple
features, while two interventions make decoding rise over layers and beat random weights:

* **dense**: the plasticity stays sparse (hard k-WTA across channels, k = 1, binarised), but the
  layer passes on a denser output, the "triangle" ``relu(u - mean over channels of u)``;
* **prune**: a fixed random mask removes most connections of layers 2 and 3 (the paper: 99%).

This example trains, without labels, the same architecture (SPEC.md section 4: 5x5, 3x3, 3x3
convolutions, 2x2 average pooling after each, homeostatic thresholds, unit-norm filters, ZCA-
whitened input) under each combination of the interventions with Oja's rule, and without and with
both interventions for plain Hebb and instar (``hebbkern.nn.HebbianConv2d``, whose step is
``hebbkern.hebbian_update``, the fused form of ``hebbian_loss``). Each layer is decoded by a
logistic-regression read-out of its output average-pooled to 2x2 positions, against the same
architecture with its random initial weights (same masks). Data: scikit-learn's digits (the only
labelled image set that ships with the installed packages) upsampled to 16x16, and a harder
set built from scikit-image's photographs: which of 10 photographs a 16x16 grey patch comes from
(train and test patches from disjoint halves of each photograph).

It also trains one Hebbian layer (Oja, 1-WTA) on whitened patches of the photographs and saves
its filters as a grid, to see whether they are localised and oriented.

    python examples/hebbian_cnn_layers.py             # the reduced size, both data sets
    python examples/hebbian_cnn_layers.py --data digits             # one data set a process
    python examples/hebbian_cnn_layers.py --data photos --rules oja
    python examples/hebbian_cnn_layers.py --full --time-batches 2   # time the paper's size
    python examples/hebbian_cnn_layers.py --smoke     # seconds; what tests/ runs

Measured on the shared 2-core development VM (load average about 20, 1 thread; README section
"Reproductions"): ``--data digits`` 14 min 12 s wall, 70 s of CPU; ``--data photos --rules oja``
17 min 40 s wall, 96 s of CPU. ``--full`` (100, 196, 400 channels, 99% pruning, 20 epochs, 32x32)
was not run: 2.9 s (digits) and 2.4 s (photo patches) of wall time per batch of 32 at that load,
about 5 h and 34 h. At the reduced size, decoding falls over layers without the interventions
and rises (digits) or stays flat (photo patches) with them, as the paper says; learned weights
do not beat random weights of the same architecture with the interventions.

Writes examples/results/hebbian_cnn_layers[_<data>].{json,md} and, with the photo patches,
..._filters.png.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import add_options, grey_photos, hebbian_epochs, size_flags, whiten
from torch import nn

import hebbkern
from hebbkern.nn import HebbianConv2d

HERE = Path(__file__).resolve().parent

PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "grass",
          "gravel", "brick")  # fmt: skip


@dataclass
class Config:
    side: int = 16  # input side (pixels)
    channels: tuple[int, int, int] = (32, 64, 128)
    prune: float = 0.9  # fraction of layer 2 and 3 connections removed by "prune"
    epochs: int = 2
    batch: int = 32
    lr: float = 0.05
    photo_patches: int = 200  # per photograph and split (the photo-patch data set)
    filter_patches: int = 4000  # whitened photo patches for the first-layer filter figure
    filter_channels: int = 64
    data: tuple[str, ...] = ("digits", "photos")
    rules: tuple[str, ...] = ("oja", "hebb", "instar")
    limit: int = 0  # use only this many digits (0: all 1797)
    seed: int = 0


REDUCED = Config()
# The paper's network and schedule (CIFAR-10 is not available offline: the same sets, larger).
FULL = Config(side=32, channels=(100, 196, 400), prune=0.99, epochs=20, photo_patches=1000,
              filter_patches=20000, filter_channels=100)  # fmt: skip
SMOKE = Config(side=12, channels=(8, 8, 8), epochs=1, photo_patches=20, filter_patches=200,
               filter_channels=8, rules=("oja",), limit=300)  # fmt: skip

# The conditions: (passes on the dense triangle output, prunes layers 2 and 3).
CONDITIONS = {"none": (False, False), "dense": (True, False), "prune": (False, True),
              "dense+prune": (True, True)}  # fmt: skip


def standardise(x: torch.Tensor) -> torch.Tensor:
    x = x - x.mean((1, 2, 3), keepdim=True)
    return x / x.std((1, 2, 3), keepdim=True).clamp_min(1e-6)


def load_digits_set(cfg: Config):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    keep = slice(0, cfg.limit or None)
    x = torch.tensor(d.images[keep], dtype=torch.float32).unsqueeze(1)
    x = standardise(F.interpolate(x, size=(cfg.side, cfg.side), mode="bilinear"))
    y = torch.tensor(d.target[keep])
    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, random_state=cfg.seed,
                              stratify=y.numpy())  # fmt: skip
    x_tr, x_te = whiten(x[tr], x[te])
    return x_tr, y[tr], x_te, y[te]


def crops(im: np.ndarray, count: int, side: int, rng, cols: slice | None = None) -> np.ndarray:
    if cols is not None:
        im = im[:, cols]
    r = rng.integers(0, im.shape[0] - side, count)
    c = rng.integers(0, im.shape[1] - side, count)
    return np.stack([im[i : i + side, j : j + side] for i, j in zip(r, c, strict=True)])


def load_photo_set(cfg: Config):
    """Which photograph a patch comes from: training patches from the left half of each
    photograph, test patches from the right half (no overlap). Each patch is standardised,
    so brightness and contrast alone do not give the answer away."""
    rng = np.random.default_rng(cfg.seed)
    xs = {"train": [], "test": []}
    ys = {"train": [], "test": []}
    for label, im in enumerate(grey_photos(PHOTOS)):
        half = im.shape[1] // 2
        for split, cols in (("train", slice(0, half)), ("test", slice(half, None))):
            xs[split].append(crops(im, cfg.photo_patches, cfg.side, rng, cols))
            ys[split] += [label] * cfg.photo_patches
    x_tr, x_te = (standardise(torch.tensor(np.concatenate(xs[s]), dtype=torch.float32)
                              .unsqueeze(1)) for s in ("train", "test"))  # fmt: skip
    x_tr, x_te = whiten(x_tr, x_te)
    return x_tr, torch.tensor(ys["train"]), x_te, torch.tensor(ys["test"])


class HebbianCNN(nn.Module):
    """Three Hebbian conv layers; each passes on either its sparse plastic output (k-WTA,
    binarised: the plain network) or the dense triangle (the "dense" intervention)."""

    def __init__(self, channels, rule: str, dense: bool, prune: float) -> None:
        super().__init__()
        c1, c2, c3 = channels
        opts = dict(rule=rule, k=1, binarize=True, homeostasis=3.0, normalize=True, triangle=dense)
        self.dense = dense
        self.layers = nn.ModuleList([
            HebbianConv2d(1, c1, 5, padding=2, **opts),
            HebbianConv2d(c1, c2, 3, padding=1, prune=prune, **opts),
            HebbianConv2d(c2, c3, 3, padding=1, prune=prune, **opts),
        ])  # fmt: skip

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            out = layer(x)
            if not self.dense:  # the layer returned its drive u: pass on the sparse output
                out = layer.plastic_output(out)
            x = F.avg_pool2d(out, 2)
            feats.append(x)
        return feats

    def hebbian_step(self, lr: float) -> None:
        for layer in self.layers:
            layer.hebbian_step(lr)


def train(net: nn.Module, x: torch.Tensor, cfg: Config) -> None:
    hebbian_epochs(net, x, cfg.epochs, cfg.batch, cfg.lr, cfg.seed)


@torch.no_grad()
def features(net: HebbianCNN, x: torch.Tensor) -> list[torch.Tensor]:
    """Each layer's output average-pooled to 2x2 positions (the read-out sees what the channels
    encode rather than how many positions there are)."""
    net.eval()
    return [F.adaptive_avg_pool2d(f, 2).flatten(1) for f in net(x)]


def readout(f_tr, y_tr, f_te, y_te, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=0.1,
                                                             random_state=seed))  # fmt: skip
    clf.fit(f_tr.numpy(), y_tr.numpy())
    return float(clf.score(f_te.numpy(), y_te.numpy()))


def decode(net, data, seed: int) -> list[float]:
    x_tr, y_tr, x_te, y_te = data
    return [readout(a, y_tr, b, y_te, seed)
            for a, b in zip(features(net, x_tr), features(net, x_te), strict=True)]  # fmt: skip


def run_data_set(name: str, data, cfg: Config) -> dict:
    x_tr, y_tr, x_te, y_te = data
    res = {"train_images": len(x_tr), "test_images": len(x_te),
           "pixels": readout(x_tr.flatten(1), y_tr, x_te.flatten(1), y_te, cfg.seed),
           "hebbian": {}, "random": {}}  # fmt: skip
    runs = [("oja", c) for c in CONDITIONS] + [
        (r, c) for r in cfg.rules if r != "oja" for c in ("none", "dense+prune")
    ]
    for rule, cond in runs:
        if rule not in cfg.rules:
            continue
        dense, pruned = CONDITIONS[cond]
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed)  # the same initial weights and masks in every run
        net = HebbianCNN(cfg.channels, rule, dense, cfg.prune if pruned else 0.0)
        train(net, x_tr, cfg)
        acc = decode(net, data, cfg.seed)
        res["hebbian"][f"{rule} {cond}"] = acc
        print(f"  {name}: {rule:6s} {cond:11s} layers {' '.join(f'{a:.3f}' for a in acc)} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    for cond in ("none", "dense+prune"):
        dense, pruned = CONDITIONS[cond]
        torch.manual_seed(cfg.seed)
        net = HebbianCNN(cfg.channels, "oja", dense, cfg.prune if pruned else 0.0)
        x0 = x_tr[: cfg.batch]
        net.train()
        net(x0)  # no step: thresholds stay 0, weights stay at their (unit-norm) initial values
        acc = decode(net, data, cfg.seed)
        res["random"][cond] = acc
        print(f"  {name}: random {cond:11s} layers {' '.join(f'{a:.3f}' for a in acc)}",
              flush=True)  # fmt: skip
    return res


def filters_from_photos(cfg: Config, out: Path) -> dict:
    """One Hebbian layer (Oja, 1-WTA, homeostasis, unit norm) on whitened 16x16 photo patches,
    7x7 filters; a figure of the filters and a measure of how localised they are."""
    rng = np.random.default_rng(cfg.seed + 1)
    photos = grey_photos(PHOTOS)
    per = max(1, cfg.filter_patches // len(photos))
    x = np.concatenate([crops(im, per, 16, rng) for im in photos])
    x = standardise(torch.tensor(x, dtype=torch.float32).unsqueeze(1))
    x, _ = whiten(x, x[:1])
    torch.manual_seed(cfg.seed)
    layer = HebbianConv2d(1, cfg.filter_channels, 7, rule="oja", k=1, homeostasis=3.0)
    train(layer, x, cfg)
    w = layer.weight.detach()[:, 0]
    # Localisation: the fraction of each unit-norm filter's energy in its strongest 3x3 window,
    # for the learned and the random initial filters (a random filter: about 9/49 = 0.18).
    torch.manual_seed(cfg.seed)
    w0 = HebbianConv2d(1, cfg.filter_channels, 7).weight.detach()[:, 0]

    def energy_in_3x3(f):
        return F.avg_pool2d(f.square().unsqueeze(1), 3, stride=1).flatten(1).amax(1) * 9

    save_grid(w, out)
    return {"filters": cfg.filter_channels, "kernel": 7, "patches": len(x),
            "energy_in_best_3x3_learned": energy_in_3x3(w).mean().item(),
            "energy_in_best_3x3_random": energy_in_3x3(w0).mean().item()}  # fmt: skip


def save_grid(w: torch.Tensor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, cols = w.shape[0], 8
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8, rows * 0.8 + 0.4))
    for i, ax in enumerate(np.atleast_1d(axes).flat):
        ax.axis("off")
        if i < n:
            lim = w[i].abs().max().item()
            ax.imshow(w[i].numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.suptitle("layer-1 filters, Oja + 1-WTA, whitened photo patches", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_table(result: dict, path: Path) -> None:
    c = result["config"]
    lines = [
        f"Channels {c['channels']}, prune {c['prune']} (layers 2 and 3), {c['epochs']} epochs, "
        f"batch {c['batch']}, lr {c['lr']}, input {c['side']}x{c['side']}; logistic-regression "
        f"read-out of each layer pooled to 2x2; test accuracy. {result['threads']} threads, "
        f"{result['total_seconds']:.0f} s in all.",
        "",
    ]
    for name, r in result["data"].items():
        lines += [f"**{name}** ({r['train_images']} train / {r['test_images']} test images; "
                  f"pixels: {r['pixels']:.3f})", "",
                  "| weights | condition | layer 1 | layer 2 | layer 3 |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for key, acc in r["hebbian"].items():
            rule, cond = key.split(" ")
            lines.append(f"| {rule} | {cond} | " + " | ".join(f"{a:.3f}" for a in acc) + " |")
        for cond, acc in r["random"].items():
            lines.append(f"| random | {cond} | " + " | ".join(f"{a:.3f}" for a in acc) + " |")
        lines.append("")
    f = result.get("filters")
    if f is None:
        path.write_text("\n".join(lines) + "\n")
        return
    lines.append(f"First-layer filters ({f['filters']}, 7x7, {f['patches']} whitened photo "
                 f"patches): energy in the best 3x3 window {f['energy_in_best_3x3_learned']:.2f} "
                 f"learned vs {f['energy_in_best_3x3_random']:.2f} random.")  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def time_training(cfg: Config, batches: int) -> dict:
    """Seconds per training batch of the dense+prune network on each data set, and the training
    time of the whole run extrapolated from it (read-outs not included)."""
    loaders = {"digits": load_digits_set, "photos": load_photo_set}
    nets = 4 + 2 * (len(cfg.rules) - 1)
    out = {}
    for name in cfg.data:
        x = loaders[name](cfg)[0]
        torch.manual_seed(cfg.seed)
        net = HebbianCNN(cfg.channels, "oja", True, cfg.prune)
        net(x[: cfg.batch])
        net.hebbian_step(cfg.lr / cfg.batch)  # warm-up
        t0 = time.perf_counter()
        for i in range(batches):
            j = (i * cfg.batch) % (len(x) - cfg.batch)
            net(x[j : j + cfg.batch])
            net.hebbian_step(cfg.lr / cfg.batch)
        per = (time.perf_counter() - t0) / batches
        total = per * (len(x) // cfg.batch) * cfg.epochs * nets
        out[name] = {"seconds_per_batch": per, "training_seconds_all_networks": total}
        print(f"{name}: {per:.3f} s per batch of {cfg.batch}; {nets} networks x {cfg.epochs} "
              f"epochs x {len(x) // cfg.batch} batches: about {total / 60:.0f} min")  # fmt: skip
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size_flags(p, smoke="tiny network and data (tests)", full="the paper's widths, pruning, epochs")
    p.add_argument("--time-batches", type=int, default=0,
                   help="only time this many training batches of one network per data set and "
                        "print the extrapolated training time of the whole run")  # fmt: skip
    p.add_argument("--epochs", type=int)
    p.add_argument("--prune", type=float)
    p.add_argument("--data", nargs="+", choices=("digits", "photos"))
    p.add_argument("--rules", nargs="+", choices=("oja", "hebb", "instar"))
    add_options(p, seed=0, threads=2, out=HERE / "results")
    a = p.parse_args(argv)
    base = SMOKE if a.smoke else FULL if a.full else REDUCED
    cfg = Config(**(asdict(base) | {"seed": a.seed}))
    for key in ("epochs", "prune"):
        if getattr(a, key) is not None:
            setattr(cfg, key, getattr(a, key))
    if a.data:
        cfg.data = tuple(a.data)
    if a.rules:
        cfg.rules = tuple(a.rules)
    torch.set_num_threads(a.threads)
    if a.time_batches:
        return time_training(cfg, a.time_batches)
    a.out.mkdir(parents=True, exist_ok=True)
    tag = "_smoke" if a.smoke else "_full" if a.full else ""
    if a.data:  # a run of some data sets only (e.g. two processes in parallel)
        tag += "_" + "_".join(cfg.data)
    t0 = time.perf_counter()
    print(f"hebbkern extension: {hebbkern.extension_available()}; {cfg}")
    result = {"config": asdict(cfg), "threads": a.threads, "data": {}}
    loaders = {"digits": load_digits_set, "photos": load_photo_set}
    for name in cfg.data:
        result["data"][name] = run_data_set(name, loaders[name](cfg), cfg)
    if "photos" in cfg.data:
        fig = a.out / f"hebbian_cnn_layers{tag}_filters.png"
        result["filters"] = filters_from_photos(cfg, fig)
        print(f"  filters: {result['filters']}")
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    (a.out / f"hebbian_cnn_layers{tag}.json").write_text(json.dumps(result, indent=1) + "\n")
    write_table(result, a.out / f"hebbian_cnn_layers{tag}.md")
    print(f"results in {a.out}; total {result['total_seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
