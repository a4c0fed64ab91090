"""Backend selection: which implementation an op runs (the one module that decides it).

``backend=None`` picks the default for the tensors' device. CPU: the C++ kernel. CUDA: for
``plastic_rnn`` the faster of the CUDA C++ and Triton kernels by a table measured on a GPU
(``hebbkern/_dispatch_table.py``, data written by ``python -m benchmarks.dispatch_table``); for
``trace_update`` the CUDA C++ kernels; for the families without GPU kernels the eager reference,
with one warning. ``plastic_step`` and ``plastic_linear`` run their Triton kernels on CUDA tensors
(TRITON_FAMILIES). An explicit name forces one; :func:`use_backend` changes the default inside a
``with`` block.

Facts about the installation (is the extension built with CUDA kernels, is triton installed, is the
Triton interpreter on) are read ONCE, when this module is imported, into module constants. The
ops call :func:`resolve` on every call, also inside code that ``torch.compile`` traces: from
there it must reach no pybind function (``hebbkern._C.with_cuda``), no import machinery
(``importlib.util.find_spec``) and nothing else dynamo refuses, on CPU and CUDA tensors alike.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import threading
import warnings
from collections.abc import Iterator

import torch

from . import _dispatch_table, _extension

BACKENDS = ("reference", "cpu", "cuda", "triton")


class _Local(threading.local):
    # A class-level default: getattr of a missing attribute of a threading.local raises and
    # catches AttributeError inside, 0.7 us on every resolve() (once per single-step call).
    default: str | None = None


_local = _Local()
_CPU = torch.device("cpu")


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Make ``name`` the default backend of hebbkern ops inside the block (None: automatic)."""
    if name is not None:
        _check_name(name)
    previous = _local.default
    _local.default = name
    try:
        yield
    finally:
        _local.default = previous


def _check_name(name: object) -> None:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(
            f"backend must be None or one of {', '.join(map(repr, BACKENDS))}, got {name!r}"
        )


_warned_no_gpu_backend = False


# Read once at import (see the module docstring); tests may monkeypatch the functions below.
_TRITON_INSTALLED: bool = importlib.util.find_spec("triton") is not None
_TRITON_INTERPRET: bool = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
_CUDA_KERNELS: bool = _extension.available() and _extension.with_cuda()


def triton_available() -> bool:
    """True when triton can be imported (checked without importing it: see hebbkern/triton)."""
    return _TRITON_INSTALLED


def triton_interpreting() -> bool:
    """True under ``TRITON_INTERPRET=1``, where the Triton kernels run on CPU tensors (the
    variable must be set before triton is first imported, so reading it once is exact)."""
    return _TRITON_INTERPRET


def _check_triton(device: torch.device) -> None:
    if not triton_available():
        raise RuntimeError("backend 'triton' needs the triton package (pip install triton)")
    if device.type == "cuda":
        return
    if device.type == "cpu" and triton_interpreting():
        return
    raise ValueError(
        f"backend 'triton' needs CUDA tensors, got tensors on {device} (CPU tensors run only "
        "under the Triton interpreter, TRITON_INTERPRET=1 set before triton is imported)"
    )


def cuda_kernels_available() -> bool:
    """True when the extension was built with its CUDA kernels (and so can run them)."""
    return _CUDA_KERNELS


def _check_cuda(device: torch.device) -> None:
    if device.type != "cuda":
        raise ValueError(f"backend 'cuda' needs CUDA tensors, got tensors on {device}")
    if not cuda_kernels_available():
        reason = (
            _extension.load_error() or "it was built without CUDA (nvcc or a CUDA torch missing)"
        )
        raise RuntimeError(f"backend 'cuda' needs the extension's CUDA kernels: {reason}")


# The op families with GPU kernels, by backend.
CUDA_FAMILIES = ("plastic_rnn", "trace_update", "lifetime")
TRITON_FAMILIES = ("plastic_rnn", "plastic_step", "plastic_linear", "plastic_lstm")


def gpu_backends_for(family: str, device: torch.device) -> tuple[str, ...]:
    """The GPU backends that can run ``family`` on ``device`` now."""
    found = []
    if family in CUDA_FAMILIES and device.type == "cuda" and cuda_kernels_available():
        found.append("cuda")
    if family in TRITON_FAMILIES and triton_available() and device.type == "cuda":
        found.append("triton")
    return tuple(found)


def resolve(
    backend: str | None, device: torch.device, *, family: str | None = None, gpu_choice=None
) -> str:
    """The backend an op on ``device`` runs, given the caller's ``backend`` argument.

    ``family``: the op family, for the backends only some families have (CUDA_FAMILIES,
    TRITON_FAMILIES); on CUDA tensors a family without GPU kernels falls back to the reference with
    one warning. ``gpu_choice(available)``: picks among the family's available GPU backends (for
    plastic_rnn :func:`plastic_rnn_gpu_backend`); default: the first.
    """
    if backend is None:
        backend = _local.default
    if backend is not None:
        _check_name(backend)
        if backend == "cpu":
            if device.type != "cpu":
                raise ValueError(f"backend 'cpu' needs CPU tensors, got tensors on {device}")
            if not _extension.available():
                raise RuntimeError(
                    f"backend 'cpu' needs the compiled extension: {_extension.load_error()}"
                )
        elif backend == "cuda":
            if family not in CUDA_FAMILIES:
                have, what = " and ".join(CUDA_FAMILIES), family or "this op"
                raise ValueError(f"backend 'cuda' exists only for {have} so far, not for {what}")
            _check_cuda(device)
        elif backend == "triton":
            _check_triton(device)
        return backend
    # device == _CPU first: reading device.type builds a string (0.4 us a call).
    if device == _CPU or device.type == "cpu":
        if _extension.available():
            return "cpu"
        _extension.warn_missing_once()
        return "reference"
    if device.type == "cuda" and family is not None:
        available = gpu_backends_for(family, device)
        if available:
            return gpu_choice(available) if gpu_choice is not None else available[0]
    elif device.type == "cuda" and triton_available():
        return "triton"
    global _warned_no_gpu_backend
    if not _warned_no_gpu_backend:
        _warned_no_gpu_backend = True
        what = f"{family} " if family else ""
        warnings.warn(
            f"hebbkern has no fused {what}kernel for {device.type} tensors yet; "
            "using the eager reference",
            RuntimeWarning,
            stacklevel=3,
        )
    return "reference"


# ---- the measured choice between the GPU backends of plastic_rnn

GPU_BACKENDS = ("cuda", "triton")


def measured_choice(N: int, dtype: torch.dtype, table: dict | None = None) -> str | None:
    """The backend the table measured fastest for the nearest N (log scale) of this dtype (else
    of float32), or None without a measured entry."""
    table = _dispatch_table.PLASTIC_RNN if table is None else table
    name = str(dtype).removeprefix("torch.")
    for want in (name, "float32"):
        sizes = [n for (dt, n) in table if dt == want]
        if sizes:
            nearest = min(sizes, key=lambda n: (abs(math.log2(n) - math.log2(max(N, 1))), n))
            return table[(want, nearest)]["fastest"]
    return None


def plastic_rnn_gpu_backend(N: int, dtype: torch.dtype, available: tuple[str, ...]) -> str:
    """The GPU backend for a ``plastic_rnn`` call of width N among the ``available`` ones: the
    measured choice when it is available, else Triton (else the only one)."""
    if not available:
        raise RuntimeError("no GPU backend available")
    if len(available) == 1:
        return available[0]
    choice = measured_choice(N, dtype)
    if choice in available:
        return choice
    return "triton" if "triton" in available else available[0]
