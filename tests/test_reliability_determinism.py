"""Every op family gives bitwise the same outputs and gradients at 1 and 2 threads (the README's
determinism claim; plastic_rnn has its own test in test_plastic_rnn.py, plastic_lstm's issue-21
case runs in separate processes in test_reliability_crashes.py)."""

from __future__ import annotations

import pytest
import torch

import hebbkern
from hebbkern.optim import FOP

pytestmark = pytest.mark.skipif(
    not hebbkern.extension_available(), reason="the compiled extension is not built"
)


def _r(g, *shape, scale=0.3):
    return (scale * torch.randn(shape, generator=g)).requires_grad_()


def _run(name):
    g = torch.Generator().manual_seed(0)
    if name == "fop":
        params = [
            torch.nn.Parameter(_r(g, 33, 20).detach()),
            torch.nn.Parameter(_r(g, 8, 4, 3, 3).detach()),
        ]
        opt = FOP(params, lr=0.1, hyper_lr=0.1, base="adam", backend="cpu")
        for _ in range(3):
            for p in params:
                p.grad = _r(g, *p.shape).detach()
            opt.step()
        return [p.detach() for p in params]
    if name == "plastic_step":
        B, N = 13, 24
        leaves = [
            _r(g, B, N, scale=1.0),
            _r(g, B, N),
            _r(g, B, N, N),
            _r(g, N, N),
            _r(g, N, N),
            _r(g, N),
        ]
        out = hebbkern.plastic_step(*leaves[:5], rule="retro", eta=0.1, mod_w=leaves[5],
                                    elig=_r(g, B, N, N), backend="cpu")  # fmt: skip
    elif name == "trace_update":
        B, M, K = 13, 24, 20
        leaves = [_r(g, M, K), _r(g, B, M), _r(g, B, K), _r(g, B, K)]
        out = hebbkern.trace_update(
            leaves[0], leaves[1], leaves[2], rule="oja", eta=leaves[3], backend="cpu"
        )
        leaves2 = [_r(g, B, M, K), _r(g, B, M), _r(g, B, K)]
        out = (out, hebbkern.trace_update(*leaves2, rule="clip", eta=0.2, clip=0.5, backend="cpu"))
        leaves += leaves2
    elif name == "plastic_linear":
        B, M, K = 13, 40, 24
        leaves = [_r(g, B, M), _r(g, M, K), _r(g, M, K), _r(g, B, M, K)]
        out = hebbkern.plastic_linear(*leaves, backend="cpu")
    elif name == "plastic_lstm":
        T, B, N = 5, 6, 48  # the case
        leaves = [_r(g, T, B, 4 * N, scale=1.0), _r(g, N, 4 * N, scale=0.1), _r(g, N, N), _r(g, N)]
        out = hebbkern.plastic_lstm(*leaves[:3], mod_w=leaves[3], backend="cpu")
    elif name == "hebbian":
        leaves = [_r(g, 16, 8, 3, 3), _r(g, 6, 8, 10, 10), _r(g, 6, 16, 8, 8)]
        out = hebbkern.hebbian_update(*leaves, rule="oja", backend="cpu")
    outs = [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
    cot = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=cot)).sum() for t in outs)
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [t.detach() for t in outs] + [x for x in grads if x is not None]


@pytest.mark.parametrize(
    "name", ["plastic_step", "trace_update", "plastic_linear", "plastic_lstm", "hebbian", "fop"]
)
def test_bitwise_equal_at_1_and_2_threads(name, restore_threads):
    torch.set_num_threads(1)
    one = _run(name)
    torch.set_num_threads(2)
    two = _run(name)
    assert len(one) == len(two)
    for i, (a, b) in enumerate(zip(one, two, strict=True)):
        assert torch.equal(a, b), f"{name}: tensor {i} differs between 1 and 2 threads"
