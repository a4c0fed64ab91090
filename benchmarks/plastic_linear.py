"""Benchmark of ``hebbkern.plastic_linear`` (``z = x (w + alpha * H)``) against the eager
reference (which builds ``w + alpha * H`` per sample, as the papers' code does) and torch.compile
of it.

    python -m benchmarks.plastic_linear [--quick] [--tag run1]

Cases: a per-sample trace [32, 128, 128]; a shared trace [512, 10] (a DHP Softmax head), batch 256.
"""

from __future__ import annotations

import torch

from benchmarks.step_common import Case, main, op_case, trace_shape

NAME = "plastic_linear"


def linear_case(B: int, M: int, K: int, shared: bool) -> Case:
    g = torch.Generator().manual_seed(0)
    base = {
        "x": torch.randn(B, M, generator=g),
        "w": torch.randn(M, K, generator=g) / M**0.5,
        "alpha": 0.01 * torch.rand(M, K, generator=g),
        "hebb": 0.3 * torch.randn(*trace_shape(B, M, K, shared), generator=g),
    }
    return op_case("plastic_linear", f"{{kind}} hebb {{shape}} B={B} f32", base,
                   lambda fn, x: fn(x["x"], x["w"], x["alpha"], x["hebb"]))  # fmt: skip


def cases(quick: bool) -> list[Case]:
    if quick:
        return [linear_case(4, 8, 8, False), linear_case(4, 8, 3, True)]
    return [linear_case(32, 128, 128, False), linear_case(256, 512, 10, True)]


if __name__ == "__main__":
    main(NAME, cases)
