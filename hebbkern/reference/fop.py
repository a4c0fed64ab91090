"""Eager reference of the FOP step (first-order preconditioning, SPEC.md section 5).

One parameter at a time, in plain PyTorch, written for clarity: the oracle of the fused step.

Per parameter, with the gradient viewed as a matrix ``G`` ``[a, d]`` and ``P = M M^T`` ``[d, d]``,
one call of the step at time t does, in this order::

    g    = grad + weight_decay * W                      (L2 decay, as torch.optim.SGD / Adam)
    if t > 1:                                           (hypergradient of the previous step's loss)
        S = D_{t-1}^T G_t
        M = M + hyper_lr * lr * (S + S^T) M             (M -= hyper_lr * dJ/dM)
    D_t  = base direction from g (gradient, momentum buffer, or Adam's m_hat / (sqrt(v_hat) + eps))
    W    = W - lr * D_t (M M^T)

``D_{t-1}`` is not stored twice: for momentum SGD it is the momentum buffer before this step's
update; plain SGD and Adam keep it in ``prev_direction`` (SPEC's one extra ``[a, d]`` buffer per
preconditioned weight). The fused kernels use the same state, so a checkpoint of one backend
resumes in another.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

BASES = ("sgd", "adam")
PRECONDITION = ("auto", "spatial", "input", "scalar", "none")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def state_dtype(param_dtype: torch.dtype) -> torch.dtype:
    """The optimiser state's dtype: float32 for float16/bfloat16 parameters (the base state and
    the preconditioner keep their precision), the parameters' own dtype otherwise."""
    return torch.float32 if param_dtype in _LOW_PRECISION else param_dtype


def preconditioned_dim(shape: torch.Size | tuple[int, ...], precondition: str) -> int | None:
    """``d``, the preconditioned axis' length of a parameter of ``shape``; None: base optimiser.

    ``spatial``: the trailing (kernel) axes of a conv weight ``[C_out, C_in, *k]``, d = prod(k);
    ``input``: everything after the first axis (a linear weight's input axis), d = prod(shape[1:]);
    ``scalar``: d = 1, so ``P = p * I`` (hypergradient descent on a per-parameter learning rate);
    ``auto``: ``spatial`` for 3-D and larger weights, ``input`` for 2-D ones, none below.
    Parameters with too few axes for the chosen mode (biases, norms) get the base optimiser.
    """
    ndim = len(shape)
    if precondition == "auto":
        precondition = "spatial" if ndim >= 3 else "input"
    if precondition == "none" or ndim == 0:
        return None
    if precondition == "scalar":
        return 1
    if precondition == "spatial":
        return math.prod(shape[2:]) if ndim >= 3 else None
    if precondition == "input":
        return math.prod(shape[1:]) if ndim >= 2 else None
    raise ValueError(f"precondition must be one of {PRECONDITION}, got {precondition!r}")


def init_state(param: Tensor, *, base: str, momentum: float, d: int | None) -> dict[str, Tensor]:
    """The state of a parameter before its first step (M = I: the first step is the base's).

    Buffers are in :func:`state_dtype` (float32 for half parameters); ``step`` is a float32 scalar
    on the parameter's device (so a GPU step never reads it on the host).
    """
    like = dict(memory_format=torch.contiguous_format, dtype=state_dtype(param.dtype))
    state: dict[str, Tensor] = {"step": torch.tensor(0.0, dtype=torch.float32, device=param.device)}
    if d is not None:
        state["M"] = torch.eye(d, dtype=state_dtype(param.dtype), device=param.device)
    if base == "adam":
        state["exp_avg"] = torch.zeros_like(param, **like)
        state["exp_avg_sq"] = torch.zeros_like(param, **like)
    elif momentum != 0:
        state["momentum_buffer"] = torch.zeros_like(param, **like)
    if d is not None and (base == "adam" or momentum == 0):
        state["prev_direction"] = torch.zeros_like(param, **like)
    return state


def adam_direction(
    exp_avg: Tensor, exp_avg_sq: Tensor, step: int, beta1: float, beta2: float, eps: float
) -> Tensor:
    """Adam's ``m_hat / (sqrt(v_hat) + eps)`` after ``step`` updates of the moments."""
    bc1 = 1 - beta1**step
    bc2 = 1 - beta2**step
    return (exp_avg / bc1) / (exp_avg_sq.sqrt() / math.sqrt(bc2) + eps)


class FOPHyper(NamedTuple):
    """A parameter group's options as the FOP steps take them (the reference's per-parameter step
    and the optimiser's multi-tensor step): one definition for both."""

    base: str
    lr: float
    hyper_lr: float
    momentum: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float


def fop_param_step(param: Tensor, grad: Tensor, state: dict[str, Tensor], hyper: FOPHyper) -> None:
    """One FOP step of one parameter, in place on ``param`` and ``state`` (see the module doc)."""
    base, lr, hyper_lr, momentum, (beta1, beta2), eps, weight_decay = hyper
    sd = state_dtype(param.dtype)
    g = grad.to(sd) if weight_decay == 0 else grad.to(sd) + weight_decay * param.to(sd)
    state["step"] += 1
    t = int(state["step"].item())
    M = state.get("M")
    if M is not None:
        d = M.shape[0]
        G = g.reshape(-1, d)
        if t > 1:
            uses_buffer = base == "sgd" and momentum != 0
            D_prev = state["momentum_buffer" if uses_buffer else "prev_direction"]
            S = D_prev.reshape(-1, d).T @ G
            M.add_((S + S.T) @ M, alpha=hyper_lr * lr)

    if base == "adam":
        state["exp_avg"].mul_(beta1).add_(g, alpha=1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
        D = adam_direction(state["exp_avg"], state["exp_avg_sq"], t, beta1, beta2, eps)
    elif momentum != 0:
        buf = state["momentum_buffer"]
        if t == 1:
            buf.copy_(g)
        else:
            buf.mul_(momentum).add_(g)
        D = buf
    else:
        D = g
    if "prev_direction" in state:
        state["prev_direction"].copy_(D)

    if M is None:
        param.sub_(lr * D)
    else:
        P = M @ M.T
        param.sub_(lr * (D.reshape(-1, d) @ P).reshape(param.shape))


@torch.no_grad()
def fop_step(
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict[str, Tensor]],
    *,
    base: str = "sgd",
    lr: float,
    hyper_lr: float,
    momentum: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> None:
    """The FOP step of a group of parameters, one after another (states from :func:`init_state`)."""
    hyper = FOPHyper(base, lr, hyper_lr, momentum, tuple(betas), eps, weight_decay)
    for p, g, s in zip(params, grads, states, strict=True):
        fop_param_step(p, g, s, hyper)
