"""Benchmark of ``hebbkern.trace_update`` (one trace update of a custom plastic layer) against the
eager reference and torch.compile of it.

    python -m benchmarks.trace_update [--quick] [--tag run1]

Cases: a per-sample trace [32, 128, 128] with rule ``clip`` and a per-sample per-post modulation
eta [32, 128]; a shared trace [512, 10] (a DHP-sized read-out) with rule ``oja``, batch 256.
"""

from __future__ import annotations

import torch

from benchmarks.step_common import Case, main, op_case, trace_shape

NAME = "trace_update"


def update_case(B: int, M: int, K: int, shared: bool, rule: str) -> Case:
    g = torch.Generator().manual_seed(0)
    base = {
        "trace": 0.3 * torch.randn(*trace_shape(B, M, K, shared), generator=g),
        "pre": torch.randn(B, M, generator=g).tanh(),
        "post": torch.randn(B, K, generator=g).tanh(),
        "eta": 0.05 * torch.randn((() if shared else (B, K)), generator=g),
    }
    clip = 1.0 if rule == "clip" else None
    return op_case("trace_update", f"{rule} {{kind}} trace {{shape}} B={B} f32", base,
                   lambda fn, x: fn(x["trace"], x["pre"], x["post"], rule=rule, eta=x["eta"],
                                    clip=clip))  # fmt: skip


def cases(quick: bool) -> list[Case]:
    if quick:
        return [update_case(4, 8, 8, False, "clip"), update_case(4, 8, 3, True, "oja")]
    return [update_case(32, 128, 128, False, "clip"), update_case(256, 512, 10, True, "oja")]


if __name__ == "__main__":
    main(NAME, cases)
