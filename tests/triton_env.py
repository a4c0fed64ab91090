"""Where the Triton tests can run (test_plastic_rnn_triton.py, test_fop_triton.py): triton
installed, a CUDA GPU, the interpreter (TRITON_INTERPRET set before triton's first import)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

TESTS_DIR = Path(__file__).resolve().parent
HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_CUDA = HAS_TRITON and torch.cuda.is_available()
INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU and triton")
# Ahead-of-time compilation (the *_triton_aot.py tests): triton installed, kernels compiled rather
# than interpreted.
AOT_MARKS = [
    pytest.mark.skipif(not HAS_TRITON, reason="needs triton"),
    pytest.mark.skipif(
        INTERPRETING, reason="TRITON_INTERPRET is set: kernels are interpreted, not compiled"
    ),
]
