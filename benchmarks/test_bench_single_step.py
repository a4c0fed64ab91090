"""The plastic_step, trace_update and plastic_linear benchmark cases as pytest-benchmark tests.

    pytest benchmarks/test_bench_single_step.py --benchmark-only
    pytest benchmarks/test_bench_single_step.py --benchmark-only -k "plastic_step and cpu"

CPU, 2 threads (override with BENCH_THREADS). Each test builds its inputs and, for ``compile``,
compiles before the timing starts.
"""

from __future__ import annotations

import pytest

from benchmarks import plastic_linear, plastic_step, trace_update
from benchmarks.step_common import MODES, PROVIDERS, runner

FAMILIES = {"plastic_step": plastic_step, "trace_update": trace_update,
            "plastic_linear": plastic_linear}  # fmt: skip
CASES = [
    pytest.param(name, i, id=f"{name}-{i}")
    for name, mod in FAMILIES.items()
    for i in range(len(mod.cases(False)))
]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("family, index", CASES)
def test_single_step(benchmark, family, index, mode, provider):
    case = FAMILIES[family].cases(False)[index]
    forward, leaves = case.build(provider, mode == "fwd+bwd")
    run = runner(forward, leaves, mode == "fwd+bwd")
    run()
    benchmark.group = f"{family} {case.label} {mode}"
    benchmark.extra_info.update(provider=provider, mode=mode)
    benchmark(run)
