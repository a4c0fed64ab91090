"""The FOP benchmark cases as pytest-benchmark tests (see benchmarks/fop.py).

    pytest benchmarks/test_bench_fop.py --benchmark-only
    pytest benchmarks/test_bench_fop.py --benchmark-only -k "step and cpu"

One optimiser step of a ResNet-18-sized model (width 32 by default, BENCH_FOP_WIDTH=64 for the
full 11.7M parameters) per provider, and one training iteration (batch 4, 64x64 images) with
``torch.optim.SGD`` and FOP-SGD. Device: cuda if available, else cpu (BENCH_DEVICE); CPU threads: 2
(BENCH_THREADS).
"""

from __future__ import annotations

import os

import pytest
import torch

from benchmarks import fop as family

DEVICE = torch.device(
    os.environ.get("BENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
)
WIDTH = int(os.environ.get("BENCH_FOP_WIDTH", "32"))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = family.resnet18(width=WIDTH).to(DEVICE)
    family.set_grads(m)
    return m


@pytest.mark.parametrize(
    "provider", ["torch", "torch-fused", "reference", "foreach", "cpu", "triton"]
)
@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_fop_step(benchmark, model, base, provider):
    why = family.provider_available(provider, DEVICE)
    if why:
        pytest.skip(f"{provider} on {DEVICE}: {why}")
    opt = family.make_optimizer(provider, model.parameters(), base)
    opt.step()
    benchmark.group = f"fop step {base} resnet18 width {WIDTH}"
    benchmark.extra_info.update(provider=provider, base=base, device=str(DEVICE))
    benchmark(opt.step)


@pytest.mark.parametrize("provider", ["torch", "torch-fused", "cpu", "triton"])
def test_fop_iteration(benchmark, model, provider):
    why = family.provider_available(provider, DEVICE)
    if why:
        pytest.skip(f"{provider} on {DEVICE}: {why}")
    opt = family.make_optimizer(provider, model.parameters(), "sgd")
    x = torch.randn(4, 3, 64, 64, device=DEVICE)
    y = torch.randint(0, 1000, (4,), device=DEVICE)
    loss_fn = torch.nn.CrossEntropyLoss()

    def iteration():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    iteration()
    benchmark.group = f"fop iteration sgd resnet18 width {WIDTH}"
    benchmark.extra_info.update(provider=provider, device=str(DEVICE))
    benchmark(iteration)
