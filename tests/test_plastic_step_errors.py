"""Bad arguments of ``hebbkern.plastic_step`` raise ``ValueError`` / ``TypeError`` naming the
argument, before any kernel runs, on both backends; the raw ``torch.ops.hebbkern.plastic_step_*``
ops check shapes themselves (no out-of-bounds access whatever they are given)."""

from __future__ import annotations

import pytest
import torch
from helpers import DROP as _DROP
from helpers import setter
from helpers_step import step_inputs

import hebbkern

B, N = 2, 4
f64 = torch.float64


def randn(*shape, dtype=f64, device="cpu"):
    return torch.randn(shape, dtype=dtype, device=device)


def base(rule="hebb", fanout=False):
    return step_inputs(rule, "per_connection", fanout, True, B=B, N=N, requires_grad=False)


META = torch.device("meta")
CASES = [
    ("u-rank3", "hebb", setter(u=randn(1, B, N)), ValueError, r"^u must have shape \[B, N\]"),
    ("u-N0", "hebb", setter(u=randn(B, 0)), ValueError, r"^u must have shape \[B, N\] with N >= 1"),
    ("u-int", "hebb", setter(u=torch.ones(B, N, dtype=torch.int64)), TypeError, r"^u must be a floating"),
    ("u-list", "hebb", setter(u=lambda kw: kw["u"].tolist()), TypeError, r"^u must be a torch.Tensor"),
    ("h-shape", "hebb", setter(h=randn(B, N + 1)), ValueError, r"^h must have shape \[2, 4\]"),
    ("h-dtype", "hebb", setter(h=randn(B, N, dtype=torch.float32)), TypeError, r"^h must have dtype"),
    ("h-None", "hebb", setter(h=None), TypeError, r"^h must be a torch.Tensor"),
    ("hebb-shape", "hebb", setter(hebb=randn(N, N + 1)), ValueError, r"^hebb must have shape \[2, 4, 4\]"),
    ("hebb-device", "hebb", setter(hebb=randn(B, N, N, device=META)), ValueError, r"^hebb must be on cpu"),
    ("w-shape", "hebb", setter(w=randn(N, N + 1)), ValueError, r"^w must have shape \[N, N\] \(shared\) or \[B, N, N\]"),
    ("w-batch", "hebb", setter(w=randn(B + 1, N, N)), ValueError, r"^w must have shape"),
    ("w-dtype", "hebb", setter(w=randn(N, N, dtype=torch.float32)), TypeError, r"^w must have dtype"),
    ("alpha-shape", "hebb", setter(alpha=randn(N + 1)), ValueError, r"^alpha must have shape \[N, N\]"),
    ("alpha-B-N", "hebb", setter(alpha=randn(B, N)), ValueError, r"^alpha must have shape"),
    ("eta-missing", "hebb", setter(eta=_DROP), ValueError, r"^rule 'hebb' needs eta"),
    ("eta-vector", "oja", setter(eta=randn(2)), ValueError, r"^eta must be a 0-dim tensor"),
    ("eta-str", "clip", setter(eta="0.1"), TypeError, r"^eta must be a float"),
    ("eta-neuromod", "neuromod", setter(eta=0.1), ValueError, r"^eta is not used by rule 'neuromod'"),
    ("rule", "hebb", setter(rule="bcm"), ValueError, r"^rule must be one of"),
    ("clip-0", "clip", setter(clip=0.0), ValueError, r"^clip must be > 0"),
    ("clip-str", "clip", setter(clip="1"), TypeError, r"^clip must be a positive float"),
    ("mod_w-missing", "neuromod", setter(mod_w=_DROP), ValueError, r"^rule 'neuromod' needs mod_w"),
    ("mod_w-shape", "neuromod", setter(mod_w=randn(N + 1)), ValueError, r"^mod_w must have shape \[4\]"),
    ("mod_w-hebb", "hebb", setter(mod_w=randn(N)), ValueError, r"^mod_w only applies to the modulated"),
    ("fanout-half", "neuromod", setter(fanout_w=randn(N)), ValueError, r"^fanout_w and fanout_b must be given together"),
    ("elig-hebb", "hebb", setter(elig=randn(B, N, N)), ValueError, r"^elig only applies to rule 'retro'"),
    ("elig-shape", "retro", setter(elig=randn(B, N, N + 1)), ValueError, r"^elig must have shape \[2, 4, 4\]"),
    ("clamp-shape", "hebb", setter(clamp_mask=torch.zeros(B, N + 1, dtype=torch.bool)), ValueError, r"^clamp_mask must have shape \[B, N\]"),
    ("clamp-int", "hebb", setter(clamp_mask=torch.zeros(B, N, dtype=torch.int64)), TypeError, r"^clamp_mask must be a bool"),
]  # fmt: skip


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("rule, mutate, exc, match", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_argument(rule, mutate, exc, match, backend):
    kw = base(rule)
    mutate(kw)
    with pytest.raises(exc, match=match):
        hebbkern.plastic_step(**kw, backend=backend)


@pytest.mark.parametrize("rule", ["hebb", "neuromod", "retro"])
def test_cases_are_valid_without_the_mutation(rule):
    for backend in ("cpu", "reference"):
        hebbkern.plastic_step(**base(rule, fanout=rule != "hebb"), backend=backend)


def raw(kw):
    return [
        kw["u"], kw["h"], kw["hebb"], kw.get("elig"), kw["w"], kw["alpha"], kw.get("clamp_mask"),
        kw.get("eta"), kw.get("mod_w"), kw.get("mod_b"), kw.get("fanout_w"), kw.get("fanout_b"),
        kw["rule"], float(kw["clip"]),
    ]  # fmt: skip


RAW_CASES = [
    ("u-rank", 0, randn(B, N, 1)),
    ("h-short", 1, randn(B, N - 1)),
    ("hebb-short", 2, randn(B, N, N - 1)),
    ("elig-short", 3, randn(B, N - 1, N)),
    ("w-short", 4, randn(N - 1, N)),
    ("alpha-short", 5, randn(N - 1)),
    ("clamp-short", 6, torch.zeros(B, N - 1, dtype=torch.bool)),
    ("eta-vector", 7, randn(3)),
    ("mod_w-short", 8, randn(N - 1)),
    ("fanout_w-short", 10, randn(N - 1)),
    ("w-dtype", 4, randn(N, N, dtype=torch.float32)),
]


@pytest.mark.parametrize("index, value", [pytest.param(*c[1:], id=c[0]) for c in RAW_CASES])
def test_raw_op_checks_shapes(index, value):
    args = raw(base("retro", fanout=True))
    args[index] = value
    with pytest.raises((ValueError, TypeError), match="hebbkern::plastic_step"):
        torch.ops.hebbkern.plastic_step_fwd(*args)


def test_raw_backward_op_checks_shapes():
    args = raw(base("retro", fanout=True))
    h_new, hebb_new, elig_new, mod = torch.ops.hebbkern.plastic_step_fwd(*args)
    bad_grad = randn(B, N, N - 1)
    with pytest.raises(ValueError, match="grad_hebb must have shape"):
        torch.ops.hebbkern.plastic_step_bwd(None, bad_grad, None, *args[:6], h_new, mod, *args[6:])
    with pytest.raises(ValueError, match="mod must have shape"):
        torch.ops.hebbkern.plastic_step_bwd(None, None, None, *args[:6], h_new, mod[:1], *args[6:])
