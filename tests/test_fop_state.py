"""FOP's state: state_dict round-trips, a run resumed from a checkpoint continues bit-identically,
and a checkpoint written by one backend resumes on another."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from fop_helpers import small_cnn, train_steps
from helpers import rel_err

import hebbkern
from hebbkern.optim import FOP

needs_ext = pytest.mark.skipif(not hebbkern.extension_available(), reason="no compiled extension")
BACKENDS = [pytest.param("cpu", marks=needs_ext), "foreach", "reference"]
BASES = [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0)]
BASE_IDS = ["sgd", "momentum", "adam"]


def make(backend, base, momentum, dtype=torch.float64):
    model = small_cnn(dtype)
    opt = FOP(model.parameters(), lr=0.05, hyper_lr=0.5, base=base, momentum=momentum,
              weight_decay=1e-3, backend=backend)  # fmt: skip
    return model, opt


def roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("base", "momentum"), BASES, ids=BASE_IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_resume_is_bit_identical(backend, base, momentum, dtype):
    model, opt = make(backend, base, momentum, dtype)
    straight = train_steps(model, opt, 6, dtype)

    model2, opt2 = make(backend, base, momentum, dtype)
    first = train_steps(model2, opt2, 3, dtype)
    ckpt = roundtrip({"model": model2.state_dict(), "opt": opt2.state_dict()})
    del model2, opt2
    model3, opt3 = make(backend, base, momentum, dtype)
    model3.load_state_dict(ckpt["model"])
    opt3.load_state_dict(ckpt["opt"])
    rest = train_steps(model3, opt3, 3, dtype)

    assert first + rest == straight
    for a, b in zip(model3.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(model3.parameters(), model.parameters(), strict=True):
        for k, v in opt.state[b].items():
            assert torch.equal(opt3.state[a][k], v), k


@pytest.mark.parametrize(("base", "momentum"), BASES, ids=BASE_IDS)
def test_state_dict_roundtrip(base, momentum):
    model, opt = make("reference", base, momentum)
    train_steps(model, opt, 2)
    sd = roundtrip(opt.state_dict())
    opt2 = FOP(model.parameters(), lr=1.0, hyper_lr=1.0)
    opt2.load_state_dict(sd)
    sd2 = opt2.state_dict()
    assert sd2["param_groups"] == sd["param_groups"]
    for i, st in sd["state"].items():
        assert st.keys() == sd2["state"][i].keys()
        for k, v in st.items():
            assert torch.equal(sd2["state"][i][k], v)
    conv_w = sd["state"][0]
    expected = {"step", "M"} | {"sgd": {"prev_direction"}, "momentum": {"momentum_buffer"},
                                "adam": {"exp_avg", "exp_avg_sq", "prev_direction"}}[
        "momentum" if momentum else base]  # fmt: skip
    assert set(conv_w) == expected
    assert conv_w["M"].shape == (9, 9) and conv_w["step"].item() == 2
    assert set(sd["state"][1]) <= {"step", "momentum_buffer", "exp_avg", "exp_avg_sq"}  # a bias


@pytest.mark.parametrize(("base", "momentum"), BASES, ids=BASE_IDS)
@pytest.mark.parametrize(("first", "second"), [pytest.param("cpu", "reference", marks=needs_ext),
                                               ("reference", "foreach")])  # fmt: skip
def test_checkpoint_moves_between_backends(base, momentum, first, second):
    model, opt = make("reference", base, momentum)
    train_steps(model, opt, 6)

    model2, opt2 = make(first, base, momentum)
    train_steps(model2, opt2, 3)
    model3, opt3 = make(second, base, momentum)
    model3.load_state_dict(copy.deepcopy(model2.state_dict()))
    opt3.load_state_dict(copy.deepcopy(opt2.state_dict()))
    train_steps(model3, opt3, 3)
    for a, b in zip(model3.parameters(), model.parameters(), strict=True):
        assert rel_err(a, b) < 1e-10
