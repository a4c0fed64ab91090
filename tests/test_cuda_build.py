"""The CUDA kernels (plastic_rnn and trace_update) compile for sm_80 and sm_90 on a machine without a GPU, with no register
spills (DESIGN.md, "Checking GPU code ...", item 5). The report of registers, spills and shared
memory per kernel is written to build/plastic_rnn_cuda_resources.txt for the CI log."""

from __future__ import annotations

import pytest
from cuda_checks import ARCHS, ROOT, RULE_NAMES, compile_report, find_nvcc, format_report

pytestmark = pytest.mark.skipif(find_nvcc() is None, reason="nvcc not found")


@pytest.mark.parametrize("arch", ARCHS)
def test_kernels_compile_without_spills(arch, tmp_path):
    _, kernels = compile_report(arch, tmp_path)
    found = {(k.family, k.kernel, k.rule, k.dtype) for k in kernels}
    rules = {"plastic_rnn": RULE_NAMES, "trace_update": ("hebb", "oja", "clip")}
    want = {(fam, kern, r, dt) for fam, rs in rules.items() for kern in ("fwd", "bwd")
            for r in rs for dt in ("float32", "float64")}  # fmt: skip
    assert found == want, f"kernels missing from the ptxas report: {sorted(want - found)}"
    report = format_report(kernels)
    out = ROOT / "build"
    out.mkdir(exist_ok=True)
    (out / f"plastic_rnn_cuda_resources_{arch}.txt").write_text(report)
    print(report)
    spilling = [k for k in kernels if k.spill_stores or k.spill_loads]
    assert not spilling, "kernels spill registers:\n" + format_report(spilling)
    # 512 threads per block (__launch_bounds__(512, 1)) leave at most 128 registers a thread.
    assert max(k.registers for k in kernels if k.family == "plastic_rnn") <= 128
