"""Where the Triton tests can run (test_plastic_rnn_triton.py, test_fop_triton.py): triton
installed, a CUDA GPU, the interpreter (TRITON_INTERPRET set before triton's first import); and the
two checks every Triton family makes on any machine (its interpreter suite in a process of its own,
``import hebbkern`` leaving triton unimported)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS_DIR = Path(__file__).resolve().parent
HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_CUDA = HAS_TRITON and torch.cuda.is_available()
INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU and triton")
# The interpreter suites (interpret_*.py), run by their test_*.py in a process of their own.
needs_interpreter = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1",
    reason="needs TRITON_INTERPRET=1 set before triton is imported",
)
# The GPU tests' (rule, alpha kind, fan-out, clamp mask) cases for plastic_rnn; plastic_step's add
# its own alpha kind (per sample) in place of two of them.
CUDA_CASES = [
    ("hebb", "per_connection", False, True),
    ("oja", "per_neuron", False, False),
    ("clip", "scalar", False, True),
    ("neuromod", "per_connection", True, True),
    ("neuromod", "scalar", False, False),
    ("retro", "per_neuron", True, True),
    ("retro", "per_connection", False, False),
]

# Ahead-of-time compilation (the *_triton_aot.py tests): triton installed, kernels compiled rather
# than interpreted.
AOT_MARKS = [
    pytest.mark.skipif(not HAS_TRITON, reason="needs triton"),
    pytest.mark.skipif(
        INTERPRETING, reason="TRITON_INTERPRET is set: kernels are interpreted, not compiled"
    ),
]


def run_interpreter_suite(script: str, timeout: float = 900, allow_skips: bool = False) -> str:
    """``script`` (a file in tests/) in its own pytest process with ``TRITON_INTERPRET=1`` set
    before triton is imported; asserts that it passed (and skipped nothing unless
    ``allow_skips``) and returns pytest's summary line."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", script, "-q", "-p", "no:cacheprovider", "-x"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=TESTS_DIR,
                          timeout=timeout)  # fmt: skip
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    print("interpreter suite:", summary)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in summary, summary
    assert allow_skips or "skipped" not in summary, summary
    return summary


def assert_import_leaves_triton_alone(calls: str) -> None:
    """``import hebbkern`` and ``calls`` (Python statements using ``torch`` and ``hebbkern``) in a
    fresh interpreter do not import triton: TRITON_INTERPRET must be set before triton's first
    import, so hebbkern must not import it."""
    code = f"import sys, torch, hebbkern; {calls}; "
    code += "assert 'triton' not in sys.modules, 'import hebbkern imported triton'"
    # cwd: `python -c` puts the working folder first on sys.path; keep the installed package.
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=TESTS_DIR, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
