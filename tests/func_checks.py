"""The torch.func checks of tests/test_func_transforms.py and interpret_func_transforms_triton.py
(hebbkern/_func.py): each transform's gradient against ``torch.autograd.grad`` on the same call.

A case is ``call(**params) -> tuple of output tensors`` with ``params`` the differentiable float64
tensors by name (the other arguments live in ``call``); the loss is a random-weighted sum of the
outputs (fixed weights, so every output's gradient path is exercised).
"""

from __future__ import annotations

import torch
from helpers import make_inputs
from helpers_step import step_inputs
from lstm_helpers import make_lstm_inputs
from torch import Tensor

import hebbkern

# float64 through the same kernels on both sides: the gradients agree to rounding (the transforms
# reach the same backward op; vmap runs it per sample).
TOL = {"rtol": 1e-10, "atol": 1e-12}
D = torch.float64


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


# ---------------------------------------------------------------------------------------------
# Cases: (call, params) of the op families that have a Triton backend too.


def split(kw: dict) -> tuple[dict, dict]:
    """``kw`` as (differentiable floating tensors, the other arguments)."""
    params = {k: v for k, v in kw.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}
    return detached(params), {k: v for k, v in kw.items() if k not in params}


def tensors(*outs) -> tuple:
    """The outputs that are tensors (a state's ``elig`` is None except for rule retro)."""
    flat = []
    for o in outs:
        flat.extend(tensors(*o) if isinstance(o, tuple) else [o] if o is not None else [])
    return tuple(flat)


def step_case(
    rule, alpha_kind="per_connection", fanout=False, clamp=False, backend="cpu", **options
):
    kw = step_inputs(rule, alpha_kind, fanout, clamp, B=2, N=5, requires_grad=False)
    if options.get("n_modulated"):
        kw["eta"] = torch.tensor(0.3, dtype=D)  # the unmodulated neurons' rate
    params, rest = split(kw)
    return lambda **p: tensors(
        hebbkern.plastic_step(**p, **rest, backend=backend, **options)
    ), params


def rnn_case(
    rule, alpha_kind="per_connection", fanout=False, clamp=False, backend="cpu", **options
):
    kw = make_inputs(rule, alpha_kind, fanout, clamp, T=3, B=2, N=5, requires_grad=False)
    params, rest = split(kw)
    return lambda **p: tensors(
        hebbkern.plastic_rnn(**p, **rest, backend=backend, **options)
    ), params


def lstm_case(rule, backend="cpu", **options):
    kw = make_lstm_inputs(rule, T=3, B=2, N=4, requires_grad=False, **options)
    params, rest = split(kw)
    return lambda **p: tensors(hebbkern.plastic_lstm(**p, **rest, backend=backend)), params


def linear_case(layout, shared, backend="cpu"):
    g = torch.Generator().manual_seed(4)
    B, M, K = 2, 4, 3
    wk = (K, M) if layout == "post_pre" else (M, K)
    params = {
        "x": torch.randn(B, M, generator=g, dtype=D),
        "w": 0.5 * torch.randn(wk, generator=g, dtype=D),
        "alpha": 0.5 * torch.randn(K, generator=g, dtype=D),
        "hebb": 0.3 * torch.randn(wk if shared else (B, *wk), generator=g, dtype=D),
    }
    if layout == "post_pre":
        params["alpha"] = 0.5 * torch.randn(wk, generator=g, dtype=D)  # square-free: [K, M]

    def call(**p):
        return (hebbkern.plastic_linear(**p, backend=backend, layout=layout),)

    return call, params
