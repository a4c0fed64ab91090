"""The plastic_lstm and DHPSoftmax benchmark cases as pytest-benchmark tests.

    pytest benchmarks/test_bench_plastic_lstm.py --benchmark-only
    pytest benchmarks/test_bench_plastic_lstm.py --benchmark-only --benchmark-autosave
    pytest benchmarks/test_bench_plastic_lstm.py --benchmark-only --benchmark-compare
    pytest benchmarks/test_bench_plastic_lstm.py --benchmark-only -k "cpu and fwd+bwd"

CPU only (the op has no GPU backend yet); threads: 2 (override with BENCH_THREADS). Each test
builds its inputs and, for ``compile``, compiles before the timing starts.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks import common
from benchmarks import plastic_lstm as family

SIZES = [  # (T, B, N); the second is the issue case
    pytest.param((10, 4, 64), id="T10-B4-N64"),
    pytest.param((35, 20, 256), id="T35-B20-N256"),
]
DHP_SIZES = [pytest.param(case, id="B{}-M{}-K{}".format(*case)) for case in family.DHP_CASES]


@pytest.mark.parametrize("provider", family.LSTM_PROVIDERS)
@pytest.mark.parametrize("mode", family.MODES)
@pytest.mark.parametrize("size", SIZES)
def test_plastic_lstm(benchmark, size, mode, provider):
    T, B, N = size
    bench = family.LstmBench(T, B, N, provider, mode)
    benchmark.group = f"PlasticLSTM neuromod T={T} B={B} N={N} float32 {mode}"
    benchmark.extra_info.update(provider=provider, mode=mode, device="cpu")
    benchmark.extra_info["compile_or_first_call_s"] = common.time_call(
        bench.run, torch.device("cpu")
    )
    if mode == "fwd+bwd":
        benchmark.extra_info["saved_bytes"] = common.saved_bytes(bench.forward)
    benchmark(bench.run)


@pytest.mark.parametrize("provider", family.DHP_PROVIDERS)
@pytest.mark.parametrize("size", DHP_SIZES)
def test_dhp_softmax(benchmark, size, provider):
    bench = family.DhpBench(*size, provider)
    benchmark.group = "DHPSoftmax B={} M={} K={} float32 fwd+bwd".format(*size)
    benchmark.extra_info.update(provider=provider, device="cpu")
    bench.run()
    benchmark(bench.run)
