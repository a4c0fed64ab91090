"""Set-up shared by the examples: command-line options from their defaults, the photographs, ZCA
whitening and the unsupervised training loop of the Hebbian convolution examples.

The examples run as ``python examples/NAME.py``, which puts this folder first on ``sys.path``; the
tests load them by path with this folder on ``sys.path`` (tests/example_helpers.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def add_options(p: argparse.ArgumentParser, **defaults) -> argparse.ArgumentParser:
    """``--some-name`` for each ``some_name=default``, of the default's type; a list default takes
    one or more values of its first item's type (``nargs="+"``)."""
    for name, default in defaults.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, list):
            p.add_argument(flag, type=type(default[0]), nargs="+", default=default)
        else:
            kind = Path if isinstance(default, Path) else type(default)
            p.add_argument(flag, type=kind, default=default)
    return p


def size_flags(p: argparse.ArgumentParser, **helps: str) -> None:
    """Mutually exclusive ``--name`` switches choosing a run's size (``smoke="tiny (tests)"``)."""
    size = p.add_mutually_exclusive_group()
    for name, text in helps.items():
        size.add_argument(f"--{name}", action="store_true", help=text)


def grey_photos(names) -> list[np.ndarray]:
    """scikit-image's named sample photographs in grey, pixels in [0, 1]."""
    import skimage.color
    import skimage.data

    out = []
    for name in names:
        im = getattr(skimage.data, name)()
        if im.ndim == 3:
            im = skimage.color.rgb2gray(im[..., :3])
        out.append(np.asarray(im, dtype=np.float64) / (255.0 if im.max() > 1 else 1.0))
    return out


def whiten(x_tr: torch.Tensor, x_te: torch.Tensor, eps: float = 0.1):
    """ZCA whitening fitted on the training images (as the paper whitens CIFAR-10): without it,
    Hebbian filters settle on the low-frequency directions that dominate the pixel covariance."""
    shape = x_tr.shape[1:]
    a, b = x_tr.flatten(1).double(), x_te.flatten(1).double()
    mean = a.mean(0)
    evals, evecs = torch.linalg.eigh((a - mean).T @ (a - mean) / len(a))
    zca = evecs @ torch.diag((evals.clamp_min(0) + eps * evals.mean()).rsqrt()) @ evecs.T
    return (((a - mean) @ zca).float().reshape(-1, *shape),
            ((b - mean) @ zca).float().reshape(-1, *shape))  # fmt: skip


def hebbian_epochs(net, x: torch.Tensor, epochs: int, batch: int, lr: float, seed: int,
                   after_epoch=None) -> None:  # fmt: skip
    """Training without labels: each epoch the images in a seeded random order, one Hebbian step
    per full batch; ``after_epoch(epoch)`` after each epoch."""
    g = torch.Generator().manual_seed(seed)
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - batch + 1, batch):
            net(x[order[i : i + batch]])
            # The rule sums over the batch and positions; dividing by the batch keeps the step
            # size independent of it.
            net.hebbian_step(lr / batch)
        if after_epoch is not None:
            after_epoch(epoch)
