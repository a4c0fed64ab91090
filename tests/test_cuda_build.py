"""The CUDA kernels (plastic_rnn and trace_update) compile for sm_80 and sm_90 on a machine without a GPU, with no register
spills (DESIGN.md, "Checking GPU code ...", item 5). The report of registers, spills and shared
memory per kernel is written to build/plastic_rnn_cuda_resources.txt for the CI log."""

from __future__ import annotations

import pytest
from cuda_checks import (
    ARCHS,
    ROOT,
    RULE_NAMES,
    compile_report,
    find_nvcc,
    format_report,
    largest_n_on_chip,
)

needs_nvcc = pytest.mark.skipif(find_nvcc() is None, reason="nvcc not found")


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS)
def test_kernels_compile_without_spills(arch, tmp_path):
    _, kernels = compile_report(arch, tmp_path)
    found = {(k.family, k.kernel, k.rule, k.dtype) for k in kernels}
    rules = {"plastic_rnn": RULE_NAMES, "trace_update": ("hebb", "oja", "clip")}
    # plastic_rnn's cluster kernels (several blocks per sample) compile for sm_80 too, their blocks
    # synchronised through global memory there (simt.h CudaGridCluster).
    kinds = {"plastic_rnn": ("fwd", "bwd", "fwd_cluster", "bwd_cluster"),
             "trace_update": ("fwd", "bwd")}  # fmt: skip
    want = {(fam, kern, r, dt) for fam, rs in rules.items() for kern in kinds[fam]
            for r in rs for dt in ("float32", "float64")}  # fmt: skip
    assert found == want, f"kernels missing from the ptxas report: {sorted(want - found)}"
    report = format_report(kernels)
    out = ROOT / "build"
    out.mkdir(exist_ok=True)
    (out / f"plastic_rnn_cuda_resources_{arch}.txt").write_text(report)
    print(report)
    spilling = [k for k in kernels if k.spill_stores or k.spill_loads]
    assert not spilling, "kernels spill registers:\n" + format_report(spilling)
    # 512 threads per block (__launch_bounds__(512, 1)) leave at most 128 registers a thread; the
    # cluster backward runs 256 threads (kClusterBwdThreads), at most 255.
    for k in kernels:
        if k.family == "plastic_rnn":
            assert k.registers <= (255 if k.kernel == "bwd_cluster" else 128), k


# The sizes whose float32 trace (forward) or trace adjoint (backward) stays in shared memory, as
# the README states them: (arch, eligibility trace, backward) -> largest N.
ON_CHIP = {
    ("sm_90", False, False): 238, ("sm_90", False, True): 214,
    ("sm_90", True, False): 168, ("sm_90", True, True): 156,
    ("sm_80", False, False): 201, ("sm_80", False, True): 178,
    ("sm_80", True, False): 142, ("sm_80", True, True): 131,
}  # fmt: skip


@pytest.mark.parametrize(
    "key", list(ON_CHIP), ids=lambda k: f"{k[0]}-elig{int(k[1])}-bwd{int(k[2])}"
)
def test_shared_memory_limits_in_the_readme(key):
    arch, elig, backward = key
    assert largest_n_on_chip(elig, backward, arch) == ON_CHIP[key]
