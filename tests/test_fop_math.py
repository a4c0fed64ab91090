"""FOP's math checked independently of the reference: the base optimisers it must reproduce, the
P = p * I special case (hypergradient descent on the learning rate), and the hypergradient itself,
by hand on a quadratic and by autograd for every base optimiser."""

from __future__ import annotations

import math

import pytest
import torch
from fop_helpers import BASE_CASES, BASE_IDS, grad_sequence, make_params, run_steps
from helpers import rel_err

import hebbkern
from hebbkern.optim import FOP
from hebbkern.reference.fop import adam_direction, preconditioned_dim

needs_ext = pytest.mark.skipif(not hebbkern.extension_available(), reason="no compiled extension")
BACKENDS = [pytest.param("cpu", marks=needs_ext), "foreach", "reference"]
SHAPES = [(4, 3, 3, 3), (6, 70), (5, 9), (6,)]


def torch_optimizer(params, base, momentum, wd, lr):
    if base == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, foreach=False)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd, foreach=False)


def assert_steps_match_base(backend, base, momentum, wd, steps, hyper_lr):
    """``steps`` FOP steps (lr 0.1) give torch.optim's SGD / Adam parameters to 1e-12."""
    seq = grad_sequence(SHAPES, steps)
    ours, theirs = make_params(SHAPES), make_params(SHAPES)
    opt = FOP(ours, lr=0.1, hyper_lr=hyper_lr, base=base, momentum=momentum, weight_decay=wd,
              backend=backend)  # fmt: skip
    run_steps(ours, seq, opt)
    run_steps(theirs, seq, torch_optimizer(theirs, base, momentum, wd, 0.1))
    for a, b in zip(ours, theirs, strict=True):
        assert rel_err(a, b) < 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("base", "momentum", "wd"), BASE_CASES, ids=BASE_IDS)
def test_hyper_lr_zero_is_the_base_optimiser(backend, base, momentum, wd):
    """With hyper_lr = 0, M stays the identity: every step is torch.optim's SGD / Adam."""
    assert_steps_match_base(backend, base, momentum, wd, steps=5, hyper_lr=0.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("base", "momentum", "wd"), BASE_CASES, ids=BASE_IDS)
def test_first_step_is_the_base_optimisers(backend, base, momentum, wd):
    assert_steps_match_base(backend, base, momentum, wd, steps=1, hyper_lr=0.3)


def quadratic(n, seed=0):
    """f(w) = 0.5 w^T Q w - c^T w on a flattened parameter, Q symmetric positive definite."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    Q = A @ A.T / n + 0.5 * torch.eye(n, dtype=torch.float64)
    c = torch.randn(n, generator=g, dtype=torch.float64)
    return Q, c


@pytest.mark.parametrize("backend", BACKENDS)
def test_scalar_preconditioner_is_hypergradient_descent_on_the_lr(backend):
    """precondition="scalar" (P = p * I): the learning rate lr * m^2 learned by Baydin et al.'s
    hypergradient dJ/d(alpha) = -<G_t, D_{t-1}>, chained through alpha = lr * m^2."""
    shape = (3, 4)
    Q, c = quadratic(12)
    lr, hyper_lr, steps = 0.05, 0.5, 12

    # By hand, in Python floats on flat vectors.
    w = make_params([shape])[0].detach().flatten().clone()
    m, d_prev = 1.0, None
    lrs = []
    for _ in range(steps):
        g = Q @ w - c
        if d_prev is not None:
            dJ_dalpha = -float(g @ d_prev)  # Baydin's hypergradient of the learning rate
            m -= hyper_lr * dJ_dalpha * 2 * lr * m  # chain rule through alpha = lr * m^2
        alpha = lr * m * m
        lrs.append(alpha)
        w = w - alpha * g
        d_prev = g

    p = make_params([shape])[0]
    opt = FOP([p], lr=lr, hyper_lr=hyper_lr, precondition="scalar", backend=backend)
    fop_lrs = []
    for _ in range(steps):
        p.grad = (Q @ p.detach().flatten() - c).reshape(shape)
        opt.step()
        fop_lrs.append(lr * opt.state[p]["M"].item() ** 2)
    assert fop_lrs == pytest.approx(lrs, rel=1e-12)
    assert max(lrs) > 1.2 * lr  # the learning rate really adapted
    assert rel_err(p.detach().flatten(), w) < 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(5, 3, 3, 3), (4, 7), (3, 100)], ids=["conv", "linear", "wide"])
def test_hypergradient_by_hand_on_a_quadratic(backend, shape):
    """f(W) = 0.5 ||W - T||^2 with plain SGD: G_0 = W_0 - T, G_1 = (1 - lr) G_0, so the second
    step learns M_1 = I + 2 hyper_lr lr (1 - lr) G_0^T G_0 and moves W by -lr G_1 M_1 M_1^T."""
    lr, hyper_lr = 0.3, 0.05
    d = preconditioned_dim(shape, "auto")
    W0, T = make_params([shape, shape], seed=7)
    W0, T = W0.detach(), T.detach()
    G0 = (W0 - T).reshape(-1, d)
    M1 = torch.eye(d, dtype=torch.float64) + 2 * hyper_lr * lr * (1 - lr) * G0.T @ G0
    W2 = (W0 - T).reshape(-1, d) * (1 - lr) - lr * (1 - lr) * G0 @ M1 @ M1.T + T.reshape(-1, d)

    p = torch.nn.Parameter(W0.clone())
    opt = FOP([p], lr=lr, hyper_lr=hyper_lr, backend=backend)
    for _ in range(2):
        p.grad = p.detach() - T
        opt.step()
    assert rel_err(opt.state[p]["M"], M1) < 1e-12
    assert rel_err(p.detach().reshape(-1, d), W2) < 1e-12


def direction(state, base, momentum):
    """D of the step just taken, recomputed from the optimiser state after it."""
    if base == "adam":
        t = int(state["step"].item())
        D = adam_direction(state["exp_avg"], state["exp_avg_sq"], t, 0.9, 0.999, 1e-8)
        assert rel_err(D, state["prev_direction"]) < 1e-14
        return D
    return state["momentum_buffer" if momentum else "prev_direction"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("base", "momentum", "wd"), BASE_CASES[:3], ids=BASE_IDS[:3])
@pytest.mark.parametrize("shape", [(3, 2, 3, 3), (6, 5)], ids=["conv", "linear"])
def test_hypergradient_matches_autograd(backend, base, momentum, wd, shape):
    """The M update equals -hyper_lr * dJ/dM, J(M) = f(W_prev - lr D_prev M M^T), by autograd."""
    lr, hyper_lr = 0.05, 0.01
    n = math.prod(shape)
    d = preconditioned_dim(shape, "auto")
    Q, c = quadratic(n, seed=3)

    def f(W):
        w = W.reshape(-1)
        return 0.5 * w @ Q @ w - c @ w

    p = make_params([shape], seed=2)[0]
    opt = FOP([p], lr=lr, hyper_lr=hyper_lr, base=base, momentum=momentum, backend=backend)

    def step():
        p.grad = (Q @ p.detach().reshape(-1) - c).reshape(shape)
        opt.step()

    for _ in range(3):
        step()
    W_before = p.detach().clone()
    step()  # the step whose loss the next M update differentiates
    state = opt.state[p]
    M_used = state["M"].clone()
    D_used = direction(state, base, momentum).clone().reshape(-1, d)
    step()
    M_new = state["M"]

    M = M_used.clone().requires_grad_(True)
    J = f(W_before.reshape(-1, d) - lr * D_used @ (M @ M.T))
    (dJ_dM,) = torch.autograd.grad(J, M)
    assert (M_new - M_used).norm() > 1e-6
    assert rel_err((M_used - M_new) / hyper_lr, dJ_dM) < 1e-9


def test_preconditioned_axes():
    conv, lin, bias = (8, 3, 5, 5), (10, 20), (10,)
    assert [preconditioned_dim(s, "auto") for s in (conv, lin, bias, ())] == [25, 20, None, None]
    assert [preconditioned_dim(s, "input") for s in (conv, lin, bias)] == [75, 20, None]
    assert [preconditioned_dim(s, "spatial") for s in (conv, lin, bias)] == [25, None, None]
    assert [preconditioned_dim(s, "scalar") for s in (conv, lin, bias)] == [1, 1, 1]
    assert [preconditioned_dim(s, "none") for s in (conv, lin, bias)] == [None, None, None]


@pytest.mark.parametrize("backend", BACKENDS)
def test_precondition_per_group(backend):
    conv, lin = make_params([(4, 3, 3, 3), (5, 7)])
    opt = FOP(
        [{"params": [conv], "precondition": "input"}, {"params": [lin], "precondition": "none"}],
        lr=0.1, hyper_lr=0.1, backend=backend,
    )  # fmt: skip
    ref = torch.nn.Parameter(lin.detach().clone())
    sgd = torch.optim.SGD([ref], lr=0.1)
    for grads in grad_sequence([(4, 3, 3, 3), (5, 7)], 3):
        conv.grad, lin.grad, ref.grad = grads[0], grads[1], grads[1].clone()
        opt.step()
        sgd.step()
    assert opt.state[conv]["M"].shape == (27, 27)
    assert "M" not in opt.state[lin]
    assert rel_err(lin, ref) < 1e-12
