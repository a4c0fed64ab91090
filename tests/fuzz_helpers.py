"""Shared pieces of the fuzz suite: hypothesis profiles, tensor layouts, the differential check.

Profiles: ``ci`` (the default; each family's test draws ``FUZZ_EXAMPLES`` = 1,000 examples, small
shapes, derandomised so a CI failure reproduces) and ``long`` (``HEBBKERN_FUZZ=long``: 20,000
random examples per family, for release checks).
"""

from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

settings.register_profile(
    "ci",
    # HEBBKERN_FUZZ_EXAMPLES lowers it for a quick local run.
    max_examples=int(os.environ.get("HEBBKERN_FUZZ_EXAMPLES", "1000")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=20000,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
PROFILE = "long" if os.environ.get("HEBBKERN_FUZZ") == "long" else "ci"
fuzz_settings = settings(settings.get_profile(PROFILE))

LAYOUTS = ("contiguous", "transposed", "sliced")
layouts = st.sampled_from(LAYOUTS)


class Maker:
    """Builds the same leaf tensors on every call (one seed), each passed to the op in a chosen
    layout: contiguous, transposed (a ``.mT`` view of a transposed leaf) or sliced (every other
    column of a wider leaf). Gradients are taken with respect to the leaves."""

    def __init__(self, seed: int, dtype=torch.float64):
        self.seed, self.dtype = seed, dtype

    def start(self):
        self.g = torch.Generator().manual_seed(self.seed)
        self.leaves: list[torch.Tensor] = []
        return self

    def randn(self, shape, scale=1.0, layout="contiguous", grad=True, offset=0.0):
        t = offset + scale * torch.randn(shape, generator=self.g, dtype=torch.float64)
        t = t.to(self.dtype)
        if layout == "transposed" and t.dim() >= 2:
            leaf = t.mT.contiguous().requires_grad_(grad)
            out = leaf.mT
        elif layout == "sliced" and t.dim() >= 1:
            wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
            wide[..., ::2] = t
            leaf = wide.requires_grad_(grad)
            out = leaf[..., ::2]
        else:
            leaf = t.clone().requires_grad_(grad)
            out = leaf
        if grad:
            self.leaves.append(leaf)
        return out

    def rand(self, shape):
        return torch.rand(shape, generator=self.g, dtype=torch.float64)


def _flat(outs):
    return [o for o in torch.utils._pytree.tree_leaves(outs) if isinstance(o, torch.Tensor)]


def run_with_grads(fn, maker: Maker):
    """``fn(maker)`` -> outputs; returns (outputs, gradients of a fixed random projection of the
    outputs with respect to every leaf)."""
    maker.start()
    outs = _flat(fn(maker))
    g = torch.Generator().manual_seed(12345)
    cots = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype) for o in outs]
    diff = [(o, c) for o, c in zip(outs, cots, strict=True) if o.requires_grad]
    grads = [torch.zeros_like(leaf) for leaf in maker.leaves]
    if diff and maker.leaves:
        loss = sum((o * c).sum() for o, c in diff)
        got = torch.autograd.grad(loss, maker.leaves, allow_unused=True)
        grads = [torch.zeros_like(x) if d is None else d for x, d in zip(maker.leaves, got,
                                                                         strict=True)]  # fmt: skip
    return [o.detach() for o in outs], grads


def assert_same(fused, ref, rtol=1e-9, atol=1e-10, what=""):
    (fo, fg), (ro, rg) = fused, ref
    assert len(fo) == len(ro), f"{what}: {len(fo)} outputs against {len(ro)}"
    for i, (a, b) in enumerate(zip(fo, ro, strict=True)):
        assert a.shape == b.shape, f"{what}: output {i} shape {list(a.shape)} != {list(b.shape)}"
        torch.testing.assert_close(
            a, b, rtol=rtol, atol=atol, msg=lambda m, i=i: f"{what} out {i}: {m}"
        )
    for i, (a, b) in enumerate(zip(fg, rg, strict=True)):
        torch.testing.assert_close(
            a, b, rtol=rtol, atol=atol, msg=lambda m, i=i: f"{what} grad {i}: {m}"
        )
