"""The torch.func checks of tests/test_func_transforms.py and interpret_func_transforms_triton.py
(hebbkern/_func.py): each transform's gradient against ``torch.autograd.grad`` on the same call.

A case is ``call(**params) -> tuple of output tensors`` with ``params`` the differentiable float64
tensors by name (the other arguments live in ``call``); the loss is a random-weighted sum of the
outputs (fixed weights, so every output's gradient path is exercised).
"""

from __future__ import annotations

import torch
from torch import Tensor

# float64 through the same kernels on both sides: the gradients agree to rounding (the transforms
# reach the same backward op; vmap runs it per sample).
TOL = {"rtol": 1e-10, "atol": 1e-12}


def detached(params: dict) -> dict:
    return {k: v.detach().clone() for k, v in params.items()}


def weights(outs: tuple, seed: int = 1) -> tuple:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(o.shape, generator=g, dtype=o.dtype) for o in outs)


def weighted_loss(call, wts: tuple):
    def loss(params: dict) -> Tensor:
        outs = call(**params)
        return sum((o * w).sum() for o, w in zip(outs, wts, strict=True))

    return loss


def autograd_grads(call, params: dict, wts: tuple) -> tuple[Tensor, dict]:
    """The loss and its gradients by plain autograd (zeros where the loss does not depend on a
    parameter, as torch.func returns them)."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    loss = weighted_loss(call, wts)(leaves)
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    grads = {
        k: torch.zeros_like(v) if g is None else g
        for (k, v), g in zip(leaves.items(), grads, strict=True)
    }
    return loss.detach(), grads


def assert_same(got: dict, ref: dict, what: str) -> None:
    assert got.keys() == ref.keys(), what
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], **TOL, msg=lambda m, k=k: f"{what} d{k}: {m}")


def check_grad_and_vjp(call, params: dict, seed: int = 1) -> None:
    """torch.func.grad, grad_and_value and vjp equal torch.autograd.grad."""
    params = detached(params)
    wts = weights(call(**params), seed)
    ref_loss, ref = autograd_grads(call, params, wts)
    loss = weighted_loss(call, wts)
    assert_same(torch.func.grad(loss)(params), ref, "grad")
    g, value = torch.func.grad_and_value(loss)(params)
    assert_same(g, ref, "grad_and_value")
    torch.testing.assert_close(value, ref_loss, **TOL)
    outs, vjp_fn = torch.func.vjp(lambda p: tuple(call(**p)), params)
    for o, w in zip(outs, weights(outs, seed), strict=True):
        assert o.shape == w.shape
    (gv,) = vjp_fn(wts)
    assert_same(gv, ref, "vjp")


def check_jacrev(call, params: dict, name: str) -> None:
    """torch.func.jacrev (vmap over the backward) of the first output with respect to ``name``
    equals torch.autograd.functional.jacobian (one backward per output element)."""
    params = detached(params)

    def first(x):
        return call(**{**params, name: x})[0]

    got = torch.func.jacrev(first)(params[name])
    ref = torch.autograd.functional.jacobian(first, params[name])
    torch.testing.assert_close(got, ref, **TOL)


def check_vmap_grad(call, params: dict, name: str, n: int = 3, seed: int = 2) -> None:
    """vmap(grad) over a batch of ``n`` values of parameter ``name`` (the others shared) equals
    a loop of torch.autograd.grad."""
    params = detached(params)
    wts = weights(call(**params), seed=1)
    g = torch.Generator().manual_seed(seed)
    batch = params[name] + 0.1 * torch.randn(
        (n, *params[name].shape), generator=g, dtype=params[name].dtype
    )
    loss = weighted_loss(call, wts)

    def grad_of(x):
        return torch.func.grad(lambda p: loss({**params, name: p}))(x)

    got = torch.func.vmap(grad_of)(batch)
    ref = torch.stack([autograd_grads(call, {**params, name: x}, wts)[1][name] for x in batch])
    torch.testing.assert_close(got, ref, **TOL)
