"""The hebbian benchmark cases as pytest-benchmark tests.

    pytest benchmarks/test_bench_hebbian.py --benchmark-only
    pytest benchmarks/test_bench_hebbian.py --benchmark-only -k "issue and cpu"

CPU only (no GPU backend of the family yet); threads: 2 (override with BENCH_THREADS). Each test
builds its inputs and, for ``compile``, compiles before the timing starts.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks import common
from benchmarks import hebbian as family

CASES = [
    pytest.param(family.ISSUE_CASE, id="issue-conv96to128-3x3-32x32-B64"),
    pytest.param(family.CASES[1], id="issue-dense-y"),
    pytest.param(family.CASES[3], id="linear784to512-B256"),
]


@pytest.mark.parametrize("provider", family.PROVIDERS)
@pytest.mark.parametrize("case", CASES)
def test_hebbian(benchmark, case, provider):
    fn = family.provider_fn(case, provider)
    benchmark.group = f"hebbian {case.name}"
    benchmark.extra_info.update(provider=provider, device="cpu")
    benchmark.extra_info["compile_or_first_call_s"] = common.time_call(fn, torch.device("cpu"))
    benchmark(fn)
