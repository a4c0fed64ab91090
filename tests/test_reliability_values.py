"""Regression tests of issue 21's silent acceptances (item 5) and DHP Softmax's NaN spreading
(item 6): invalid values raise a ValueError naming the argument; a NaN stays where the loop-form
reference puts it."""

from __future__ import annotations

import pytest
import torch

import hebbkern
from hebbkern import consolidation
from hebbkern.nn import DHPSoftmax
from hebbkern.reference.dhp_softmax import dhp_trace_update

BACKENDS = ["reference"] + (["cpu"] if hebbkern.extension_available() else [])


def _rnn(mask, backend):
    u = torch.randn(3, 2, 4, dtype=torch.float64)
    w = 0.1 * torch.randn(4, 4, dtype=torch.float64)
    return hebbkern.plastic_rnn(
        u, w, torch.zeros((), dtype=torch.float64), eta=0.1, clamp_mask=mask, backend=backend
    )


def _step(mask, backend):
    N = 4
    u = torch.randn(2, N, dtype=torch.float64)
    z = torch.zeros(2, N, dtype=torch.float64)
    H = torch.zeros(2, N, N, dtype=torch.float64)
    w = 0.1 * torch.randn(N, N, dtype=torch.float64)
    return hebbkern.plastic_step(
        u, z, H, w, torch.zeros((), dtype=torch.float64), eta=0.1, clamp_mask=mask,
        backend=backend,
    )  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op,shape", [(_rnn, (3, 2, 4)), (_step, (2, 4))])
@pytest.mark.parametrize("bad", [float("nan"), 0.5, -1.0, 2.0])
def test_floating_clamp_mask_must_be_binary(op, shape, bad, backend):
    mask = torch.zeros(shape, dtype=torch.float64)
    mask.view(-1)[1] = bad
    with pytest.raises(ValueError, match="clamp_mask"):
        op(mask, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op,shape", [(_rnn, (3, 2, 4)), (_step, (2, 4))])
def test_clamp_mask_requiring_grad_is_refused(op, shape, backend):
    mask = torch.ones(shape, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="clamp_mask must not require grad"):
        op(mask, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op,shape", [(_rnn, (3, 2, 4)), (_step, (2, 4))])
def test_binary_floating_mask_equals_bool_mask(op, shape, backend):
    bool_mask = torch.rand(shape, generator=torch.Generator().manual_seed(1)) < 0.5
    torch.manual_seed(0)
    a = op(bool_mask, backend)
    torch.manual_seed(0)
    b = op(bool_mask.to(torch.float64), backend)
    for x, y in zip(
        torch.utils._pytree.tree_leaves(a), torch.utils._pytree.tree_leaves(b), strict=True
    ):
        assert (x is None and y is None) or torch.equal(x, y)


def _param():
    return [("p", torch.nn.Parameter(torch.randn(3)))]


@pytest.mark.parametrize("xi", [float("inf"), float("nan"), 0.0, -1.0])
def test_si_xi_must_be_finite_positive(xi):
    with pytest.raises(ValueError, match="xi"):
        consolidation.SI(_param(), xi=xi)


@pytest.mark.parametrize("cls", [consolidation.EWC, consolidation.OnlineEWC, consolidation.MAS,
                                 consolidation.SI])  # fmt: skip
@pytest.mark.parametrize("strength", [float("inf"), float("nan"), -1.0])
def test_strength_must_be_finite_nonnegative(cls, strength):
    with pytest.raises(ValueError, match="strength"):
        cls(_param(), strength=strength)


def test_penalty_before_consolidation_is_zero():
    for cls in (consolidation.EWC, consolidation.OnlineEWC, consolidation.MAS, consolidation.SI):
        assert cls(_param(), strength=1e30)().item() == 0.0


def test_dhp_nan_stays_in_its_class_like_the_loop_reference():
    torch.manual_seed(0)
    head = DHPSoftmax(5, 4, eta_init=0.3, dtype=torch.float64)
    h = torch.randn(6, 5, dtype=torch.float64)
    h[2, 1] = float("nan")  # one sample of class 0
    target = torch.tensor([1, 2, 0, 1, 3, 2])
    before = head.hebb.clone()
    head(h, target)
    want = dhp_trace_update(before, h, target, head.eta.detach())
    torch.testing.assert_close(head.hebb, want, equal_nan=True, rtol=1e-12, atol=1e-12)
    assert torch.isnan(head.hebb[:, 0]).any() and not torch.isnan(head.hebb[:, 1:]).any()
    # A later batch without class 0: the trace of the other classes stays finite, as in the loop.
    h2 = torch.randn(4, 5, dtype=torch.float64)
    t2 = torch.tensor([1, 2, 3, 1])
    before = head.hebb.clone()
    z = head(h2, t2)
    want = dhp_trace_update(before, h2, t2, head.eta.detach())
    torch.testing.assert_close(head.hebb, want, equal_nan=True, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(z[:, 1:]).all()
