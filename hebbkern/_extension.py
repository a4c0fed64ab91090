"""Loads the compiled extension ``hebbkern._C`` (it registers the ``torch.ops.hebbkern`` ops)."""

from __future__ import annotations

import warnings

_error: Exception | None = None
try:
    from . import _C
except ImportError as e:  # a source checkout without a build, or a torch ABI mismatch
    _error = e

_warned = False
# Read once here: a pybind call cannot run inside code that torch.compile traces.
_with_cuda: bool = _error is None and bool(_C.with_cuda())


def available() -> bool:
    """True when the compiled kernels are loaded."""
    return _error is None


def with_cuda() -> bool:
    """True when the loaded extension holds CUDA kernels."""
    return _with_cuda


def load_error() -> Exception | None:
    return _error


def warn_missing_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            f"hebbkern's compiled extension is not available ({_error}); falling back to the eager "
            "reference, which is much slower. Build it against the installed torch with "
            "`pip install --no-build-isolation .` (or `make dev`).",
            RuntimeWarning,
            stacklevel=3,
        )
