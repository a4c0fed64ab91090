"""The plastic_rnn benchmark runner's providers and ratios, on the CPU (the CUDA-graph peers
``graph`` and ``compile-ro`` run only on CUDA: here, their listing, their skipping and the ratios
against them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import plastic_rnn as family  # noqa: E402
from benchmarks import run  # noqa: E402


def test_help_lists_the_cuda_graph_peers():
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = " ".join(proc.stdout.split())
    for name in ("graph", "compile-ro", "eager", "compile"):
        assert name in family.all_providers()
        assert name in text


@pytest.mark.parametrize("provider", ["graph", "compile-ro"])
def test_cuda_graph_peers_are_skipped_on_cpu(provider):
    assert family.provider_unavailable(provider, torch.device("cpu"), torch.float32) == (
        "CUDA only (CUDA graphs)"
    )


def test_ratios_against_every_peer():
    def row(provider, ms):
        return {"provider": provider, "status": "ok", "median_ms": ms, "dtype": "float32"}

    group = [row("eager", 64.0), row("compile", 37.3), row("compile-ro", 32.0),
             row("graph", 5.36), row("cuda", 2.77), {"provider": "triton", "status": "skipped", "dtype": "float32"}]  # fmt: skip
    run.add_ratios(group)
    cuda = group[4]
    assert cuda["speedup_vs_eager"] == pytest.approx(64.0 / 2.77)
    assert cuda["speedup_vs_compile"] == pytest.approx(37.3 / 2.77)
    assert cuda["speedup_vs_compile-ro"] == pytest.approx(32.0 / 2.77)
    assert cuda["speedup_vs_graph"] == pytest.approx(5.36 / 2.77)
    names = [c[1] for c in run.table_columns(group, gpu=True)]
    assert {"speedup_vs_eager", "speedup_vs_compile", "speedup_vs_graph"} <= set(names)


def test_quick_cpu_run_records_the_peers_as_skipped(tmp_path):
    code = run.main(["--quick", "--device", "cpu", "--providers", "eager", "graph", "compile-ro",
                     "--modes", "fwd", "--min-time", "0.01", "--no-memory", "--no-plot",
                     "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    rows = json.loads((tmp_path / "plastic_rnn_cpu_quick.json").read_text())["rows"]
    status = {r["provider"]: r["status"] for r in rows}
    assert status["eager"] == "ok"
    assert status["graph"].startswith("skipped: CUDA only")
    assert status["compile-ro"].startswith("skipped: CUDA only")
