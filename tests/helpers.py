"""Shared helpers of the test suite: random inputs, error measures, running a backend with a loss.

Imported by the test modules as ``from helpers import ...`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

import hebbkern

RULES = ("hebb", "oja", "clip", "neuromod", "retro")
MODULATED_RULES = ("neuromod", "retro")
ETA_RULES = ("hebb", "oja", "clip", "retro")
ALPHA_KINDS = ("per_connection", "per_neuron", "scalar")

# Tensor arguments of plastic_rnn, in the order of the public signature.
TENSOR_ARGS = (
    "u", "w", "alpha", "eta", "mod_w", "mod_b", "fanout_w", "fanout_b", "h0", "hebb0", "elig0",
)  # fmt: skip
# The outputs a loss can use: h [T, B, N], state.h, state.hebb, state.elig.
OUTPUTS = ("h", "state_h", "hebb", "elig")


def rel_err(a: Tensor, b: Tensor) -> float:
    """``norm(a - b) / norm(b)`` in float64; the plain ``norm(a - b)`` when ``b`` is zero."""
    a = a.detach().to(torch.float64)
    b = b.detach().to(torch.float64)
    assert a.shape == b.shape, f"shape mismatch: {list(a.shape)} vs {list(b.shape)}"
    diff = (a - b).norm().item()
    nb = b.norm().item()
    return diff if nb == 0 else diff / nb


def make_inputs(
    rule: str,
    alpha_kind: str = "per_connection",
    fanout: bool = False,
    clamp: bool = False,
    T: int = 7,
    B: int = 3,
    N: int = 9,
    dtype: torch.dtype = torch.float64,
    *,
    seed: int = 0,
    requires_grad: bool = True,
    clip: float = 0.5,
) -> dict:
    """Keyword arguments for ``hebbkern.plastic_rnn(**kw)`` with every optional input present.

    Scales keep ``tanh`` out of saturation (pre-activations of order 1) while the clip (0.5, with
    ``hebb0 ~ 0.3 * randn`` and ``eta`` in (0.1, 0.5)) bites for a fair share of the trace entries.
    Every floating tensor argument is a leaf with ``requires_grad`` (``eta`` and ``mod_b`` are 0-dim
    tensors); the clamp mask is boolean.
    """
    modulated = rule in MODULATED_RULES or rule == "gated"  # gated: SPEC.md section 1.1
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return scale * torch.randn(shape, generator=g, dtype=torch.float64)

    s = 1.0 / math.sqrt(N)
    alpha_shape = {"per_connection": (N, N), "per_neuron": (N,), "scalar": ()}[alpha_kind]
    kw: dict = {
        "u": rnd(T, B, N, scale=0.6),
        "w": rnd(N, N, scale=s),
        "alpha": rnd(*alpha_shape, scale=s),
        "h0": rnd(B, N, scale=0.5),
        "hebb0": rnd(B, N, N, scale=0.3),
    }
    if rule in ETA_RULES:
        kw["eta"] = 0.1 + 0.4 * torch.rand((), generator=g, dtype=torch.float64)
    if modulated:
        kw["mod_w"] = rnd(N, scale=1.5 * s)
        kw["mod_b"] = rnd(scale=0.2)
        if fanout:
            kw["fanout_w"] = rnd(N)
            kw["fanout_b"] = rnd(N, scale=0.3)
    if rule == "retro":
        kw["elig0"] = rnd(B, N, N, scale=0.3)
    for k, v in kw.items():
        kw[k] = v.to(dtype).requires_grad_(requires_grad)
    if clamp:
        kw["clamp_mask"] = torch.rand(T, B, N, generator=g) < 0.3
    kw["rule"] = rule
    kw["clip"] = clip
    return kw


def grad_names(kw: dict) -> list[str]:
    """Names of the arguments that require a gradient."""
    return [k for k, v in kw.items() if isinstance(v, Tensor) and v.requires_grad]


def clone_inputs(kw: dict, dtype: torch.dtype | None = None) -> dict:
    """Fresh leaves (copies) with the same values, optionally cast, and the same ``requires_grad``."""
    out = {}
    for k, v in kw.items():
        if isinstance(v, Tensor) and v.is_floating_point():
            c = v.detach().to(dtype or v.dtype, copy=True)
            out[k] = c.requires_grad_(v.requires_grad)
        else:
            out[k] = v
    return out


def outputs_dict(h: Tensor, state) -> dict:
    out = {"h": h, "state_h": state.h, "hebb": state.hebb}
    if state.elig is not None:
        out["elig"] = state.elig
    return out


def loss_weights(outs: dict, seed: int = 1) -> dict:
    """Random float64 weights, one per element of each output (fixed by ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in sorted(outs.items())
    }


def run(kw: dict, backend: str | None, loss_on=OUTPUTS, seed: int = 1, backward: bool = True):
    """Runs ``hebbkern.plastic_rnn`` on ``kw`` and backpropagates a random-weighted sum of the
    outputs named in ``loss_on``. Returns ``(outputs, grads)``: detached outputs by name and the
    gradient of every input that requires one (``None`` where autograd produced none)."""
    h, state = hebbkern.plastic_rnn(**kw, backend=backend)
    outs = outputs_dict(h, state)
    grads = {}
    if backward:
        wts = loss_weights(outs, seed)
        loss = sum(
            (outs[k] * wts[k].to(outs[k].device, outs[k].dtype)).sum() for k in loss_on if k in outs
        )
        loss.backward()
        grads = {k: kw[k].grad for k in grad_names(kw)}
    return {k: v.detach() for k, v in outs.items()}, grads


def zero_if_none(g: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if g is None else g


def fused_args(kw: dict, ckpt_every: int) -> tuple:
    """The argument list ``hebbkern.plastic_rnn`` passes to ``torch.ops.hebbkern.plastic_rnn_fwd``
    (eta and mod_b as 0-dim tensors, the clamp mask as bool; mod_b defaults to 0 for the modulated
    rules)."""
    rule = kw["rule"]
    mod_b = kw.get("mod_b")
    if mod_b is None and (rule in MODULATED_RULES or rule == "gated"):
        mod_b = torch.zeros((), dtype=kw["u"].dtype)
    return (
        kw["u"], kw["w"], kw["alpha"], kw.get("h0"), kw.get("hebb0"), kw.get("elig0"),
        kw.get("clamp_mask"), kw.get("eta"), kw.get("mod_w"), mod_b, kw.get("fanout_w"),
        kw.get("fanout_b"), rule, float(kw["clip"]), ckpt_every,
    )  # fmt: skip
