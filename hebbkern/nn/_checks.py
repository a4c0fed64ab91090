"""Argument checks the modules share: construction dtypes, inputs and carried states.

A module's input goes through its own parameters (``F.linear``) before any hebbkern op sees it,
so a wrong dtype, a list or a wrongly shaped state would otherwise fail deep inside torch with a
message that names no argument ("mat1 and mat2 must have the same dtype", "'list' object has no
attribute 'dim'"). These checks name the argument and what was expected instead.
"""

from __future__ import annotations

import torch
from torch import Tensor

_FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_factory_dtype(dtype: object) -> None:
    """``dtype=`` of a module constructor: ``None`` or a real floating dtype (the kernels and the
    rules' clamps and tanh have no complex or integer form)."""
    if dtype is None:
        return
    if not isinstance(dtype, torch.dtype) or dtype not in _FLOATING:
        raise TypeError(
            f"dtype must be float16, bfloat16, float32 or float64 (or None), got {dtype!r}"
        )


def check_input(name: str, x: object, param: Tensor) -> Tensor:
    """``x`` a tensor with the dtype and device of the module's parameter ``param``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != param.dtype:
        raise TypeError(
            f"{name} must have dtype {param.dtype} (the module's parameters' dtype), got "
            f"{x.dtype}; convert the input or the module with .to()"
        )
    if x.device != param.device:
        raise ValueError(
            f"{name} must be on {param.device} (the module's parameters' device), got {x.device}"
        )
    return x


def check_state_tuple(state: object, names: tuple[str, ...], optional: int = 0) -> tuple:
    """A carried state: a tuple (or named tuple) of ``len(names)`` tensors, the last ``optional``
    of which may be left out or ``None``."""
    # Messages built only on failure: a cell checks its state on every step.
    if isinstance(state, Tensor) or not isinstance(state, (tuple, list)):
        full = f"({', '.join(names)})"
        raise TypeError(f"state must be a tuple {full}, got {type(state).__name__}")
    lo, hi = len(names) - optional, len(names)
    if not lo <= len(state) <= hi:
        full = f"({', '.join(names)})"
        raise ValueError(f"state must be a tuple {full} of {lo}..{hi} items, got {len(state)}")
    for i, (name, s) in enumerate(zip(names, state, strict=False)):
        if s is None and i >= lo:
            continue
        if not isinstance(s, Tensor):
            raise TypeError(f"state {name} must be a torch.Tensor, got {type(s).__name__}")
    return tuple(state) + (None,) * (hi - len(state))
