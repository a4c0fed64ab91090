"""Fixtures shared by the pytest-benchmark files (benchmarks/test_bench_*.py)."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _threads(request):
    """BENCH_THREADS CPU threads (default 2) around a module's benchmarks.

    A module that times a GPU (its ``DEVICE`` is not the CPU) keeps torch's thread count unless
    BENCH_THREADS is set: the host threads only launch kernels there.
    """
    device = getattr(request.module, "DEVICE", torch.device("cpu"))
    previous = torch.get_num_threads()
    if device.type == "cpu" or os.environ.get("BENCH_THREADS"):
        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    yield
    torch.set_num_threads(previous)
