"""benchmarks/agent_loop.py (``python -m benchmarks plastic_step --device ...``) on the CPU: the
rows it writes, and the gradients of every provider against eager's (on a GPU the same check
covers the CUDA-graph providers, whose replays must give the captured loop's gradients)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

# benchmarks/ is not installed with the wheel: import it from the repository (after the installed
# hebbkern, which conftest.py has already imported).
sys.path.append(str(Path(__file__).resolve().parents[1]))

from benchmarks import agent_loop  # noqa: E402


def test_agent_loop_quick_on_cpu(tmp_path):
    rc = agent_loop.main(["--device", "cpu", "--quick", "--min-time", "0.01", "--out",
                          str(tmp_path), "--providers", "eager", "hebbkern", "graph"])  # fmt: skip
    assert rc == 0
    data = json.loads((tmp_path / "plastic_step_agent_cpu_quick.json").read_text())
    rows = {r["provider"]: r for r in data["rows"]}
    assert set(rows) == {"eager", "hebbkern"}  # the graph providers need CUDA
    assert rows["hebbkern"]["backend"] == "cpu"
    for r in rows.values():
        assert r["median_ms"] > 0 and r["grad_rel_err_vs_eager"] < 1e-4
    assert rows["eager"]["speedup_vs_eager"] == 1.0


def test_loop_gradients_are_the_reference_chain():
    """The timed call returns the six leaves' gradients of the loss through all T steps, equal to
    those of the eager reference loop on the same inputs."""
    T, B, N = 4, 3, 8
    grads = agent_loop.make_loop("hebbkern", T, B, N, torch.device("cpu"))()
    ref = agent_loop.make_loop("eager", T, B, N, torch.device("cpu"))()
    assert len(grads) == 6
    for a, b in zip(grads, ref, strict=True):
        assert (a - b).norm() <= 1e-4 * b.norm() + 1e-7
