"""A second derivative through the fused C++ ops raises instead of coming back silently zero.

The backward ops have no derivative formula. Without an Autograd kernel of their own, PyTorch's
fallback backpropagated through them with a warning and zero gradients; csrc/ops.cpp registers
the not-implemented fallback, so a double backward names the op that has no derivative.
"""

from __future__ import annotations

import pytest
import torch

import hebbkern

pytestmark = pytest.mark.skipif(not hebbkern.extension_available(), reason="needs the extension")

D = torch.float64


def _rnn(u, w):
    return hebbkern.plastic_rnn(u, w, 0.1 * torch.ones_like(w), eta=0.1, backend="cpu")[0]


def _linear(u, w):
    hebb = torch.randn(u.shape[0], *w.shape, dtype=D)
    return hebbkern.plastic_linear(u, w, 0.1 * torch.ones_like(w), hebb, backend="cpu")


def _trace(u, w):
    post = torch.tanh(u @ w)
    return hebbkern.trace_update(w.expand(u.shape[0], -1, -1), u, post, rule="hebb", eta=0.1,
                                 backend="cpu")  # fmt: skip


def _lstm(u, w):
    wh = w.repeat(1, 4)  # [N, 4N]: the gates' recurrent weights
    out = hebbkern.plastic_lstm(u, wh, 0.1 * torch.ones_like(w), rule="hebb", eta=0.1,
                                backend="cpu")  # fmt: skip
    return out[0]


CASES = {
    "plastic_rnn_bwd": (_rnn, (4, 2, 5)),
    "plastic_linear_bwd": (_linear, (2, 5)),
    "trace_update_bwd": (_trace, (2, 5)),
    "plastic_lstm_bwd": (_lstm, (3, 2, 20)),
}


@pytest.mark.parametrize("op", sorted(CASES))
def test_second_derivative_raises(op):
    fn, ushape = CASES[op]
    torch.manual_seed(0)
    u = torch.randn(*ushape, dtype=D, requires_grad=True)
    w = (0.3 * torch.randn(5, 5, dtype=D)).requires_grad_()
    (gw,) = torch.autograd.grad(fn(u, w).pow(2).sum(), w, create_graph=True)
    assert torch.isfinite(gw).all()
    with pytest.raises(RuntimeError, match=f"derivative for hebbkern::{op} is not implemented"):
        torch.autograd.grad(gw.sum(), u)
