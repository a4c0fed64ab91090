"""examples/evolve_dms.py --smoke: both evolution runs, the learning measurement and every output
file, end to end at a tiny size; a second call resumes from the checkpoints without evolving."""

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

import hebbkern

pytest.importorskip("matplotlib")
pytestmark = pytest.mark.skipif(not hebbkern.extension_available(), reason="extension not built")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "evolve_dms.py"


@pytest.fixture(scope="module")
def ex():
    spec = importlib.util.spec_from_file_location("evolve_dms_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_smoke_run_writes_results_and_resumes(ex, tmp_path):
    argv = ["--smoke", "--threads", "1", "--checkpoint-dir", str(tmp_path / "ckpt")]
    assert ex.main([*argv, "--out", str(tmp_path / "a")]) == 0
    for name in ("a.csv", "a.png", "a_learning.csv", "a_learning.md", "a_learning.png"):
        assert (tmp_path / name).stat().st_size > 100, name
    with open(tmp_path / "a_learning.csv") as f:
        rows = list(csv.DictReader(f))
    # Test generations 0, 2 and the end (4) for both runs, and the plastic run with Pi off.
    got = {(r["network"], int(r["generation"])) for r in rows}
    assert got == {
        *(("plastic", g) for g in (0, 2, 4)),
        *(("Pi = 0 control", g) for g in (0, 2, 4)),
        ("plastic, Pi set to 0 at test", 4),
    }
    for r in rows:
        assert 0 <= float(r["pair_late_mean"]) <= 100
        assert abs(float(r["dms_late_mean"]) + float(r["dnms_late_mean"]) - 2 * float(
            r["pair_late_mean"]
        )) < 1e-2  # fmt: skip
    table = (tmp_path / "a_learning.md").read_text()
    assert "| Pi = 0 control | 4 |" in table
    # Resumed from the finished checkpoints: no generation runs (the checkpoints are not written
    # again), the same history and table come out.
    ckpts = sorted((tmp_path / "ckpt").glob("*.pt"))
    assert len(ckpts) == 4
    stamps = [p.stat().st_mtime_ns for p in ckpts]
    assert ex.main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert [p.stat().st_mtime_ns for p in ckpts] == stamps
    assert (tmp_path / "b.csv").read_text() == (tmp_path / "a.csv").read_text()
    assert (tmp_path / "b_learning.md").read_text() == table
