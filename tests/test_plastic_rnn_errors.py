"""Bad arguments of ``hebbkern.plastic_rnn``: each raises ``ValueError`` (shape, value, device) or
``TypeError`` (type, dtype) naming the argument, before any kernel runs, on both backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import DROP as _DROP
from helpers import make_inputs, setter

import hebbkern

T, B, N = 3, 2, 4
BACKENDS = ["cpu", "reference"]
META = torch.device("meta")


def base(rule="hebb", fanout=False):
    """Valid arguments (every optional input given) for ``rule``."""
    return make_inputs(rule, "per_connection", fanout, True, T=T, B=B, N=N, requires_grad=False)


f64 = torch.float64


def randn(*shape, dtype=f64, device="cpu"):
    return torch.randn(shape, dtype=dtype, device=device)


# (id, rule, mutation, exception, regex the message must match)
CASES = [
    # u
    ("u-rank2", "hebb", setter(u=lambda kw: kw["u"][0]), ValueError, r"^u must have shape \[T, B, N\]"),
    ("u-rank4", "hebb", setter(u=randn(T, B, N, 1)), ValueError, r"^u must have shape \[T, B, N\]"),
    ("u-T0", "hebb", setter(u=randn(0, B, N)), ValueError, r"^u must have at least one time step"),
    ("u-N0", "hebb", setter(u=randn(T, B, 0)), ValueError, r"^u must have at least one"),
    ("u-int", "hebb", setter(u=torch.ones(T, B, N, dtype=torch.int64)), TypeError, r"^u must be float16, bfloat16, float32 or float64"),
    ("u-bool", "hebb", setter(u=torch.ones(T, B, N, dtype=torch.bool)), TypeError, r"^u must be float16, bfloat16, float32 or float64"),
    ("u-float8", "hebb", setter(u=torch.ones(T, B, N).to(torch.float8_e4m3fn)), TypeError, r"^u must be float16, bfloat16, float32 or float64"),
    ("u-list", "hebb", setter(u=lambda kw: kw["u"].tolist()), TypeError, r"^u must be a torch.Tensor"),
    ("u-numpy", "hebb", setter(u=lambda kw: kw["u"].numpy()), TypeError, r"^u must be a torch.Tensor"),
    ("u-None", "hebb", setter(u=None), TypeError, r"^u must be a torch.Tensor"),
    # w
    ("w-rank1", "hebb", setter(w=randn(N)), ValueError, r"^w must have shape \[4, 4\]"),
    ("w-size", "hebb", setter(w=randn(N + 1, N + 1)), ValueError, r"^w must have shape \[4, 4\]"),
    ("w-nonsquare", "hebb", setter(w=randn(N, N + 1)), ValueError, r"^w must have shape"),
    ("w-int", "hebb", setter(w=torch.ones(N, N, dtype=torch.int32)), TypeError, r"^w must have dtype"),
    ("w-dtype", "hebb", setter(w=randn(N, N, dtype=torch.float32)), TypeError, r"^w must have dtype torch.float64"),
    ("w-device", "hebb", setter(w=randn(N, N, device=META)), ValueError, r"^w must be on cpu"),
    ("w-list", "hebb", setter(w=[[0.0] * N] * N), TypeError, r"^w must be a torch.Tensor"),
    # alpha
    ("alpha-size", "hebb", setter(alpha=randn(N + 1)), ValueError, r"^alpha must have shape"),
    ("alpha-rank3", "hebb", setter(alpha=randn(1, N, N)), ValueError, r"^alpha must have shape"),
    ("alpha-1xN", "hebb", setter(alpha=randn(1, N)), ValueError, r"^alpha must have shape"),
    ("alpha-int", "hebb", setter(alpha=torch.ones(N, N, dtype=torch.int64)), TypeError, r"^alpha must have dtype"),
    ("alpha-dtype", "hebb", setter(alpha=randn(N, dtype=torch.float32)), TypeError, r"^alpha must have dtype"),
    ("alpha-device", "hebb", setter(alpha=randn(N, N, device=META)), ValueError, r"^alpha must be on cpu"),
    ("alpha-float", "hebb", setter(alpha=0.5), TypeError, r"^alpha must be a torch.Tensor"),
    # h0, hebb0, elig0
    ("h0-rank1", "hebb", setter(h0=randn(N)), ValueError, r"^h0 must have shape \[2, 4\]"),
    ("h0-batch", "hebb", setter(h0=randn(B + 1, N)), ValueError, r"^h0 must have shape \[2, 4\]"),
    ("h0-dtype", "hebb", setter(h0=randn(B, N, dtype=torch.float32)), TypeError, r"^h0 must have dtype"),
    ("h0-device", "hebb", setter(h0=randn(B, N, device=META)), ValueError, r"^h0 must be on cpu"),
    ("hebb0-unbatched", "hebb", setter(hebb0=randn(N, N + 1)), ValueError, r"^hebb0 must have shape \[2, 4, 4\]"),
    ("hebb0-size", "oja", setter(hebb0=randn(B, N, N + 1)), ValueError, r"^hebb0 must have shape"),
    ("hebb0-dtype", "clip", setter(hebb0=randn(B, N, N, dtype=torch.float16)), TypeError, r"^hebb0 must have dtype"),
    ("hebb0-device", "hebb", setter(hebb0=randn(B, N, N, device=META)), ValueError, r"^hebb0 must be on cpu"),
    ("elig0-size", "retro", setter(elig0=randn(B + 1, N, N)), ValueError, r"^elig0 must have shape \[2, 4, 4\]"),
    ("elig0-dtype", "retro", setter(elig0=randn(B, N, N, dtype=torch.float32)), TypeError, r"^elig0 must have dtype"),
    ("elig0-device", "retro", setter(elig0=randn(B, N, N, device=META)), ValueError, r"^elig0 must be on cpu"),
    ("elig0-non-retro", "neuromod", setter(elig0=randn(B, N, N)), ValueError, r"^elig0 only applies to rule 'retro'"),
    ("elig0-hebb", "hebb", setter(elig0=randn(B, N, N)), ValueError, r"^elig0 only applies"),
    # rule
    ("rule-unknown", "hebb", setter(rule="hebbian"), ValueError, r"^rule must be one of"),
    ("rule-case", "hebb", setter(rule="Hebb"), ValueError, r"^rule must be one of"),
    ("rule-None", "hebb", setter(rule=None), ValueError, r"^rule must be one of"),
    # eta
    ("eta-missing", "hebb", setter(eta=_DROP), ValueError, r"needs eta"),
    ("eta-missing-retro", "retro", setter(eta=_DROP), ValueError, r"needs eta"),
    ("eta-for-neuromod", "neuromod", setter(eta=0.1), ValueError, r"^eta is not used by rule 'neuromod'"),
    ("eta-shape", "oja", setter(eta=randn(B + 1)), ValueError, r"^eta must be a 0-dim tensor"),  # [B]: per sample
    ("eta-dtype", "hebb", setter(eta=torch.tensor(0.1, dtype=torch.float32)), TypeError, r"^eta must have dtype"),
    ("eta-device", "hebb", setter(eta=torch.tensor(0.1, device=META, dtype=f64)), ValueError, r"^eta must be on cpu"),
    ("eta-str", "hebb", setter(eta="0.1"), TypeError, r"^eta must be a float"),
    ("eta-bool", "clip", setter(eta=True), TypeError, r"^eta must be a float"),
    # neuromodulator and fan-out
    ("mod_w-missing-neuromod", "neuromod", setter(mod_w=_DROP), ValueError, r"needs mod_w"),
    ("mod_w-missing-retro", "retro", setter(mod_w=_DROP), ValueError, r"needs mod_w"),
    ("mod_w-column", "neuromod", setter(mod_w=randn(N, 1)), ValueError, r"^mod_w must have shape \[4\]"),
    ("mod_w-size", "retro", setter(mod_w=randn(N + 1)), ValueError, r"^mod_w must have shape \[4\]"),
    ("mod_w-dtype", "neuromod", setter(mod_w=randn(N, dtype=torch.float32)), TypeError, r"^mod_w must have dtype"),
    ("mod_w-device", "neuromod", setter(mod_w=randn(N, device=META)), ValueError, r"^mod_w must be on cpu"),
    ("mod_w-numpy", "neuromod", setter(mod_w=np.zeros(N)), TypeError, r"^mod_w must be a torch.Tensor"),
    ("mod_b-shape", "neuromod", setter(mod_b=randn(N)), ValueError, r"^mod_b must be a 0-dim tensor"),
    ("mod_b-dtype", "retro", setter(mod_b=torch.tensor(0.0, dtype=torch.float32)), TypeError, r"^mod_b must have dtype"),
    ("fanout_w-size", "neuromod", setter(fanout_w=randn(N + 1), fanout_b=randn(N)), ValueError, r"^fanout_w must have shape \[4\]"),
    ("fanout_w-rank2", "retro", setter(fanout_w=randn(1, N), fanout_b=randn(N)), ValueError, r"^fanout_w must have shape"),
    ("fanout_b-size", "neuromod", setter(fanout_w=randn(N), fanout_b=randn(2 * N)), ValueError, r"^fanout_b must have shape"),
    ("fanout_w-dtype", "neuromod", setter(fanout_w=randn(N, dtype=torch.float32), fanout_b=randn(N)), TypeError, r"^fanout_w must have dtype"),
    ("fanout_w-device", "retro", setter(fanout_w=randn(N, device=META), fanout_b=randn(N)), ValueError, r"^fanout_w must be on cpu"),
    ("fanout-w-only", "neuromod", setter(fanout_w=randn(N), fanout_b=_DROP), ValueError, r"^fanout_w and fanout_b must be given together"),
    ("fanout-b-only", "retro", setter(fanout_w=_DROP, fanout_b=randn(N)), ValueError, r"^fanout_w and fanout_b must be given together"),
    ("fanout-for-hebb", "hebb", setter(fanout_w=randn(N), fanout_b=randn(N)), ValueError, r"^fanout_w only applies to the modulated rules"),
    ("fanout_b-for-clip", "clip", setter(fanout_b=randn(N)), ValueError, r"^fanout_b only applies"),
    ("mod_w-for-hebb", "hebb", setter(mod_w=randn(N)), ValueError, r"^mod_w only applies to the modulated rules"),
    ("mod_b-for-oja", "oja", setter(mod_b=0.5), ValueError, r"^mod_b only applies"),
    # clip
    ("clip-zero", "clip", setter(clip=0.0), ValueError, r"^clip must be > 0"),
    ("clip-negative", "neuromod", setter(clip=-1.0), ValueError, r"^clip must be > 0"),
    ("clip-nan", "retro", setter(clip=float("nan")), ValueError, r"^clip must be > 0"),
    ("clip-nan-hebb", "hebb", setter(clip=float("nan")), ValueError, r"^clip must be > 0"),
    ("clip-str", "clip", setter(clip="1"), TypeError, r"^clip must be a positive float"),
    ("clip-tensor", "clip", setter(clip=torch.tensor(1.0)), TypeError, r"^clip must be a positive float"),
    # clamp mask
    ("clamp-shape", "hebb", setter(clamp_mask=torch.ones(B, N, dtype=torch.bool)), ValueError, r"^clamp_mask must have shape \[T, B, N\]"),
    ("clamp-T", "hebb", setter(clamp_mask=torch.ones(T + 1, B, N, dtype=torch.bool)), ValueError, r"^clamp_mask must have shape"),
    ("clamp-int", "hebb", setter(clamp_mask=torch.ones(T, B, N, dtype=torch.int64)), TypeError, r"^clamp_mask must be a bool"),
    ("clamp-uint8", "retro", setter(clamp_mask=torch.ones(T, B, N, dtype=torch.uint8)), TypeError, r"^clamp_mask must be a bool"),
    ("clamp-device", "hebb", setter(clamp_mask=torch.ones(T, B, N, dtype=torch.bool, device=META)), ValueError, r"^clamp_mask must be on cpu"),
    ("clamp-list", "hebb", setter(clamp_mask=[[[True] * N] * B] * T), TypeError, r"^clamp_mask must be a torch.Tensor"),
]  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rule, mutate, exc, match", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_argument(rule, mutate, exc, match, backend):
    kw = base(rule, fanout=rule in ("neuromod", "retro"))
    mutate(kw)
    with pytest.raises(exc, match=match):
        hebbkern.plastic_rnn(**kw, backend=backend)


@pytest.mark.parametrize("rule, mutate, exc, match", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_reference_module_validates_too(rule, mutate, exc, match):
    """``hebbkern.reference.plastic_rnn`` (the oracle, also public) checks the same way."""
    kw = base(rule, fanout=rule in ("neuromod", "retro"))
    mutate(kw)
    with pytest.raises(exc, match=match):
        hebbkern.reference.plastic_rnn(**kw)


def test_cases_are_valid_without_the_mutation():
    """Every case starts from arguments that are accepted: the error really comes from the change."""
    for rule in ("hebb", "oja", "clip", "neuromod", "retro"):
        kw = base(rule, fanout=rule in ("neuromod", "retro"))
        for backend in BACKENDS:
            h, state = hebbkern.plastic_rnn(**kw, backend=backend)
            assert h.shape == (T, B, N) and torch.isfinite(h).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_accepted_scalar_forms(backend):
    """eta and mod_b as Python floats, 0-dim tensors or shape-[1] tensors; float 0/1 clamp masks."""
    kw = base("retro", fanout=True)
    ref, _ = hebbkern.plastic_rnn(**kw, backend=backend)
    for eta in (float(kw["eta"]), kw["eta"].reshape(1)):
        for mod_b in (float(kw["mod_b"]), kw["mod_b"].reshape(1)):
            h, _ = hebbkern.plastic_rnn(**{**kw, "eta": eta, "mod_b": mod_b}, backend=backend)
            torch.testing.assert_close(h, ref, rtol=1e-12, atol=0)
    h, _ = hebbkern.plastic_rnn(**{**kw, "clamp_mask": kw["clamp_mask"].double()}, backend=backend)
    torch.testing.assert_close(h, ref, rtol=1e-12, atol=0)
    assert kw["clamp_mask"].any()  # the mask clamps something: the comparison is not vacuous


def test_cpu_backend_needs_cpu_tensors():
    kw = base("hebb")
    kw = {k: v.to(META) if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
    with pytest.raises(ValueError, match="backend 'cpu' needs CPU tensors"):
        hebbkern.plastic_rnn(**kw, backend="cpu")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rule", ["hebb", "clip", "neuromod", "retro"])
def test_nan_input_propagates(rule, backend):
    """A NaN input gives NaN outputs where it reaches, without a crash, forward and backward; the
    other sample stays finite."""
    kw = make_inputs(rule, "per_connection", rule == "retro", False, T=5, B=2, N=6, seed=2)
    with torch.no_grad():
        kw["u"][1, 0, 2] = float("nan")
    h, state = hebbkern.plastic_rnn(**kw, backend=backend)
    assert torch.isfinite(h[0]).all()
    assert torch.isnan(h[1, 0, 2])
    assert torch.isnan(h[2:, 0]).all()
    assert torch.isfinite(h[:, 1]).all()
    assert torch.isnan(state.hebb[0]).any()
    assert torch.isfinite(state.hebb[1]).all()
    (h.sum() + state.hebb.sum()).backward()
    assert torch.isfinite(kw["u"].grad[:, 1]).all()
    assert torch.isnan(kw["u"].grad[:, 0]).any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_in_weights_propagates(backend):
    kw = make_inputs("neuromod", "per_neuron", True, False, T=4, B=2, N=5, seed=3)
    with torch.no_grad():
        kw["w"][0, 1] = float("nan")
    h, state = hebbkern.plastic_rnn(**kw, backend=backend)
    assert torch.isnan(h[1:]).any() and torch.isnan(state.hebb).any()
    h.sum().backward()  # no crash
