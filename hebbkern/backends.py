"""Backend selection: which implementation an op runs.

``backend=None`` picks the default for the tensors' device. CPU: the C++ kernel. CUDA: for
``plastic_rnn`` the faster of the CUDA C++ and Triton kernels by a measured table
(:mod:`hebbkern.dispatch`); for ``trace_update`` the CUDA C++ kernels; for the families without
GPU kernels the eager reference, with one warning. An explicit name forces one;
:func:`use_backend` changes the default inside a ``with`` block.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import warnings
from collections.abc import Iterator

import torch

from . import _extension

BACKENDS = ("reference", "cpu", "cuda", "triton")

_local = threading.local()


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Make ``name`` the default backend of hebbkern ops inside the block (None: automatic)."""
    if name is not None:
        _check_name(name)
    previous = getattr(_local, "default", None)
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


def triton_available() -> bool:
    """True when triton can be imported (checked without importing it: see hebbkern/triton)."""
    return importlib.util.find_spec("triton") is not None


def triton_interpreting() -> bool:
    """True under ``TRITON_INTERPRET=1``, where the Triton kernels run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


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
    return _extension.available() and _extension.with_cuda()


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
TRITON_FAMILIES = ("plastic_rnn",)


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
    plastic_rnn the measured table of :mod:`hebbkern.dispatch`); default: the first.
    """
    if backend is None:
        backend = getattr(_local, "default", None)
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
    if device.type == "cpu":
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
