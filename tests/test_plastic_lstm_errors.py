"""Bad input to ``hebbkern.plastic_lstm`` (and to the raw ``torch.ops.hebbkern.plastic_lstm_*``
ops) raises a clear error before any kernel runs; nothing crashes or reads out of bounds."""

from __future__ import annotations

import pytest
import torch
from lstm_helpers import make_lstm_inputs

import hebbkern


def base(rule="neuromod"):
    kw = make_lstm_inputs(rule, "per_neuron", True, T=3, B=2, N=4, requires_grad=False)
    return kw


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize(
    "change, exc, match",
    [
        ({"u": [1.0]}, TypeError, "u must be a torch.Tensor"),
        ({"u": torch.zeros(3, 2, 16, dtype=torch.int64)}, TypeError, "floating-point"),
        ({"u": torch.zeros(3, 2, 15, dtype=torch.float64)}, ValueError, r"\[T, B, 4 \* N\]"),
        ({"u": torch.zeros(0, 2, 16, dtype=torch.float64)}, ValueError, "at least one step"),
        ({"wh": torch.zeros(4, 4, dtype=torch.float64)}, ValueError, "wh must have shape"),
        ({"wh": torch.zeros(4, 16)}, TypeError, "wh must have dtype"),
        ({"alpha": torch.zeros(3, dtype=torch.float64)}, ValueError, "alpha must have shape"),
        ({"rule": "nope"}, ValueError, "rule must be one of"),
        ({"clip": 0.0}, ValueError, "clip must be > 0"),
        ({"clip": "2"}, TypeError, "clip must be a positive float"),
        ({"eta": 0.1}, ValueError, "eta is not used"),
        ({"mod_w": None}, ValueError, "needs mod_w"),
        ({"mod_w": torch.zeros(5, dtype=torch.float64)}, ValueError, "mod_w must have shape"),
        ({"fanout_b": None}, ValueError, "fanout_w and fanout_b"),
        ({"mod_b": torch.zeros(2, dtype=torch.float64)}, ValueError, "mod_b must be a 0-dim"),
        ({"h0": torch.zeros(2, 5, dtype=torch.float64)}, ValueError, "h0 must have shape"),
        ({"c0": torch.zeros(3, 4, dtype=torch.float64)}, ValueError, "c0 must have shape"),
        ({"hebb0": torch.zeros(2, 4, 5, dtype=torch.float64)}, ValueError, "hebb0 must have"),
        ({"elig0": torch.zeros(2, 4, 4, dtype=torch.float64)}, ValueError, "elig0 only applies"),
    ],
)
def test_bad_arguments(change, exc, match, backend):
    kw = base()
    kw.update(change)
    with pytest.raises(exc, match=match):
        hebbkern.plastic_lstm(**kw, backend=backend)


def test_rule_specific_arguments():
    kw = base("hebb")
    kw.pop("eta")
    with pytest.raises(ValueError, match="needs eta"):
        hebbkern.plastic_lstm(**kw)
    kw = base("hebb")
    kw["mod_w"] = torch.zeros(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="only applies to the modulated rules"):
        hebbkern.plastic_lstm(**kw)


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be"):
        hebbkern.plastic_lstm(**base(), backend="gpu")


def _fwd_args(kw, **over):
    d = dict(kw)
    d.update(over)
    return (
        d["u"], d["wh"], d["alpha"], d.get("h0"), d.get("c0"), d.get("hebb0"), d.get("elig0"),
        d.get("eta"), d.get("mod_w"), d.get("mod_b"), d.get("fanout_w"), d.get("fanout_b"),
        d["rule"], d["clip"], d.get("K", 2),
    )  # fmt: skip


@pytest.mark.parametrize(
    "over, match",
    [
        # N comes from u ([T, B, 4N]): a u of 12 gate inputs asks for wh [3, 12].
        (
            {"u": torch.zeros(3, 2, 12, dtype=torch.float64)},
            r"wh must have shape \[N, 4N\] = \[3, 12\]",
        ),
        ({"u": torch.zeros(3, 2, 13, dtype=torch.float64)}, "u must be"),
        ({"wh": torch.zeros(4, 15, dtype=torch.float64)}, "wh must have shape"),
        ({"alpha": torch.zeros(5, dtype=torch.float64)}, "alpha must have shape"),
        ({"hebb0": torch.zeros(2, 4, 3, dtype=torch.float64)}, "hebb0 must have shape"),
        ({"h0": torch.zeros(3, 4, dtype=torch.float64)}, "h0 must have shape"),
        ({"mod_w": None}, "needs mod_w"),
        ({"fanout_b": None}, "fanout_w and fanout_b"),
        ({"mod_w": torch.zeros(4)}, "mod_w must have dtype"),
        ({"rule": "nope"}, "unknown rule"),
        ({"K": 0}, "ckpt_every"),
        ({"clip": -1.0}, "clip must be > 0"),
    ],
)
def test_raw_forward_op_checks(over, match):
    kw = base()
    with pytest.raises(ValueError, match=match):
        torch.ops.hebbkern.plastic_lstm_fwd(*_fwd_args(kw, **over))


def test_raw_backward_op_checks():
    kw = base()
    h, c, gates, hebb, elig, ck, eck, mod = torch.ops.hebbkern.plastic_lstm_fwd(*_fwd_args(kw))

    def bwd(**over):
        d = dict(grad_h=torch.ones_like(h), h=h, c=c, gates=gates, ck=ck, mod=mod, K=2)
        d.update(over)
        return torch.ops.hebbkern.plastic_lstm_bwd(
            d["grad_h"], None, None, None, kw["wh"], kw["alpha"], kw["h0"], kw["c0"], d["h"],
            d["c"], d["gates"], d["ck"], eck, d["mod"], None, kw["mod_w"], kw["mod_b"],
            kw["fanout_w"], kw["fanout_b"], "neuromod", kw["clip"], d["K"],
        )  # fmt: skip

    bwd()  # the unchanged call works
    for over, match in (
        ({"grad_h": torch.ones(3, 2, 5, dtype=torch.float64)}, "grad_h must have shape"),
        ({"c": c[:2]}, "c must have shape"),
        ({"gates": gates[..., :8]}, "gates must have shape"),
        ({"ck": ck[:1]}, "hebb_ckpt must have shape"),  # a checkpoint missing: would read past it
        ({"K": 1}, "hebb_ckpt must have shape"),
        ({"mod": mod[:, :1]}, "mod must have shape"),
    ):
        with pytest.raises(ValueError, match=match):
            bwd(**over)
