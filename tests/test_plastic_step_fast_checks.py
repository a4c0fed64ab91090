"""The fast path of ``plastic_step``'s argument checks (hebbkern/_step_checks.py) accepts only
what the full checks accept, returns what they return, and leaves every error to them.

- Every bad input of the error tests (test_plastic_step_errors.py) and more (dtype and device of
  each tensor, expanded views, float masks, the variants' types and ranges, huge ints, numpy
  scalars): the fast path declines it, and ``plastic_step`` raises the full checks' error.
- Hypothesis: canonical arguments with up to three of them replaced by another form (a paper
  shape, a view, a Parameter, a bad value): when the fast path accepts, the full checks accept
  and return the same objects; whatever the full checks raise, the public entry raises too.
- The forms an agent loop and ``nn.PlasticRNNCell`` pass do take the fast path (the speed-up
  cannot be lost silently).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_step import step_inputs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_plastic_step_errors import CASES, base

import hebbkern
from hebbkern._guards import check_materialisable
from hebbkern._step_checks import check_plastic_step_call, fast_plastic_step_args
from hebbkern._validation import PlasticStepArgs, check_plastic_step_args
from hebbkern._variants import check_with_variants

F32, F64 = torch.float32, torch.float64
META = torch.device("meta")
NAMES = ("u", "h", "hebb", "w", "alpha", "rule", "eta", "mod_w", "mod_b", "fanout_w",
         "fanout_b", "clip", "elig", "clamp_mask", "activation", "mod_squash", "soft_clip",
         "n_modulated")  # fmt: skip
DEFAULTS = {
    "eta": None, "mod_w": None, "mod_b": None, "fanout_w": None, "fanout_b": None, "clip": 1.0,
    "elig": None, "clamp_mask": None, "activation": "tanh", "mod_squash": "tanh",
    "soft_clip": False, "n_modulated": None,
}  # fmt: skip


def positional(kw: dict) -> tuple:
    """``check_plastic_step_call``'s positional arguments from ``plastic_step``'s keywords."""
    full = {**DEFAULTS, **kw}
    return tuple(full[k] for k in NAMES)


def full_checks(args: tuple):
    """The checks ``plastic_step`` made before the fast path (main 9d13a99)."""
    u, h, hebb, w, alpha = args[:5]
    kw = dict(zip(NAMES[5:], args[5:], strict=True))
    a, v = check_with_variants(check_plastic_step_args, u, h, hebb, w, alpha, **kw)
    check_materialisable(
        u=a.u, h=a.h, hebb=a.hebb, w=a.w, alpha=a.alpha, elig=a.elig, clamp_mask=a.clamp_mask
    )
    return a, v


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except (TypeError, ValueError) as e:
        return ("error", type(e), str(e))


FIELDS = tuple(PlasticStepArgs.__dataclass_fields__)


def assert_same_result(got, want, args: tuple, strict: bool = True) -> None:
    """Same ``(PlasticStepArgs, Variants)``. ``strict`` (a fast-path result): the caller's
    tensor objects themselves, or, where a number became a 0-dim tensor, equal new ones. Else
    (two runs of the full checks, which make views of the papers' shapes and a bool copy of a
    float mask on each call): equal tensors, views of the same base."""
    (ga, gv), (wa, wv) = got, want
    assert gv == wv and gv.code == wv.code
    given = [id(x) for x in args if isinstance(x, torch.Tensor)]
    for f in FIELDS:
        x, y = getattr(ga, f), getattr(wa, f)
        if not isinstance(y, torch.Tensor):
            assert type(x) is type(y) and x == y, f
            continue
        assert isinstance(x, torch.Tensor), f
        if x is y:
            continue
        assert x.shape == y.shape and x.dtype == y.dtype and x.device == y.device, f
        if strict:  # only a scalar made from a Python number may differ in identity
            assert id(x) not in given and id(y) not in given and x.dim() == 0, f
        else:
            assert x._base is y._base, f
        if x.device.type != "meta":
            torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True, msg=f)


def check_agree(args: tuple) -> bool:
    """The fast path against the full checks on ``args``; True when the fast path accepted."""
    fast = fast_plastic_step_args(*args)  # never raises
    full = outcome(full_checks, args)
    call = outcome(check_plastic_step_call, *args)
    if fast is not None:
        assert full[0] == "ok", f"fast path accepted what the full checks refuse: {full}"
        assert_same_result(fast, full[1], args)
    if full[0] == "error":
        assert call == full
    else:
        assert call[0] == "ok"
        assert_same_result(call[1], full[1], args, strict=fast is not None)
    return fast is not None


# ---------------------------------------------------------------------------------------------
# Every bad input: declined by the fast path, the full checks' error from plastic_step.


@pytest.mark.parametrize("rule, mutate, exc, match", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_error_cases_are_declined(rule, mutate, exc, match):
    kw = base(rule)
    mutate(kw)
    kw.setdefault("rule", "hebb")
    args = positional(kw)
    assert fast_plastic_step_args(*args) is None
    with pytest.raises(exc, match=match):
        check_plastic_step_call(*args)
    check_agree(args)


B, N = 3, 4


def r(*shape, dtype=F64, device="cpu"):
    return torch.randn(shape, dtype=dtype, device=device)


def huge_expanded(*shape):
    return torch.zeros((1,) * len(shape), dtype=F64).expand(*shape)


def good(rule: str, **extra) -> dict:
    kw = step_inputs(rule, "per_connection", rule in ("neuromod", "retro"), True, B=B, N=N,
                     requires_grad=False)  # fmt: skip
    kw.update(extra)
    return kw


# (name, rule, edits, exception, start of the message): beyond the error tests' cases.
MORE_BAD = [
    ("u-f32", "hebb", {"u": r(B, N, dtype=F32)}, TypeError, "h must have dtype"),
    ("u-int", "hebb", {"u": torch.ones(B, N, dtype=torch.int32)}, TypeError, "u must be a floating"),
    ("u-complex", "hebb", {"u": r(B, N, dtype=torch.complex64)}, TypeError, "u must be a floating"),
    ("u-meta", "hebb", {"u": r(B, N, device=META)}, ValueError, "h must be on meta"),
    ("h-meta", "hebb", {"h": r(B, N, device=META)}, ValueError, "h must be on cpu"),
    ("h-list", "hebb", {"h": [[0.0] * N] * B}, TypeError, "h must be a torch.Tensor"),
    ("hebb-f32", "hebb", {"hebb": r(B, N, N, dtype=F32)}, TypeError, "hebb must have dtype"),
    ("hebb-None", "hebb", {"hebb": None}, TypeError, "hebb must be a torch.Tensor"),
    ("w-meta", "hebb", {"w": r(N, N, device=META)}, ValueError, "w must be on cpu"),
    ("w-vector", "hebb", {"w": r(N)}, ValueError, "w must have shape"),
    ("alpha-f32", "hebb", {"alpha": r(N, N, dtype=F32)}, TypeError, "alpha must have dtype"),
    ("alpha-meta", "hebb", {"alpha": r(N, device=META)}, ValueError, "alpha must be on cpu"),
    ("alpha-float", "hebb", {"alpha": 0.5}, TypeError, "alpha must be a torch.Tensor"),
    ("alpha-[B,N]", "hebb", {"alpha": r(B, N)}, ValueError, "alpha must have shape"),
    ("eta-f32", "hebb", {"eta": r(dtype=F32)}, TypeError, "eta must have dtype"),
    ("eta-meta", "hebb", {"eta": r(device=META)}, ValueError, "eta must be on cpu"),
    ("eta-bool", "hebb", {"eta": True}, TypeError, "eta must be a float"),
    ("eta-None-oja", "oja", {"eta": None}, ValueError, "rule 'oja' needs eta"),
    ("eta-gated", "gated", {"eta": 0.1}, ValueError, "eta is not used by rule 'gated'"),
    ("mod_w-f32", "neuromod", {"mod_w": r(N, dtype=F32)}, TypeError, "mod_w must have dtype"),
    ("mod_w-[N,1]", "neuromod", {"mod_w": r(N, 1)}, ValueError, "mod_w must have shape"),
    ("mod_b-f32", "neuromod", {"mod_b": r(dtype=F32)}, TypeError, "mod_b must have dtype"),
    ("mod_b-[2]", "neuromod", {"mod_b": r(2)}, ValueError, "mod_b must be a 0-dim tensor"),
    ("mod_b-str", "neuromod", {"mod_b": "0"}, TypeError, "mod_b must be a float"),
    ("mod_b-hebb", "hebb", {"mod_b": 0.0}, ValueError, "mod_b only applies"),
    ("fanout_b-only", "neuromod", {"fanout_w": None}, ValueError, "fanout_w and fanout_b"),
    ("fanout_b-shape", "neuromod", {"fanout_b": r(N, 1)}, ValueError, "fanout_b must have shape"),
    ("fanout_b-f32", "neuromod", {"fanout_b": r(N, dtype=F32)}, TypeError, "fanout_b must have"),
    ("fanout_w-shape", "retro", {"fanout_w": r(1, N)}, ValueError, "fanout_w must have shape"),
    ("fanout-hebb", "hebb", {"fanout_w": r(N), "fanout_b": r(N)}, ValueError, "fanout_w only"),
    ("elig-f32", "retro", {"elig": r(B, N, N, dtype=F32)}, TypeError, "elig must have dtype"),
    ("elig-neuromod", "neuromod", {"elig": r(B, N, N)}, ValueError, "elig only applies"),
    ("clip-nan", "clip", {"clip": float("nan")}, ValueError, "clip must be > 0"),
    ("clip-neg-int", "clip", {"clip": -2}, ValueError, "clip must be > 0"),
    ("clip-bool", "clip", {"clip": True}, TypeError, "clip must be a positive float"),
    ("clip-huge-int", "clip", {"clip": 10**400}, OverflowError, "int too large"),
    ("eta-huge-int", "hebb", {"eta": 10**400}, OverflowError, "int too large"),
    ("clamp-half", "hebb", {"clamp_mask": torch.full((B, N), 0.5, dtype=F64)}, ValueError,
     "clamp_mask must hold only 0 and 1"),
    ("clamp-grad", "hebb", {"clamp_mask": torch.ones(B, N, dtype=F64, requires_grad=True)},
     ValueError, "clamp_mask must not require grad"),
    ("clamp-meta", "hebb", {"clamp_mask": torch.ones(B, N, dtype=torch.bool, device=META)},
     ValueError, "clamp_mask must be on cpu"),
    ("activation", "hebb", {"activation": "gelu"}, ValueError, "activation must be one of"),
    ("activation-int", "hebb", {"activation": 0}, ValueError, "activation must be one of"),
    ("mod_squash", "neuromod", {"mod_squash": "relu"}, ValueError, "mod_squash must be one of"),
    ("soft_clip-int", "clip", {"soft_clip": 1}, TypeError, "soft_clip must be a bool"),
    ("soft_clip-hebb", "hebb", {"soft_clip": True}, ValueError, "soft_clip applies to"),
    ("n_mod-bool", "neuromod", {"n_modulated": True}, TypeError, "n_modulated must be an int"),
    ("n_mod-float", "neuromod", {"n_modulated": 1.0}, TypeError, "n_modulated must be an int"),
    ("n_mod-range", "neuromod", {"n_modulated": N + 1}, ValueError, "n_modulated must lie in"),
    ("n_mod-hebb", "hebb", {"n_modulated": 1}, ValueError, "n_modulated applies to rule"),
    ("n_mod-no-eta", "neuromod", {"n_modulated": 1}, ValueError, "rule 'neuromod' with n_mod"),
    ("n_mod-eta-vector", "neuromod", {"n_modulated": 1, "eta": r(2)}, ValueError,
     "eta must be a 0-dim"),
    ("rule-int", "hebb", {"rule": 1}, ValueError, "rule must be one of"),
    ("rule-list", "hebb", {"rule": ["hebb"]}, ValueError, "rule must be one of"),
    ("u-expanded-huge", "hebb", {"u": huge_expanded(2**15, 2**8), "h": huge_expanded(2**15, 2**8),
     "hebb": huge_expanded(2**15, 2**8, 2**8), "w": huge_expanded(2**8, 2**8),
     "alpha": huge_expanded(2**8, 2**8), "eta": 0.1, "clamp_mask": None}, ValueError,
     "hebb is an expanded view"),
    ("w-expanded-huge", "hebb", {"u": r(2, 2**14), "h": r(2, 2**14),
     "hebb": huge_expanded(2, 2**14, 2**14), "w": huge_expanded(2**14, 2**14),
     "alpha": huge_expanded(2**14, 2**14), "clamp_mask": None}, ValueError,
     "hebb is an expanded view"),
]  # fmt: skip


@pytest.mark.parametrize(
    "rule, edits, exc, start", [pytest.param(*c[1:], id=c[0]) for c in MORE_BAD]
)
def test_more_bad_inputs_are_declined(rule, edits, exc, start):
    kw = {**good(rule), "rule": rule, **edits}
    args = positional(kw)
    assert fast_plastic_step_args(*args) is None
    with pytest.raises(exc) as info:
        hebbkern.plastic_step(**kw, backend="cpu")
    assert str(info.value).startswith(start), str(info.value)
    if exc is not OverflowError:  # outcome() compares ValueError / TypeError only
        check_agree(args)


# ---------------------------------------------------------------------------------------------
# Hypothesis: canonical arguments with some replaced by other forms, good or bad.


def candidates(name: str, rule: str, b: int, n: int) -> list:
    """Other values of ``name``: the papers' shapes, views, Parameters, and bad ones."""
    rn = lambda *s, **k: torch.randn(s, dtype=k.get("dtype", F64), device=k.get("device", "cpu"))  # noqa: E731
    vec = {
        "u": [
            rn(b, n).mT.contiguous().mT,
            rn(b, n, dtype=F32),
            rn(1, b, n),
            rn(n, b).t(),
            rn(1, n).expand(b, n),
            [[0.0] * n] * b,
            None,
        ],
        "h": [
            rn(b, n, dtype=F32),
            rn(b, n + 1),
            rn(n, b).t(),
            rn(b, n, device=META),
            None,
            torch.nn.Parameter(rn(b, n)),
        ],
        "hebb": [
            rn(n, n),
            rn(b, n, n).mT,
            rn(1, n, n).expand(b, n, n),
            rn(b, n, n + 1),
            rn(b, n, n, dtype=F32),
            rn(b, n, n, device=META),
            rn(n, n).expand(b, n, n),
        ],
        "w": [
            rn(b, n, n),
            rn(n, n).t(),
            torch.nn.Parameter(rn(n, n)),
            rn(n, n + 1),
            rn(b + 1, n, n),
            rn(n, n, dtype=F32),
            rn(1, n, n),
            rn(n),
        ],
        "alpha": [
            rn(n),
            rn(),
            rn(1),
            rn(1, 1, n),
            rn(b, n, n),
            rn(b, n),
            rn(n + 1),
            rn(1, 1, 1),
            torch.nn.Parameter(rn(n, n)),
            rn(n, n).t(),
            rn(n, n, dtype=F32),
            rn(1, n),
            rn(n, n, device=META),
            0.1,
        ],
        "rule": ["hebb", "oja", "clip", "neuromod", "retro", "gated", "bcm", 2],
        "eta": [
            None,
            0.1,
            1,
            -3,
            float("nan"),
            True,
            rn(),
            rn(1),
            rn(2),
            rn(b),
            rn(dtype=F32),
            rn(device=META),
            np.float64(0.1),
            "0.1",
            10**30,
        ],
        "mod_w": [
            None,
            rn(n),
            rn(1, n),
            rn(n, 1),
            rn(n + 1),
            rn(n, dtype=F32),
            torch.nn.Parameter(rn(n)),
        ],
        "mod_b": [None, 0.3, 2, rn(), rn(1), rn(2), rn(dtype=F32), torch.nn.Parameter(rn()), "x"],
        "fanout_w": [None, rn(n), rn(n, 1), rn(1, n), rn(n + 1)],
        "fanout_b": [None, rn(n), rn(n + 1), rn(n, 1), rn(n, dtype=F32)],
        "clip": [1.0, 2, 0.0, -1.0, float("nan"), float("inf"), True, "1", np.float64(2.0), 0],
        "elig": [
            None,
            rn(b, n, n),
            rn(n, n),
            rn(b, n, n + 1),
            rn(b, n, n, dtype=F32),
            rn(b, n, n).mT,
        ],
        "clamp_mask": [
            None,
            torch.rand(b, n) > 0.5,
            (torch.rand(b, n) > 0.5).to(F64),
            torch.full((b, n), 0.5, dtype=F64),
            torch.zeros(b, n, dtype=torch.int64),
            torch.zeros(b, n + 1, dtype=torch.bool),
            torch.zeros(n, b).bool().t(),
            torch.zeros(1, n, dtype=torch.bool).expand(b, n),
            "mask",
        ],
        "activation": ["tanh", "relu", "selu", "sigmoid", "identity", "gelu", None],
        "mod_squash": ["tanh", "sigmoid", "identity", "relu"],
        "soft_clip": [False, True, 0, 1, None],
        "n_modulated": [None, 0, 1, n // 2, n, n + 1, -1, True, 1.0, np.int64(1)],
    }
    return vec[name]


EDITABLE = NAMES


@st.composite
def step_args(draw):
    rule = draw(st.sampled_from(["hebb", "oja", "clip", "neuromod", "retro", "gated"]))
    b, n = draw(st.integers(0, 3)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([F64, F32]))
    kw = step_inputs(rule, draw(st.sampled_from(["per_connection", "per_neuron", "scalar"])),
                     draw(st.booleans()) and rule in ("neuromod", "retro", "gated"),
                     draw(st.booleans()), B=b, N=n, dtype=dtype,
                     requires_grad=draw(st.booleans()))  # fmt: skip
    kw["rule"] = rule
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(EDITABLE))
        kw[name] = draw(st.sampled_from(candidates(name, rule, b, n)))
    return positional(kw)


accepted = []


@settings(max_examples=600, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(step_args())
def test_fast_path_agrees_with_full_checks(args):
    accepted.append(check_agree(args))


def test_the_property_test_saw_both_outcomes():
    """The hypothesis test above is not vacuous: the fast path accepted some of its examples and
    declined others (runs after it, in file order)."""
    if not accepted:
        pytest.skip("run with the hypothesis test")
    assert 0 < sum(accepted) < len(accepted)


# ---------------------------------------------------------------------------------------------
# The forms the loops pass take the fast path.

FAST_FORMS = [
    ("maze", "neuromod", dict(clip=2.0)),
    ("maze-float-mod_b", "neuromod", dict(mod_b=0.1)),
    ("no-mod_b", "neuromod", dict(mod_b=None)),
    ("fanout-retro", "retro", {}),
    ("gated-sigmoid", "gated", dict(mod_squash="sigmoid")),
    ("hebb-float-eta", "hebb", dict(eta=0.01, clamp_mask=None)),
    ("oja-int-clip", "oja", dict(clip=2)),
    ("clip-soft", "clip", dict(soft_clip=True, activation="selu")),
    ("half-modulated", "neuromod", dict(n_modulated=2, eta=0.05)),
    ("all-modulated", "neuromod", dict(n_modulated=N)),
    ("per-neuron-alpha", "hebb", dict(alpha=r(N))),
    ("scalar-alpha", "hebb", dict(alpha=r())),
    ("per-sample", "hebb", dict(w=r(B, N, N), alpha=r(B, N, N))),
    ("transposed-w", "hebb", dict(w=r(N, N).t())),
]


@pytest.mark.parametrize("rule, extra", [pytest.param(*c[1:], id=c[0]) for c in FAST_FORMS])
def test_canonical_forms_take_the_fast_path(rule, extra):
    kw = {**good(rule), "rule": rule, **extra}
    args = positional(kw)
    assert fast_plastic_step_args(*args) is not None
    assert check_agree(args)


def test_plastic_rnn_cell_takes_the_fast_path(monkeypatch):
    """The cell's Parameters and carried state are canonical: its forward never needs the full
    checks (they are replaced by a failing stub here)."""
    import hebbkern._step_checks as sc

    def refuse(*args, **kwargs):
        raise AssertionError("full checks called")

    cell = hebbkern.nn.PlasticRNNCell(3, N, rule="neuromod", fanout=True, clip=2.0)
    state = None
    monkeypatch.setattr(sc, "check_with_variants", refuse)
    for _ in range(3):
        state = cell(torch.randn(B, 3), state)
    state.h.sum().backward()
    assert cell.w.grad is not None


def test_bad_variant_is_not_cached_as_good():
    """The variants' cache keeps only checked options: a bad n_modulated, then the same key
    with a good one, then the bad one again, each decided on its own."""
    kw = {**good("neuromod"), "rule": "neuromod"}
    with pytest.raises(ValueError, match="n_modulated must lie in"):
        hebbkern.plastic_step(**kw, eta=0.1, n_modulated=N + 1)
    hebbkern.plastic_step(**kw, eta=0.1, n_modulated=N)
    with pytest.raises(ValueError, match="n_modulated must lie in"):
        hebbkern.plastic_step(**kw, eta=0.1, n_modulated=N + 1)
    hebbkern.plastic_step(**kw, soft_clip=False)
    with pytest.raises(TypeError, match="soft_clip must be a bool"):
        hebbkern.plastic_step(**kw, soft_clip=0)  # 0 == False as a dict key


def test_while_compiling_the_full_checks_run(monkeypatch):
    """torch.compile and torch.export trace the full checks, as before the fast path."""
    import hebbkern._step_checks as sc

    calls = []
    monkeypatch.setattr(sc, "fast_plastic_step_args", lambda *a: calls.append(1))
    kw = {**good("hebb"), "rule": "hebb"}
    with torch.no_grad():
        hebbkern.plastic_step(**kw, backend="cpu")
    assert calls == [1]
    calls.clear()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    with torch.no_grad():
        hebbkern.plastic_step(**kw, backend="reference")
    assert calls == []


@pytest.mark.parametrize(
    "state, exc, message",
    [
        (torch.zeros(B, N), TypeError, "state must be a tuple (h, hebb, elig), got Tensor"),
        ([torch.zeros(B, N)], ValueError,
         "state must be a tuple (h, hebb, elig) of 2..3 items, got 1"),
        ((torch.zeros(B, N), None), TypeError, "state hebb must be a torch.Tensor, got NoneType"),
        ((torch.zeros(B, N), torch.zeros(B, N, N), 1.0), TypeError,
         "state elig must be a torch.Tensor, got float"),
    ],
)  # fmt: skip
def test_cell_state_messages(state, exc, message):
    """The cell's own per-step check of its state (its messages now built on failure only)."""
    cell = hebbkern.nn.PlasticRNNCell(3, N)
    with pytest.raises(exc) as info:
        cell(torch.randn(B, 3), state)
    assert str(info.value) == message
