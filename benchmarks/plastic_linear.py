"""Benchmark of ``hebbkern.plastic_linear`` (``z = x (w + alpha * H)``) against the eager
reference (which builds ``w + alpha * H`` per sample, as the papers' code does) and torch.compile
of it.

    python -m benchmarks.plastic_linear [--quick] [--tag run1]

Cases: a per-sample trace [32, 128, 128]; a shared trace [512, 10] (a DHP Softmax head), batch 256.
"""

from __future__ import annotations

import torch

from benchmarks.step_common import Case, leaves, main, provider_fn

NAME = "plastic_linear"


def linear_case(B: int, M: int, K: int, shared: bool) -> Case:
    g = torch.Generator().manual_seed(0)
    base = {
        "x": torch.randn(B, M, generator=g),
        "w": torch.randn(M, K, generator=g) / M**0.5,
        "alpha": 0.01 * torch.rand(M, K, generator=g),
        "hebb": 0.3 * torch.randn(*((M, K) if shared else (B, M, K)), generator=g),
    }

    def build(provider, grad):
        x = leaves(base, grad)
        fn = provider_fn("plastic_linear", provider)

        def forward():
            return (fn(x["x"], x["w"], x["alpha"], x["hebb"]),)

        return forward, list(x.values())

    kind = "shared" if shared else "per-sample"
    shape = [M, K] if shared else [B, M, K]
    return Case(f"{kind} hebb {shape} B={B} f32", build)


def cases(quick: bool) -> list[Case]:
    if quick:
        return [linear_case(4, 8, 8, False), linear_case(4, 8, 3, True)]
    return [linear_case(32, 128, 128, False), linear_case(256, 512, 10, True)]


if __name__ == "__main__":
    main(NAME, cases)
