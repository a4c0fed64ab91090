"""The lifetime benchmark cases as pytest-benchmark tests (small sizes: a few trials).

    pytest benchmarks/test_bench_lifetime.py --benchmark-only
    pytest benchmarks/test_bench_lifetime.py --benchmark-only --benchmark-compare

CPU only; threads: 2 (override with BENCH_THREADS). ``python -m benchmarks lifetime`` is the full
comparison (population 500, the whole lifetime, generations per hour).
"""

from __future__ import annotations

import pytest
import torch

import hebbkern
from benchmarks.lifetime import population
from hebbkern.lifetime_config import LifetimeConfig

SIZES = [  # (population, N, trials)
    pytest.param((32, 70, 2), id="B32-N70-trials2"),
    pytest.param((500, 70, 1), id="B500-N70-trials1"),
]
CFG = LifetimeConfig(plastic_after_trial=0, quiet_trials=0, loss_trials=1)


@pytest.mark.parametrize("provider", ["reference", "cpu"])
@pytest.mark.parametrize("size", SIZES)
def test_lifetime(benchmark, size, provider):
    if provider == "cpu" and not hebbkern.extension_available():
        pytest.skip("extension not built")
    B, N, trials = size
    w, pi, stimuli, targets, keys = population(B, N, trials, torch.float32)
    benchmark.group = f"lifetime B={B} N={N} trials={trials} float32"
    benchmark.extra_info.update(provider=provider, device="cpu")
    benchmark.pedantic(
        lambda: hebbkern.lifetime(
            w, pi, stimuli, targets, seed=1, noise_key=keys, config=CFG, backend=provider
        ),
        rounds=1 if provider == "reference" else 3,
        iterations=1,
    )
