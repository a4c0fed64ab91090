"""The plastic_rnn benchmark cases as pytest-benchmark tests.

    pytest benchmarks --benchmark-only                          # every provider, 2 sizes, 2 modes
    pytest benchmarks --benchmark-only --benchmark-autosave     # save a baseline (.benchmarks/)
    pytest benchmarks --benchmark-only --benchmark-compare      # compare with the last saved run
    pytest benchmarks --benchmark-only -k "cpu and fwd+bwd"

Device: cuda if available, else cpu (override with BENCH_DEVICE=cpu); CPU threads: 2 (override
with BENCH_THREADS). ``pytest`` and ``pytest tests`` do not collect these (testpaths = tests).
Each test builds its inputs and, for ``compile``, compiles before the timing starts.
"""

from __future__ import annotations

import os

import pytest
import torch

from benchmarks import common
from benchmarks import plastic_rnn as family

DEVICE = torch.device(
    os.environ.get("BENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
)
SIZES = [  # (T, B, N); the second is the issue case
    pytest.param((20, 8, 64), id="T20-B8-N64"),
    pytest.param((50, 32, 128), id="T50-B32-N128"),
]


@pytest.mark.parametrize("provider", family.all_providers())
@pytest.mark.parametrize("mode", family.MODES)
@pytest.mark.parametrize("size", SIZES)
def test_plastic_rnn(benchmark, size, mode, provider):
    T, B, N = size
    case = family.Case("neuromod", T, B, N, torch.float32, DEVICE)
    reason = family.provider_unavailable(provider, DEVICE, case.dtype)
    if reason:
        pytest.skip(f"{provider} on {DEVICE}: {reason}")
    bench = family.Bench(case, provider, mode)
    benchmark.group = f"plastic_rnn {case.label()} {mode}"
    benchmark.extra_info.update(provider=provider, mode=mode, device=str(DEVICE))
    benchmark.extra_info["compile_or_first_call_s"] = common.time_call(bench.run, DEVICE)
    if mode == "fwd+bwd":
        benchmark.extra_info["saved_bytes"] = common.saved_bytes(bench.forward)

    def run():
        bench.run()
        common.sync(DEVICE)

    run()
    benchmark(run)
