"""``hebbkern.optim.FOP``: first-order preconditioning as a fused ``torch.optim`` optimiser.

SPEC.md section 5 (Moskovitz et al., "First-order preconditioning via hypergradient descent"): per
weight, a preconditioner ``P = M M^T`` learned by hypergradient descent turns the base optimiser's
step into ``W -= lr * D P``. The order of operations is the one of :mod:`hebbkern.reference.fop`.

Backends of a step (one parameter group, one call per device and dtype):

- ``cpu``: ``torch.ops.hebbkern.fop_step_``, the multi-tensor C++ kernel (csrc/cpu/fop.cpp), one
  call for the whole group; float32 and float64 CPU parameters.
- ``triton``: ``torch.ops.hebbkern.fop_step_triton_`` (hebbkern/triton/fop_ops.py), the fused
  multi-tensor GPU step: a few Triton launches for the whole group, cuBLAS GEMMs for the
  preconditioners of linear layers; the default for float32/bfloat16/float16 CUDA parameters
  when triton is installed. Nothing in it reads the step on the host, so it is capturable in a
  CUDA graph.
- ``foreach``: a device-generic multi-tensor path of ``torch._foreach_*`` ops plus two small
  matmuls per preconditioned weight; the default for other devices, float64 CUDA parameters and
  low-precision CPU parameters.
- ``reference``: the eager per-parameter oracle.

State is float32 for float16/bfloat16 parameters (:func:`hebbkern.reference.fop.state_dtype`) on
every backend, and ``step`` lives on the parameter's device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from numbers import Real
from typing import Any

import torch
from torch import Tensor

from .. import backends
from ..ops import fop as _ops  # noqa: F401  (registers the op's fake kernel)
from ..reference import fop as _ref
from ..reference.fop import BASES, PRECONDITION

# "cuda" names the CUDA C++ kernels of plastic_rnn; FOP's GPU kernels are Triton ("triton").
OPTIM_BACKENDS = (*(b for b in backends.BACKENDS if b != "cuda"), "foreach")
_KERNEL_DTYPES = (torch.float32, torch.float64)
_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _number(name: str, x: object, *, low: float = 0.0, high: float | None = None) -> float:
    """A finite real ``x`` with ``low <= x`` (and ``x < high`` when given), as a float."""
    if isinstance(x, bool) or not isinstance(x, Real):
        raise TypeError(f"{name} must be a float, got {type(x).__name__}")
    x = float(x)
    if not math.isfinite(x) or x < low or (high is not None and x >= high):
        bound = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a finite number {bound}, got {x}")
    return x


def check_hyperparameters(group: dict[str, Any]) -> None:
    """Raises ``TypeError``/``ValueError`` naming the first bad hyper-parameter of ``group``."""
    _number("lr", group["lr"])
    _number("hyper_lr", group["hyper_lr"])
    base = group["base"]
    if not isinstance(base, str) or base not in BASES:
        raise ValueError(f"base must be one of {', '.join(map(repr, BASES))}, got {base!r}")
    momentum = _number("momentum", group["momentum"], high=1.0)
    if base == "adam" and momentum != 0:
        raise ValueError(f"momentum must be 0 with base 'adam' (use betas), got {momentum}")
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair of floats, got {betas!r}")
    _number("betas[0]", betas[0], high=1.0)
    _number("betas[1]", betas[1], high=1.0)
    _number("eps", group["eps"])
    _number("weight_decay", group["weight_decay"])
    pre = group["precondition"]
    if not isinstance(pre, str) or pre not in PRECONDITION:
        raise ValueError(
            f"precondition must be one of {', '.join(map(repr, PRECONDITION))}, got {pre!r}"
        )


class FOP(torch.optim.Optimizer):
    r"""First-order preconditioning (FOP) on top of SGD (with optional momentum) or Adam.

    Per weight, the gradient is viewed as a matrix ``G`` ``[a, d]`` and the step is
    ``W -= lr * D M M^T``, with ``D`` the base optimiser's direction (the gradient, the momentum
    buffer, or Adam's ``m_hat / (sqrt(v_hat) + eps)``) and ``M`` ``[d, d]`` learned by
    hypergradient descent on the loss after the previous step::

        M <- M + hyper_lr * lr * (D_prev^T G + G^T D_prev) M        (M starts at the identity)

    so the first step is exactly the base optimiser's.

    Args:
        params: parameters or parameter groups, as for any ``torch.optim`` optimiser.
        lr: learning rate of the base optimiser.
        hyper_lr: learning rate of the preconditioners (0 keeps ``M = I``: the base optimiser).
        base: ``"sgd"`` or ``"adam"``.
        momentum: SGD momentum (PyTorch convention: ``buf = momentum * buf + g``; 0 for Adam).
        betas, eps: Adam's coefficients.
        weight_decay: L2 penalty added to the gradient (as ``torch.optim.SGD``/``Adam``); the
            hypergradient uses the penalised gradient.
        precondition: which axis is preconditioned, per group. ``"auto"`` (default): the k*k
            spatial axis of conv weights (3-D and larger), the input axis of linear (2-D) weights,
            none for biases and other 1-D parameters. ``"spatial"``, ``"input"`` force one rule
            (parameters with too few axes get the base optimiser); ``"scalar"`` learns one scalar
            ``P = p * I`` per parameter (hypergradient descent on its learning rate); ``"none"``.
        backend: ``None`` (the C++ kernel for float32/float64 CPU parameters, the fused Triton step
            for float32/bfloat16/float16 CUDA parameters, the ``foreach`` path otherwise), or one
            of ``"cpu"``, ``"triton"``, ``"foreach"``, ``"reference"`` to force one.

    State per parameter (in ``state_dict()``): ``step``, ``M`` (preconditioned weights), the base
    optimiser's buffers (``momentum_buffer``; ``exp_avg``/``exp_avg_sq``) and, for preconditioned
    weights of plain SGD and Adam, ``prev_direction`` (the direction the hypergradient needs; with
    momentum it is the momentum buffer).
    Every backend uses this layout, so a checkpoint resumes on any of them and on any device; on
    the same backend and thread count a resumed run continues bit-identically. Buffers are float32
    for float16/bfloat16 parameters.
    """

    # The eager oracle; an attribute so a benchmark can substitute a compiled version of it.
    _reference_step = staticmethod(_ref.fop_step)

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        hyper_lr: float,
        base: str = "sgd",
        momentum: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        precondition: str = "auto",
        *,
        backend: str | None = None,
    ) -> None:
        if backend is not None and backend not in OPTIM_BACKENDS:
            raise ValueError(
                f"backend must be None or one of {', '.join(map(repr, OPTIM_BACKENDS))}, "
                f"got {backend!r}"
            )
        self.backend = backend
        # Read once here, not in step(): torch.compile traces step() without a break.
        self._triton = backends.triton_available()
        self._interpreting = backends.triton_interpreting()
        defaults = dict(
            lr=lr, hyper_lr=hyper_lr, base=base, momentum=momentum, betas=tuple(betas)
            if isinstance(betas, (tuple, list)) else betas, eps=eps, weight_decay=weight_decay,
            precondition=precondition,
        )  # fmt: skip
        self._empty: dict[tuple[torch.dtype, torch.device], Tensor] = {}
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group after checking its hyper-parameters (defaults filled in) and parameters."""
        merged = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        check_hyperparameters(merged)
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for i, p in enumerate(params):
            if isinstance(p, Tensor) and not p.is_floating_point():
                raise TypeError(f"params[{i}] must be a floating-point tensor, got {p.dtype}")
        super().add_param_group(param_group)

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        state = self.state[p]
        if not state:
            d = _ref.preconditioned_dim(p.shape, group["precondition"])
            state.update(_ref.init_state(p, base=group["base"], momentum=group["momentum"], d=d))
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One optimisation step of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            buckets: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ValueError("FOP does not support sparse gradients")
                self._init_state(p, group)
                buckets.setdefault((p.device, p.dtype), []).append(p)
            for (device, dtype), params in buckets.items():
                backend = self._resolve(device, dtype)
                states = [self.state[p] for p in params]
                grads = [p.grad for p in params]
                if backend in ("cpu", "triton"):
                    self._step_kernel(params, grads, states, group, backend)
                elif backend == "foreach":
                    foreach_step(params, grads, states, _hyper(group))
                else:
                    self._reference_step(params, grads, states, **_hyper(group)._asdict())
        return loss

    def _resolve(self, device: torch.device, dtype: torch.dtype) -> str:
        if self.backend == "foreach":
            return "foreach"
        if self.backend is None and device.type == "cuda":
            return "triton" if dtype in _TRITON_DTYPES and self._triton else "foreach"
        if self.backend is None and (device.type != "cpu" or dtype not in _KERNEL_DTYPES):
            return "foreach"
        if self.backend == "cpu" and dtype not in _KERNEL_DTYPES:
            raise TypeError(f"backend 'cpu' needs float32 or float64 parameters, got {dtype}")
        if self.backend == "triton":
            if dtype not in _TRITON_DTYPES:
                raise TypeError(
                    f"backend 'triton' needs float32, bfloat16 or float16 parameters, got {dtype}"
                )
            if not self._triton:
                raise RuntimeError("backend 'triton' needs the triton package (pip install triton)")
            if device.type != "cuda" and not (device.type == "cpu" and self._interpreting):
                raise ValueError(
                    f"backend 'triton' needs CUDA tensors, got tensors on {device} (CPU tensors "
                    "run only under the Triton interpreter, TRITON_INTERPRET=1 set before triton "
                    "is imported)"
                )
            return "triton"
        return backends.resolve(self.backend, device)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As ``torch.optim.Optimizer``'s, except that buffers take the state dtype (float32 for
        half parameters, where torch would cast them to the parameters' dtype) and ``step`` the
        parameter's device (torch leaves it where it was saved): a checkpoint written on one
        device resumes on another."""
        super().load_state_dict(state_dict)
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for pid, p in zip(saved_ids, params, strict=True):
            if pid not in state_dict["state"]:
                continue
            st = self.state[p]
            for key, v in state_dict["state"][pid].items():
                if isinstance(v, Tensor) and v.is_floating_point():
                    dtype = torch.float32 if key == "step" else _ref.state_dtype(p.dtype)
                    st[key] = v.to(dtype=dtype, device=p.device, copy=True)

    def _placeholder(self, like: Tensor) -> Tensor:
        key = (like.dtype, like.device)
        if key not in self._empty:
            self._empty[key] = like.new_empty(0)
        return self._empty[key]

    def _step_kernel(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        states: list[dict[str, Tensor]],
        group: dict[str, Any],
        backend: str,
    ) -> None:
        empty = self._placeholder(params[0])
        adam = group["base"] == "adam"
        precond = [s.get("M", empty) for s in states]
        prev = [s.get("prev_direction", empty) for s in states]
        buf1_key = "exp_avg" if adam else ("momentum_buffer" if group["momentum"] else None)
        buf1 = [s[buf1_key] for s in states] if buf1_key else []
        buf2 = [s["exp_avg_sq"] for s in states] if adam else []
        steps = [s["step"] for s in states]
        beta1, beta2 = group["betas"]
        if backend == "triton":
            from ..triton.fop_ops import fop_step_triton_

            op = fop_step_triton_
            for s in states:  # a checkpoint loaded by torch's own policy may hold a CPU step
                if s["step"].device != params[0].device:
                    s["step"] = s["step"].to(params[0].device)
            steps = [s["step"] for s in states]
        else:
            op = torch.ops.hebbkern.fop_step_
        op(
            params, grads, precond, prev, buf1, buf2, steps, group["base"], group["lr"],
            group["hyper_lr"], group["momentum"], beta1, beta2, group["eps"],
            group["weight_decay"],
        )  # fmt: skip


def _hyper(group: dict[str, Any]) -> _ref.FOPHyper:
    return _ref.FOPHyper(*(group[k] for k in _ref.FOPHyper._fields))


@torch.no_grad()
def foreach_step(
    params: list[Tensor], grads: list[Tensor], states: list[dict[str, Tensor]], hyper: _ref.FOPHyper
) -> None:
    """The FOP step of a group on any device: elementwise work as multi-tensor ``torch._foreach``
    ops, and per preconditioned weight the two small products (``D^T G`` and ``D P``) as matmuls.
    """
    base, lr, hyper_lr, momentum, (beta1, beta2), eps, weight_decay = hyper
    steps = [s["step"] for s in states]
    torch._foreach_add_(steps, 1.0)
    ts = [int(s.item()) for s in steps]
    sd = _ref.state_dtype(params[0].dtype)
    if sd != params[0].dtype:  # half parameters: float32 state, so float32 gradients
        gs = [g.to(sd) for g in grads]
        if weight_decay:
            torch._foreach_add_(gs, [p.to(sd) for p in params], alpha=weight_decay)
    else:
        gs = torch._foreach_add(grads, params, alpha=weight_decay) if weight_decay else list(grads)

    # Hypergradient: D_{t-1} from the state before this step's update.
    hyp = [i for i, s in enumerate(states) if "M" in s and ts[i] > 1]
    key = "momentum_buffer" if base == "sgd" and momentum else "prev_direction"
    for i in hyp:
        M = states[i]["M"]
        d = M.shape[0]
        S = states[i][key].reshape(-1, d).T @ gs[i].reshape(-1, d)
        M.add_((S + S.T) @ M, alpha=hyper_lr * lr)

    # Base optimiser: state update and direction.
    if base == "adam":
        ms = [s["exp_avg"] for s in states]
        vs = [s["exp_avg_sq"] for s in states]
        torch._foreach_mul_(ms, beta1)
        torch._foreach_add_(ms, gs, alpha=1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, gs, gs, value=1 - beta2)
        dirs = _adam_dirs(ms, vs, ts, beta1, beta2, eps)
    elif momentum:
        bufs = [s["momentum_buffer"] for s in states]
        first = [i for i, t in enumerate(ts) if t == 1]
        later = [i for i, t in enumerate(ts) if t > 1]
        if first:
            torch._foreach_copy_([bufs[i] for i in first], [gs[i] for i in first])
        if later:
            lb = [bufs[i] for i in later]
            torch._foreach_mul_(lb, momentum)
            torch._foreach_add_(lb, [gs[i] for i in later])
        dirs = bufs
    else:
        dirs = gs
    keep = [i for i, s in enumerate(states) if "prev_direction" in s]
    if keep:
        torch._foreach_copy_([states[i]["prev_direction"] for i in keep], [dirs[i] for i in keep])

    updates = []
    for D, p, s in zip(dirs, params, states, strict=True):
        M = s.get("M")
        if M is None:
            updates.append(D)
        else:
            d = M.shape[0]
            updates.append((D.reshape(-1, d) @ (M @ M.T)).reshape(p.shape))
    torch._foreach_add_(params, updates, alpha=-lr)


def _adam_dirs(
    ms: list[Tensor], vs: list[Tensor], ts: list[int], beta1: float, beta2: float, eps: float
) -> list[Tensor]:
    """``(m / bc1) / (sqrt(v) / sqrt(bc2) + eps)`` for every tensor, with per-tensor steps."""
    bc1 = [1 - beta1**t for t in ts]
    bc2 = [math.sqrt(1 - beta2**t) for t in ts]
    den = torch._foreach_sqrt(vs)
    torch._foreach_div_(den, bc2)
    torch._foreach_add_(den, eps)
    num = torch._foreach_div(ms, bc1)
    return torch._foreach_div(num, den)
