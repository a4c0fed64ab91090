"""Meta-learning through a sequential inner loop of SGD (ANML / OML style), with ``torch.func``.

``inner_loop`` runs ``len(xs)`` SGD steps on the named ``trainable`` parameters, one per
element of the sequence, keeping the graph (``create_graph=True``) so that a loss on the final
fast weights differentiates through every step back to the initial weights and to the
parameters the loop does not update (ANML's neuromodulatory network). ``meta_step`` is one
outer iteration: reset the classifier rows of the classes about to be learned, run the inner
loop on the trajectory, and take an optimiser step on the meta-loss of the final fast weights
on the trajectory plus a batch of other classes (remember the old while learning the new).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call


def inner_loop(
    model: nn.Module,
    params: dict[str, Tensor],
    xs: Sequence[Tensor],
    ys: Sequence[Tensor],
    lr: float,
    trainable: Sequence[str],
    create_graph: bool = True,
) -> dict[str, Tensor]:
    """Sequential SGD: for each ``(x, y)`` in order, ``p <- p - lr * d CE(model(x), y) / dp``
    for every ``p`` named in ``trainable``; the others are held. Returns the fast weights (all
    of ``params``, updated ones replaced)."""
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys must have the same length, got {len(xs)} and {len(ys)}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    missing = [n for n in trainable if n not in params]
    if missing:
        raise ValueError(f"trainable names not in params: {missing}")
    fast = dict(params)
    for x, y in zip(xs, ys, strict=True):
        loss = F.cross_entropy(functional_call(model, fast, (x,)), y)
        grads = torch.autograd.grad(loss, [fast[n] for n in trainable], create_graph=create_graph)
        for n, g in zip(trainable, grads, strict=True):
            fast[n] = fast[n] - lr * g
    return fast


@torch.no_grad()
def reset_rows(linear: nn.Linear, classes: Tensor) -> None:
    """Re-draw the classifier rows of ``classes`` (Kaiming normal) and zero their biases: the
    inner loop must learn them from its trajectory, not remember them (ANML and OML do this)."""
    w = torch.empty(len(classes), linear.in_features, device=linear.weight.device)
    nn.init.kaiming_normal_(w)
    linear.weight[classes] = w.to(linear.weight.dtype)
    if linear.bias is not None:
        linear.bias[classes] = 0.0


def meta_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    traj_x: Tensor,
    traj_y: Tensor,
    rand_x: Tensor,
    rand_y: Tensor,
    inner_lr: float,
    trainable: Sequence[str],
    classifier: nn.Linear | None = None,
) -> tuple[float, float]:
    """One meta-training iteration.

    ``traj_x`` ``[S, ...]`` / ``traj_y`` ``[S]``: the sequence the inner loop learns one sample
    per step; ``rand_x`` / ``rand_y``: the remember batch. With ``classifier`` given, the rows of
    the trajectory's classes are reset first. Returns (meta-loss, meta-accuracy) before the
    outer step."""
    if classifier is not None:
        reset_rows(classifier, traj_y.unique())
    params = dict(model.named_parameters())
    fast = inner_loop(
        model, params, list(traj_x.unsqueeze(1)), list(traj_y.unsqueeze(1)), inner_lr, trainable
    )
    qx, qy = torch.cat([traj_x, rand_x]), torch.cat([traj_y, rand_y])
    logits = functional_call(model, fast, (qx,))
    loss = F.cross_entropy(logits, qy)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item(), (logits.argmax(1) == qy).float().mean().item()


__all__ = ["inner_loop", "meta_step", "reset_rows"]
