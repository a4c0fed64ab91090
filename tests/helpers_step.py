"""Helpers of the ``plastic_step`` tests: random step inputs and running a backend with a loss.

Imported as ``from helpers_step import ...`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import pytest
import torch
from helpers import RULES, clone_inputs, grad_names, loss_weights, make_inputs

import hebbkern

# alpha kinds of plastic_step: plastic_rnn's three plus one [B, N, N] per sample.
STEP_ALPHA_KINDS = ("per_connection", "per_neuron", "scalar", "per_sample")
STEP_OUTPUTS = ("h", "hebb", "elig")


def step_inputs(
    rule: str,
    alpha_kind: str = "per_connection",
    fanout: bool = False,
    clamp: bool = False,
    B: int = 3,
    N: int = 9,
    dtype: torch.dtype = torch.float64,
    *,
    per_sample_w: bool = False,
    seed: int = 0,
    requires_grad: bool = True,
    clip: float = 0.5,
) -> dict:
    """Keyword arguments of ``hebbkern.plastic_step(**kw)`` with every optional input given:
    ``make_inputs``'s first step (same scales), ``w`` and/or ``alpha`` per sample on request."""
    ak = "per_connection" if alpha_kind == "per_sample" else alpha_kind
    kw = make_inputs(
        rule, ak, fanout, clamp, T=1, B=B, N=N, dtype=dtype, seed=seed,
        requires_grad=False, clip=clip,
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed + 1000)
    s = N**-0.5
    out = {
        "u": kw["u"][0],
        "h": kw["h0"],
        "hebb": kw["hebb0"],
        "w": (s * torch.randn(B, N, N, generator=g, dtype=torch.float64)).to(dtype)
        if per_sample_w
        else kw["w"],
        "alpha": (s * torch.randn(B, N, N, generator=g, dtype=torch.float64)).to(dtype)
        if alpha_kind == "per_sample"
        else kw["alpha"],
    }
    for k in ("eta", "mod_w", "mod_b", "fanout_w", "fanout_b"):
        if k in kw:
            out[k] = kw[k]
    if rule == "retro":
        out["elig"] = kw["elig0"]
    for k, v in out.items():
        out[k] = v.detach().clone().requires_grad_(requires_grad)
    if clamp:
        out["clamp_mask"] = kw["clamp_mask"][0]
    out["rule"] = rule
    out["clip"] = clip
    return out


def step_outputs(state) -> dict:
    out = {"h": state.h, "hebb": state.hebb}
    if state.elig is not None:
        out["elig"] = state.elig
    return out


def run_step(kw: dict, backend: str | None, loss_on=STEP_OUTPUTS, seed: int = 1):
    """Runs ``hebbkern.plastic_step`` on ``kw`` and backpropagates a random-weighted sum of the
    outputs named in ``loss_on``. Returns ``(outputs, grads)`` (``None`` where autograd gave none)."""
    outs = step_outputs(hebbkern.plastic_step(**kw, backend=backend))
    wts = loss_weights(outs, seed)
    terms = [(outs[k] * wts[k].to(outs[k].dtype)).sum() for k in loss_on if k in outs]
    names = grad_names(kw)
    grads = torch.autograd.grad(sum(terms), [kw[k] for k in names], allow_unused=True)
    return {k: v.detach() for k, v in outs.items()}, dict(zip(names, grads, strict=True))


def partial_cases():
    """``rule, loss_on`` parameters: a loss on some of the step's outputs only (the op's backward
    receives None for the others)."""
    for rule in RULES:
        subsets = [("h",), ("hebb",)] + ([("elig",), ("h", "elig")] if rule == "retro" else [])
        for sub in subsets:
            yield pytest.param(rule, sub, id=f"{rule}-{'+'.join(sub)}")


__all__ = ["STEP_ALPHA_KINDS", "clone_inputs", "partial_cases", "run_step", "step_inputs",
           "step_outputs"]  # fmt: skip


def assert_identical_runs(a, b) -> None:
    """Two :func:`run_step` results, ``(outputs, grads)``, equal bit for bit, with the same
    gradients present (and dtypes)."""
    (oa, ga), (ob, gb) = a, b
    assert oa.keys() == ob.keys()
    for k in oa:
        assert torch.equal(oa[k], ob[k]), k
    assert ga.keys() == gb.keys()
    for k, g in ga.items():
        if g is None:
            assert gb[k] is None, k
        else:
            assert gb[k] is not None and g.dtype == gb[k].dtype and torch.equal(g, gb[k]), k
