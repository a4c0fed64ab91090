"""A two-layer Hebbian CNN learns features without labels; a linear read-out decodes each layer.

Data: scikit-learn's handwritten digits (1797 images, 8x8, shipped with scikit-learn: no download),
upsampled to 16x16, standardised per image and ZCA-whitened. The network follows the recipe of
the Hebbian-CNN paper at toy scale (SPEC.md section 4): Oja's rule, hard winner-take-all across
channels (k=1, binarised) for plasticity, homeostatic thresholds toward the rate k/N, unit-norm
filters, the "triangle" output passed on, 2x2 average pooling, and a fixed random mask pruning
part of the second layer's connections. The baseline: the same network with random weights.

    python examples/hebbian_digits.py            # under a minute on 2 cores (idle)

Prints the test accuracy of a logistic-regression read-out of the pixels and of each layer, for
the trained and the random network, and saves the learned first-layer filters to
examples/hebbian_digits_filters.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import add_options, hebbian_epochs, whiten
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

import hebbkern
from hebbkern.nn import HebbianConv2d

HERE = Path(__file__).resolve().parent


def load(seed: int):
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    x = x - x.mean((1, 2, 3), keepdim=True)
    x = x / x.std((1, 2, 3), keepdim=True)
    y = torch.tensor(digits.target)
    idx_tr, idx_te = train_test_split(
        torch.arange(len(y)).numpy(), test_size=0.3, random_state=seed, stratify=y.numpy()
    )
    x_tr, x_te = whiten(x[idx_tr], x[idx_te])
    return x_tr, y[idx_tr], x_te, y[idx_te]


class HebbianCNN(nn.Module):
    def __init__(self, c1: int = 32, c2: int = 64, prune: float = 0.8) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [
                HebbianConv2d(1, c1, 5, padding=2, rule="oja", k=1, homeostasis=3.0),
                HebbianConv2d(c1, c2, 3, padding=1, rule="oja", k=1, homeostasis=3.0, prune=prune),
            ]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The pooled triangle output of each layer."""
        feats = []
        for layer in self.layers:
            x = F.avg_pool2d(layer(x), 2)
            feats.append(x)
        return feats

    def hebbian_step(self, lr: float) -> None:
        for layer in self.layers:
            layer.hebbian_step(lr)


def train(net: HebbianCNN, x: torch.Tensor, epochs: int, batch: int, lr: float, seed: int):
    def report(epoch):
        thr = net.layers[0].thresholds
        print(
            f"  epoch {epoch + 1}/{epochs}: thresholds (layer 1) [{thr.min():.2f}, {thr.max():.2f}]"
        )

    hebbian_epochs(net, x, epochs, batch, lr, seed, report)


def features(net: HebbianCNN, x: torch.Tensor, pool: int) -> list[torch.Tensor]:
    """Each layer's output average-pooled to ``pool x pool`` positions (a small read-out, so
    that what the channels encode matters more than their number)."""
    net.eval()
    with torch.no_grad():
        return [F.adaptive_avg_pool2d(f, pool).flatten(1) for f in net(x)]


def readout(f_tr, y_tr, f_te, y_te) -> float:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    clf.fit(f_tr.numpy(), y_tr.numpy())
    return float(clf.score(f_te.numpy(), y_te.numpy()))


def save_filters(w: torch.Tensor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = w.shape[0]
    cols = 8
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9 + 0.4))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            f = w[i, 0]
            lim = f.abs().max().item()
            ax.imshow(f.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.suptitle("HebbianConv2d layer-1 filters (Oja, 1-WTA), digits", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(p, epochs=3, batch=32, lr=0.05, seed=0)
    p.add_argument("--channels", type=int, nargs=2, default=(32, 64), help="layer widths")
    p.add_argument("--pool", type=int, default=2, help="read-out positions per side")
    add_options(p, threads=2, out=HERE / "hebbian_digits_filters.png")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load(a.seed)
    print(f"digits: {len(x_tr)} train / {len(x_te)} test images, 16x16; "
          f"hebbkern extension: {hebbkern.extension_available()}")  # fmt: skip

    torch.manual_seed(a.seed)
    random_net = HebbianCNN(*a.channels)
    torch.manual_seed(a.seed)
    net = HebbianCNN(*a.channels)  # same initial weights and masks as random_net
    print(f"training without labels, {a.epochs} epochs:")
    train(net, x_tr, a.epochs, a.batch, a.lr, a.seed)
    print(f"  training took {time.perf_counter() - t0:.0f} s")

    results = {"pixels": readout(x_tr.flatten(1), y_tr, x_te.flatten(1), y_te)}
    for name, model in (("hebbian", net), ("random", random_net)):
        for i, (f_tr, f_te) in enumerate(
            zip(features(model, x_tr, a.pool), features(model, x_te, a.pool), strict=True)
        ):
            results[f"{name} layer {i + 1}"] = readout(f_tr, y_tr, f_te, y_te)

    print("\nlinear read-out (logistic regression), test accuracy:")
    print(f"  pixels (16x16):            {results['pixels']:.4f}")
    for i in range(len(net.layers)):
        print(f"  layer {i + 1}: hebbian {results[f'hebbian layer {i + 1}']:.4f}   "
              f"random weights {results[f'random layer {i + 1}']:.4f}")  # fmt: skip
    save_filters(net.layers[0].weight.detach(), a.out)
    print(f"\nfilters saved to {a.out}; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
