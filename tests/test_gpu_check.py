"""benchmarks/gpu_check.sh on the CPU (GPU_CHECK_DEVICE=cpu): the stages run in order under the
budget, and OUTDIR holds exactly the summary and one archive of everything (a lent GPU machine
hands back at most 8 files)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_on_cpu_writes_a_summary_and_one_archive(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HEBBKERN_TEST_INSTALLED"}
    env.update(
        PYTHON=sys.executable,
        GPU_CHECK_DEVICE="cpu",
        GPU_CHECK_QUICK="1",
        GPU_CHECK_BUDGET_S="400",
        GPU_CHECK_STAGES="nvidia-smi env tests cluster memcheck bench population families agent lifetime "
        "dispatch",
        GPU_CHECK_TESTS="tests/test_torch_version.py",
        GPU_CHECK_CLUSTER_TESTS="tests/test_torch_version.py",
        GPU_CHECK_PROVIDERS="eager",
    )
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=480)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.tar.gz", "summary.txt"]
    summary = (out / "summary.txt").read_text()
    lines = {line.split()[0]: line for line in summary.splitlines() if line.strip()}
    for name in (
        "env",
        "tests",
        "cluster",
        "bench",
        "bench-sweep",
        "population",
        "families",
        "agent",
        "lifetime",
        "dispatch",
    ):
        assert "exit 0" in lines[name], lines.get(name, summary)
    assert "skipped: device cpu" in lines["nvidia-smi"]
    assert "3 passed" in summary  # the closing line of the tests stage
    with tarfile.open(out / "gpu_check.tar.gz") as tar:
        names = {Path(n).name for n in tar.getnames()}
    assert {"summary.txt", "tests.xml", "env.txt", "families_cpu.json",
            "plastic_rnn_cpu_quick.json", "_dispatch_table.py", "lifetime_cpu.json",
            "plastic_step_agent_cpu_quick.json", "population_cpu_quick.json",
            "cluster_tests_1.xml", "cluster_tests_global.xml"} <= names  # fmt: skip
