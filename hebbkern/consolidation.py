"""Synaptic consolidation penalties for continual learning: EWC, online EWC, SI and MAS.

Each keeps, for a chosen set of parameters (for DHP: the slow weights only), an importance
``Omega`` and an anchor ``theta*``, and gives the quadratic penalty of docs/SPEC.md section 3::

    penalty = strength * sum_p sum(Omega_p * (p - theta*_p) ** 2)

They work with any model: the importance estimates take closures that run the model, so no
assumption is made about its inputs or outputs. Usage at the end of each task::

    ewc = EWC(model.head.named_parameters(), strength=100.0)
    ...                                        # train task 1 with loss = task_loss + ewc()
    ewc.consolidate(nll_closures)              # one closure per sample: returns -log p(y | x)
    ...                                        # train task 2 with loss = task_loss + ewc()
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

Params = Mapping[str, nn.Parameter] | Iterable[tuple[str, nn.Parameter]] | Iterable[nn.Parameter]


def _named(params: Params) -> dict[str, nn.Parameter]:
    if isinstance(params, nn.Module):
        raise TypeError(
            f"params must be parameters or (name, parameter) pairs, got a {type(params).__name__} "
            "module; pass module.named_parameters() (or a subset of them)"
        )
    if isinstance(params, Tensor) or not isinstance(params, Iterable):
        raise TypeError(
            "params must be an iterable of parameters or (name, parameter) pairs, or a mapping "
            f"from names to parameters, got {type(params).__name__}"
        )
    items = list(params.items() if isinstance(params, Mapping) else params)
    out: dict[str, nn.Parameter] = {}
    for i, item in enumerate(items):
        if isinstance(item, tuple) and (len(item) != 2 or not isinstance(item[0], str)):
            raise TypeError(
                f"params[{i}] must be a parameter or a (name, parameter) pair, got a tuple of "
                f"{len(item)} items"
            )
        name, p = item if isinstance(item, tuple) else (str(i), item)
        if not isinstance(p, Tensor) or not p.requires_grad:
            raise TypeError(f"parameter {name!r} must be a tensor that requires grad")
        out[name] = p
    if not out:
        raise ValueError("params must hold at least one parameter")
    return out


def _number(name: str, value: object) -> float:
    """A finite real number: ``inf`` and NaN would make every penalty NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _strength(strength: object) -> float:
    strength = _number("strength", strength)
    if strength < 0:
        raise ValueError(f"strength must be a float >= 0, got {strength!r}")
    return strength


def _grads(params: dict[str, nn.Parameter], value: Tensor) -> dict[str, Tensor]:
    """The gradient of a scalar ``value`` with respect to each parameter (zeros where unused)."""
    if not isinstance(value, Tensor) or value.numel() != 1:
        raise ValueError("a closure must return a scalar tensor")
    gs = torch.autograd.grad(value.reshape(()), list(params.values()), allow_unused=True)
    return {
        n: torch.zeros_like(p) if g is None else g.detach()
        for (n, p), g in zip(params.items(), gs, strict=True)
    }


def _checked(closures: object) -> Iterable[Callable[[], Tensor]]:
    """The closures, each checked to be callable as it comes (they may be a generator)."""
    if isinstance(closures, Tensor) or not isinstance(closures, Iterable):
        raise TypeError(f"closures must be an iterable of callables, got {type(closures).__name__}")
    for i, closure in enumerate(closures):
        if not callable(closure):
            raise TypeError(
                f"closure {i} must be a callable (no arguments) returning a scalar tensor, "
                f"got {type(closure).__name__}"
            )
        yield closure


def _mean_over(params, closures, transform) -> dict[str, Tensor]:
    total = {
        n: torch.zeros_like(p, memory_format=torch.contiguous_format) for n, p in params.items()
    }
    count = 0
    for closure in _checked(closures):
        for n, g in _grads(params, closure()).items():
            total[n] += transform(g)
        count += 1
    if count == 0:
        raise ValueError("the importance estimate needs at least one closure")
    return {n: t / count for n, t in total.items()}


def fisher_diagonal(
    params: Params, nll_closures: Iterable[Callable[[], Tensor]]
) -> dict[str, Tensor]:
    """Diagonal Fisher information: the mean over closures of the squared gradient of each
    closure's negative log-likelihood. One closure per sample gives the per-sample (empirical,
    or sampled if the closure draws the label from the model) Fisher of the EWC paper; a closure
    per batch gives the cheaper batch approximation."""
    return _mean_over(_named(params), nll_closures, lambda g: g * g)


def mas_importance(
    params: Params, output_closures: Iterable[Callable[[], Tensor]]
) -> dict[str, Tensor]:
    """Memory Aware Synapses: the mean over closures of ``|d ||F(x)||_2^2 / d theta|``, where
    each closure returns the model's output ``F(x)`` (unlabelled data suffice)."""
    named = _named(params)
    closures = (lambda c=c: c().pow(2).sum() for c in _checked(output_closures))
    return _mean_over(named, closures, torch.abs)


class _Quadratic:
    """Shared part: the parameters, their importance and anchor, and the penalty."""

    def __init__(self, params: Params, strength: float) -> None:
        self.params = _named(params)
        self.strength = _strength(strength)
        self.omega = {n: torch.zeros_like(p).detach() for n, p in self.params.items()}
        self.anchor: dict[str, Tensor] | None = None

    def _snapshot(self) -> dict[str, Tensor]:
        return {n: p.detach().clone() for n, p in self.params.items()}

    def _terms(self) -> Iterable[tuple[dict[str, Tensor], dict[str, Tensor]]]:
        return [] if self.anchor is None else [(self.omega, self.anchor)]

    def penalty(self) -> Tensor:
        """``strength * sum(Omega * (p - anchor) ** 2)``; zero before the first consolidation."""
        first = next(iter(self.params.values()))
        total = first.new_zeros(())
        for omega, anchor in self._terms():
            for n, p in self.params.items():
                total = total + (omega[n] * (p - anchor[n]).pow(2)).sum()
        return self.strength * total

    __call__ = penalty


class EWC(_Quadratic):
    """Elastic Weight Consolidation (Kirkpatrick et al.): one quadratic term per past task, each
    with that task's diagonal Fisher and its parameters at the end of the task."""

    def __init__(self, params: Params, strength: float = 1.0) -> None:
        super().__init__(params, strength)
        self.tasks: list[tuple[dict[str, Tensor], dict[str, Tensor]]] = []

    def consolidate(self, nll_closures: Iterable[Callable[[], Tensor]]) -> dict[str, Tensor]:
        """Ends a task: estimates its Fisher (:func:`fisher_diagonal`) and anchors the current
        parameters. Returns the task's importance."""
        fisher = fisher_diagonal(self.params, nll_closures)
        self.tasks.append((fisher, self._snapshot()))
        self.omega, self.anchor = fisher, self.tasks[-1][1]
        return fisher

    def _terms(self):
        return self.tasks


class OnlineEWC(_Quadratic):
    """Online EWC (Schwarz et al., "Progress & Compress"): one running importance
    ``Omega <- gamma * Omega + F_task`` and one anchor, the parameters after the latest task."""

    def __init__(self, params: Params, strength: float = 1.0, gamma: float = 1.0) -> None:
        super().__init__(params, strength)
        gamma = _number("gamma", gamma)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
        self.gamma = gamma

    def consolidate(self, nll_closures: Iterable[Callable[[], Tensor]]) -> dict[str, Tensor]:
        fisher = fisher_diagonal(self.params, nll_closures)
        self.omega = {n: self.gamma * self.omega[n] + fisher[n] for n in self.params}
        self.anchor = self._snapshot()
        return self.omega


class SI(_Quadratic):
    """Synaptic Intelligence (Zenke et al.): the path integral of the loss along training.

    Around every optimiser step call :meth:`before_step` (after ``backward``, so ``.grad`` holds
    the gradient the optimiser uses) and :meth:`after_step`; they accumulate
    ``w += -grad * (p_after - p_before)``. At the end of a task, :meth:`consolidate` adds
    ``w / ((p - p_task_start) ** 2 + xi)`` to ``Omega``, anchors the current parameters and
    restarts the path integral.
    """

    def __init__(self, params: Params, strength: float = 1.0, xi: float = 0.1) -> None:
        super().__init__(params, strength)
        # A finite xi > 0: inf would make every importance zero (no consolidation at all).
        xi = _number("xi", xi)
        if not xi > 0:
            raise ValueError(f"xi (the damping) must be > 0, got {xi!r}")
        self.xi = xi
        self.start = self._snapshot()
        self.path = {n: torch.zeros_like(p).detach() for n, p in self.params.items()}
        self._pending: tuple[dict[str, Tensor], dict[str, Tensor]] | None = None

    def before_step(self) -> None:
        grads = {
            n: torch.zeros_like(p).detach() if p.grad is None else p.grad.detach().clone()
            for n, p in self.params.items()
        }
        self._pending = (grads, self._snapshot())

    def after_step(self) -> None:
        if self._pending is None:
            raise RuntimeError("SI.after_step() needs a matching before_step()")
        grads, before = self._pending
        self._pending = None
        for n, p in self.params.items():
            self.path[n] -= grads[n] * (p.detach() - before[n])

    def consolidate(self) -> dict[str, Tensor]:
        for n, p in self.params.items():
            delta = p.detach() - self.start[n]
            self.omega[n] = self.omega[n] + self.path[n] / (delta * delta + self.xi)
            self.path[n].zero_()
        self.anchor = self._snapshot()
        self.start = self._snapshot()
        return self.omega


class MAS(_Quadratic):
    """Memory Aware Synapses (Aljundi et al.): importance from the sensitivity of the squared
    output norm (:func:`mas_importance`), accumulated over tasks; anchor after the latest task."""

    def __init__(self, params: Params, strength: float = 1.0) -> None:
        super().__init__(params, strength)

    def consolidate(self, output_closures: Iterable[Callable[[], Tensor]]) -> dict[str, Tensor]:
        imp = mas_importance(self.params, output_closures)
        self.omega = {n: self.omega[n] + imp[n] for n in self.params}
        self.anchor = self._snapshot()
        return self.omega


__all__ = ["EWC", "MAS", "SI", "OnlineEWC", "fisher_diagonal", "mas_importance"]
