"""Which GPU backend runs ``plastic_rnn`` on CUDA tensors when the caller does not say.

With both GPU backends available (the CUDA C++ kernels and the Triton kernels), the choice comes
from a table measured on a GPU and committed with the code (``hebbkern/_dispatch_table.py``,
written by ``python -m benchmarks.dispatch_table``): the entry of the same dtype (else float32) with
the nearest N on a log scale. Without a measured entry, the Triton backend stays the default.
"""

from __future__ import annotations

import math

import torch

from . import _dispatch_table

GPU_BACKENDS = ("cuda", "triton")


def measured_choice(N: int, dtype: torch.dtype, table: dict | None = None) -> str | None:
    """The backend the table measured fastest for the nearest N of this dtype, or None."""
    table = _dispatch_table.PLASTIC_RNN if table is None else table
    name = str(dtype).removeprefix("torch.")
    for want in (name, "float32"):
        sizes = [n for (dt, n) in table if dt == want]
        if sizes:
            nearest = min(sizes, key=lambda n: (abs(math.log2(n) - math.log2(max(N, 1))), n))
            return table[(want, nearest)]["fastest"]
    return None


def plastic_rnn_gpu_backend(N: int, dtype: torch.dtype, available: tuple[str, ...]) -> str:
    """The GPU backend for a ``plastic_rnn`` call of width N among the ``available`` ones."""
    if not available:
        raise RuntimeError("no GPU backend available")
    if len(available) == 1:
        return available[0]
    choice = measured_choice(N, dtype)
    if choice in available:
        return choice
    return "triton" if "triton" in available else available[0]
