"""Shared helpers of the FOP tests: parameter sets, gradient sequences, running an optimiser."""

from __future__ import annotations

import torch
from torch import Tensor

from hebbkern.optim import FOP

# (base, momentum, weight_decay): the base optimisers FOP wraps.
BASE_CASES = [("sgd", 0.0, 0.0), ("sgd", 0.9, 0.0), ("adam", 0.0, 0.0), ("sgd", 0.0, 0.01),
              ("sgd", 0.9, 0.01), ("adam", 0.0, 0.01)]  # fmt: skip
BASE_IDS = ["sgd", "momentum", "adam", "sgd-wd", "momentum-wd", "adam-wd"]

# Conv weights (spatial axis d = 9, 1, 49, 25), linear weights (input axis d = 1 .. 129, both sides
# of the kernel's BLAS threshold), biases and a 0-dim parameter (base optimiser only).
SHAPES = [(5, 3, 3, 3), (3, 2, 1, 1), (2, 1, 7, 7), (4, 4, 5, 5), (7, 1), (1, 7), (4, 33), (3, 100),
          (2, 129), (33, 100), (7,), (129,), ()]  # fmt: skip


def make_params(shapes=SHAPES, dtype=torch.float64, seed=0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64).to(dtype))
            for s in shapes]  # fmt: skip


def grad_sequence(shapes, steps: int, dtype=torch.float64, seed=1) -> list[list[Tensor]]:
    """Correlated random gradients (a fixed part plus noise) scaled by 1/sqrt(rows), so that
    ``D^T G`` has entries of order one and the preconditioners move by a visible amount."""
    g = torch.Generator().manual_seed(seed)
    fixed = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    seq = []
    for _ in range(steps):
        step = []
        for f, s in zip(fixed, shapes, strict=True):
            rows = max(1, s[0] * (s[1] if len(s) > 2 else 1)) if len(s) >= 2 else 1
            noise = torch.randn(s, generator=g, dtype=torch.float64)
            step.append(((f + 0.5 * noise) / rows**0.5).to(dtype))
        seq.append(step)
    return seq


def run_steps(params, grads_seq, opt: FOP) -> FOP:
    for grads in grads_seq:
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
    return opt


def run(backend, base, momentum, weight_decay, *, dtype=torch.float64, steps=6, shapes=SHAPES,
        lr=0.1, hyper_lr=0.02, **kw):  # fmt: skip
    params = make_params(shapes, dtype)
    opt = FOP(params, lr=lr, hyper_lr=hyper_lr, base=base, momentum=momentum,
              weight_decay=weight_decay, backend=backend, **kw)  # fmt: skip
    run_steps(params, grad_sequence(shapes, steps, dtype), opt)
    return params, opt


def state_of(opt: FOP, p: Tensor) -> dict[str, Tensor]:
    return opt.state[p]


def small_cnn(dtype=torch.float64, seed=0) -> torch.nn.Module:
    """Conv 3x3, conv 3x3, conv 1x1, linear: every preconditioning kind plus biases."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 6, 3),
        torch.nn.ReLU(), torch.nn.Conv2d(6, 6, 1), torch.nn.Flatten(), torch.nn.Linear(6 * 6 * 6, 5),
    ).to(dtype)  # fmt: skip


def cnn_batch(dtype=torch.float64, seed=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 1, 8, 8, generator=g, dtype=dtype)
    y = torch.randint(0, 5, (16,), generator=g)
    return x, y


def train_steps(model, opt, steps, dtype=torch.float64, fwd=None) -> list[float]:
    x, y = cnn_batch(dtype)
    fwd = fwd or model
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(fwd(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
