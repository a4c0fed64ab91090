"""Benchmark of ``hebbkern.plastic_step`` chained over T steps (an agent stepped once per
environment step), against the eager reference step and torch.compile of it.

    python -m benchmarks.plastic_step [--quick] [--tag run1]

The issue case: rule neuromod with fan-out, T = 50, B = 32, N = 128, float32, 2 threads; the
backward runs through the whole chain (full BPTT over the 50 steps).
"""

from __future__ import annotations

import math

import torch

from benchmarks.step_common import Case, leaves, main, provider_fn

NAME = "plastic_step"


def chain_case(T: int, B: int, N: int, per_sample: bool = False) -> Case:
    g = torch.Generator().manual_seed(0)
    b = 1.0 / math.sqrt(N)
    wshape = (B, N, N) if per_sample else (N, N)
    base = {
        "u": torch.randn(T, B, N, generator=g),
        "w": torch.rand(wshape, generator=g) * 1e-3,
        "alpha": torch.rand(wshape, generator=g) * 1e-3,
        "mod_w": (torch.rand(N, generator=g) * 2 - 1) * b,
        "mod_b": (torch.rand((), generator=g) * 2 - 1) * b,
        "fanout_w": torch.rand(N, generator=g) * 2 - 1,
        "fanout_b": torch.rand(N, generator=g) * 2 - 1,
    }

    def build(provider, grad):
        x = leaves(base, grad)
        step = provider_fn("plastic_step", provider)

        def forward():
            h, hebb = x["u"].new_zeros(B, N), x["u"].new_zeros(B, N, N)
            hs = []
            for t in range(T):
                h, hebb, _ = step(
                    x["u"][t], h, hebb, x["w"], x["alpha"], rule="neuromod", mod_w=x["mod_w"],
                    mod_b=x["mod_b"], fanout_w=x["fanout_w"], fanout_b=x["fanout_b"], clip=1.0,
                )  # fmt: skip
                hs.append(h)
            return torch.stack(hs), hebb

        return forward, list(x.values())

    kind = "per-sample w,alpha " if per_sample else ""
    return Case(f"neuromod {kind}T={T} B={B} N={N} f32", build)


def cases(quick: bool) -> list[Case]:
    if quick:
        return [chain_case(4, 4, 16)]
    return [chain_case(50, 32, 128), chain_case(50, 32, 128, per_sample=True)]


if __name__ == "__main__":
    main(NAME, cases)
