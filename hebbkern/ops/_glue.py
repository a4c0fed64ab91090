"""What the op files share around their kernels: the compute dtype of half inputs, the
gradient tuple autograd expects back, and the lazily imported Triton forward ops."""

from __future__ import annotations

import importlib

import torch
from torch import Tensor

LOW_PRECISION = (torch.float16, torch.bfloat16)


def compute_dtype(io_dtype: torch.dtype) -> torch.dtype:
    """The kernels compute in float32 or float64: half inputs run with float32 state and
    accumulation and come back in their own dtype."""
    return torch.float32 if io_dtype in LOW_PRECISION else io_dtype


def to(x: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    return None if x is None else x.to(dtype)


def differentiable(inputs: tuple) -> tuple[bool, ...]:
    """Per op input (``setup_context``'s ``inputs``): whether autograd takes a gradient for it, a
    floating tensor (not an omitted optional one, a mask, a string or a number)."""
    return tuple(isinstance(x, Tensor) and x.is_floating_point() for x in inputs)


def keep_given(given: tuple[bool, ...], grads: tuple) -> tuple:
    """The backward's return: ``grads`` (the kernel's, one per leading input) where ``given``
    (:func:`differentiable`), ``None`` elsewhere and for the inputs past ``grads``."""
    padded = grads + (None,) * (len(given) - len(grads))
    return tuple(g if k else None for g, k in zip(padded, given, strict=True))


def triton_fwd(family: str):
    """The Triton forward op ``hebbkern/triton/<family>_ops.py:<family>_triton_fwd``, imported on
    first use so that ``import hebbkern`` never imports triton (TRITON_INTERPRET must be set
    before triton's first import)."""
    module = importlib.import_module(f"hebbkern.triton.{family}_ops")
    return getattr(module, f"{family}_triton_fwd")
