"""Helpers of the plastic_lstm tests: random inputs and running a backend under a random loss."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import (
    MODULATED_RULES,
    RULES,
    add_rule_inputs,
    alpha_shape,
    assert_grads_close,
    assert_outputs_close,
    random_source,
)
from torch import Tensor

import hebbkern

LSTM_OUTPUTS = ("h", "state_h", "state_c", "hebb", "elig")


def make_lstm_inputs(
    rule: str,
    alpha_kind: str = "per_neuron",
    fanout: bool = True,
    T: int = 6,
    B: int = 3,
    N: int = 7,
    dtype: torch.dtype = torch.float64,
    *,
    seed: int = 0,
    clip: float = 0.4,
    requires_grad: bool = True,
    clip_mode: str = "update",
    post: str = "candidate",
) -> dict:
    """Keyword arguments for ``hebbkern.plastic_lstm(**kw)`` with every optional input present
    (and the variants of docs/SPEC.md section 2.1 when not the defaults).

    The clip (0.4, with ``hebb0 ~ 0.3 randn``) bites for a fair share of the trace entries, and the
    alpha scale makes the plastic term matter in the candidate's pre-activation.
    """
    g, rnd = random_source(seed)
    s = 1.0 / math.sqrt(N)
    kw: dict = {
        "u": rnd(T, B, 4 * N, scale=0.8),
        "wh": rnd(N, 4 * N, scale=s),
        "alpha": rnd(*alpha_shape(alpha_kind, N), scale=2.0),
        "h0": rnd(B, N, scale=0.5),
        "c0": rnd(B, N, scale=0.5),
        "hebb0": rnd(B, N, N, scale=0.3),
    }
    add_rule_inputs(kw, rule, fanout, rnd, g, 2.0 * s, B, N)
    for k, v in kw.items():
        kw[k] = v.to(dtype).requires_grad_(requires_grad)
    kw["rule"] = rule
    kw["clip"] = clip
    if clip_mode != "update":
        kw["clip_mode"] = clip_mode
    if post != "candidate":
        kw["post"] = post
    return kw


# The variants of docs/SPEC.md section 2.1 and the gated rule (section 1.1) the fused paths run:
# (rule, clip_mode, post), each post with a clipped and an unclipped rule, the read-out clip with
# every clipped rule.
LSTM_VARIANTS = (
    ("gated", "update", "candidate"),
    ("neuromod", "read", "candidate"),
    ("clip", "read", "hidden"),
    ("retro", "read", "drive"),
    ("neuromod", "update", "drive"),
    ("hebb", "update", "cell"),
    ("retro", "update", "cell"),
    ("gated", "update", "hidden"),
    ("oja", "update", "drive"),
)


ALPHA_KINDS = ("per_connection", "per_neuron", "scalar")


def variant_id(rule: str, clip_mode: str, post: str) -> str:
    return "-".join(x for x in (rule, clip_mode, post) if x not in ("update", "candidate"))


def lstm_cases():
    """``(rule, alpha_kind, fanout, clip_mode, post)``: every rule and alpha kind (with and
    without fan-out for the modulated rules), then LSTM_VARIANTS over the alpha kinds in turn."""
    for rule in RULES:
        for ak in ALPHA_KINDS:
            for fanout in (False, True) if rule in MODULATED_RULES else (False,):
                yield pytest.param(
                    rule, ak, fanout, "update", "candidate",
                    id=f"{rule}-{ak}-{'fan' if fanout else 'nofan'}",
                )  # fmt: skip
    for n, (rule, clip_mode, post) in enumerate(LSTM_VARIANTS):
        ak = ALPHA_KINDS[n % 3]
        fanout = rule in MODULATED_RULES + ("gated",) and n % 2 == 0
        yield pytest.param(
            rule, ak, fanout, clip_mode, post, id=f"{variant_id(rule, clip_mode, post)}-{ak}"
        )


def lstm_outputs(h: Tensor, state) -> dict:
    out = {"h": h, "state_h": state.h, "state_c": state.c, "hebb": state.hebb}
    if state.elig is not None:
        out["elig"] = state.elig
    return out


def run_lstm(kw: dict, backend: str | None, loss_on=LSTM_OUTPUTS, seed: int = 1):
    """Runs ``plastic_lstm`` and backpropagates a random-weighted sum of the outputs in
    ``loss_on``. Returns detached outputs and the gradients of the inputs needing one."""
    h, state = hebbkern.plastic_lstm(**kw, backend=backend)
    outs = lstm_outputs(h, state)
    g = torch.Generator().manual_seed(seed)
    wts = {
        k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in sorted(outs.items())
    }
    loss = sum(
        (outs[k] * wts[k].to(outs[k].device, outs[k].dtype)).sum() for k in loss_on if k in outs
    )
    names = [k for k, v in kw.items() if isinstance(v, Tensor) and v.requires_grad]
    grads = dict(
        zip(
            names, torch.autograd.grad(loss, [kw[k] for k in names], allow_unused=True), strict=True
        )
    )
    return {k: v.detach() for k, v in outs.items()}, grads


def clone_kw(kw: dict, dtype: torch.dtype | None = None) -> dict:
    out = {}
    for k, v in kw.items():
        if isinstance(v, Tensor):
            out[k] = v.detach().to(dtype or v.dtype, copy=True).requires_grad_(v.requires_grad)
        else:
            out[k] = v
    return out


def compare_lstm(kw: dict, tol: float, loss_on=LSTM_OUTPUTS) -> None:
    """The cpu backend on ``kw`` against the reference on a float64 copy: every output and the
    gradient of every input (which must be nonzero in the reference, so the check is not vacuous)."""
    dtype = kw["u"].dtype
    kc, kr = clone_kw(kw), clone_kw(kw, torch.float64)
    oc, gc = run_lstm(kc, "cpu", loss_on)
    orf, gr = run_lstm(kr, "reference", loss_on)
    assert_outputs_close(oc, orf, dtype, tol)
    assert_grads_close(gc, gr, kc, kr, gr.keys(), tol, "cpu")
