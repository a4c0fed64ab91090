"""The Triton plastic_lstm kernels on CPU tensors under the Triton interpreter, against the
reference.

Run by test_plastic_lstm_triton.py::test_interpreter_suite in its own pytest process with
``TRITON_INTERPRET=1`` set before triton is imported (the name does not match ``test_*.py``, so
the main test run does not collect this file). By hand::

    cd tests && TRITON_INTERPRET=1 python -m pytest interpret_plastic_lstm_triton.py -q

The interpreter runs the kernels with tiles of 4 rows by 8 columns (plastic_lstm_ops.py), so
N > 8 exercises several column blocks (and their per-block partial sums), partial last blocks,
and several row tiles. The host code (GEMMs, chunk loop, checkpoints) is the one a GPU runs.
"""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs TRITON_INTERPRET=1 set before triton is imported", allow_module_level=True)

from helpers import ETA_RULES, RULES, rel_err  # noqa: E402
from lstm_helpers import clone_kw, lstm_cases, make_lstm_inputs, run_lstm  # noqa: E402
from lstm_triton_checks import TOL, check_lstm_triton_against_reference  # noqa: E402

import hebbkern  # noqa: E402
from hebbkern.ops.plastic_rnn import checkpoint_interval  # noqa: E402

CPU = torch.device("cpu")
F32, F64 = torch.float32, torch.float64


@pytest.mark.parametrize("rule, alpha_kind, fanout, clip_mode, post", list(lstm_cases()))
def test_matches_reference(rule, alpha_kind, fanout, clip_mode, post, nan_poison):
    """T = 5 (K = 3: chunks of 3 and 2 steps), N = 11 (two column blocks, the second partial)."""
    kw = make_lstm_inputs(
        rule, alpha_kind, fanout, T=5, B=2, N=11, dtype=F32, seed=11, clip_mode=clip_mode,
        post=post,
    )  # fmt: skip
    check_lstm_triton_against_reference(kw, CPU, TOL[F32])


@pytest.mark.parametrize(
    "rule, alpha_kind, fanout, clip_mode, post",
    [("neuromod", "per_neuron", True, "update", "candidate"),
     ("retro", "per_connection", True, "update", "candidate"),
     ("oja", "scalar", False, "update", "candidate"),
     ("retro", "per_neuron", True, "read", "drive"),
     ("neuromod", "per_connection", False, "read", "cell"),
     ("gated", "per_connection", True, "update", "hidden")],
)  # fmt: skip
def test_float64_tight(rule, alpha_kind, fanout, clip_mode, post, nan_poison):
    """The kernels are dtype-generic: in float64 they match the reference to 1e-8."""
    kw = make_lstm_inputs(
        rule, alpha_kind, fanout, T=6, B=2, N=10, seed=3, clip_mode=clip_mode, post=post
    )
    check_lstm_triton_against_reference(kw, CPU, TOL[F64])


ODD_SHAPES = [
    (1, 3, 7),  # T = 1
    (7, 1, 9),  # B = 1
    (5, 2, 1),  # N = 1
    (3, 2, 17),  # three column blocks
    (10, 2, 7),  # K = 4: chunks 4, 4, 2
]


@pytest.mark.parametrize("shape", ODD_SHAPES, ids=lambda s: "T{}-B{}-N{}".format(*s))
@pytest.mark.parametrize(
    "rule, alpha_kind, clip_mode, post",
    [("neuromod", "per_neuron", "update", "candidate"),
     ("retro", "per_connection", "update", "candidate"),
     ("clip", "per_neuron", "read", "drive"), ("gated", "per_connection", "update", "cell")],
)  # fmt: skip
def test_odd_sizes(shape, rule, alpha_kind, clip_mode, post, nan_poison):
    T, B, N = shape
    kw = make_lstm_inputs(
        rule, alpha_kind, True, T=T, B=B, N=N, dtype=F32, seed=T + N, clip_mode=clip_mode,
        post=post,
    )  # fmt: skip
    check_lstm_triton_against_reference(kw, CPU, TOL[F32], require_nonzero=False)


def test_empty_batch():
    kw = make_lstm_inputs("retro", "per_neuron", True, T=3, B=0, N=4, dtype=F32)
    h, st = hebbkern.plastic_lstm(**kw, backend="triton")
    assert h.shape == (3, 0, 4) and st.hebb.shape == (0, 4, 4) and st.elig.shape == (0, 4, 4)
    g = torch.autograd.grad(h.sum() + st.hebb.sum(), [kw["wh"], kw["alpha"], kw["eta"]])
    assert all(x.abs().sum() == 0 for x in g)


@pytest.mark.parametrize(
    "rule, loss_on",
    [("hebb", ("h",)), ("oja", ("hebb",)), ("neuromod", ("state_c",)), ("retro", ("elig",)),
     ("retro", ("state_h", "hebb"))],
)  # fmt: skip
def test_each_output_alone(rule, loss_on, nan_poison):
    """The backward with some output gradients absent (None)."""
    kw = make_lstm_inputs(rule, "per_connection", True, T=6, B=2, N=7, dtype=F32, seed=5)
    check_lstm_triton_against_reference(kw, CPU, TOL[F32], loss_on=loss_on, require_nonzero=False)


@pytest.mark.parametrize("rule", RULES)
def test_optional_inputs_omitted(rule, nan_poison):
    """No h0 / c0 / hebb0 / elig0 / mod_b: zeros are used, only the given inputs get gradients."""
    kw = make_lstm_inputs(rule, "per_neuron", False, T=5, B=2, N=6, dtype=F32, seed=3)
    for k in ("h0", "c0", "hebb0", "elig0", "mod_b"):
        kw.pop(k, None)
    if rule in ETA_RULES:
        kw["eta"] = 0.3
    check_lstm_triton_against_reference(kw, CPU, TOL[F32])


def test_non_contiguous_inputs(nan_poison):
    kw = make_lstm_inputs("retro", "per_connection", True, T=5, B=3, N=8, dtype=F32, seed=9)
    nc = clone_kw(kw)
    for k in ("u", "h0", "c0"):
        nc[k] = kw[k].detach().transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
    for k in ("wh", "alpha", "hebb0", "elig0"):
        nc[k] = kw[k].detach().transpose(-1, -2).contiguous().transpose(-1, -2).requires_grad_()
    assert not nc["u"].is_contiguous() and not nc["hebb0"].is_contiguous()
    o_nc, g_nc = run_lstm(nc, "triton")
    o_c, g_c = run_lstm(clone_kw(kw), "triton")
    for k in o_c:
        assert torch.equal(o_nc[k], o_c[k]), k
    for k in g_c:
        assert torch.equal(g_nc[k], g_c[k]), k


@pytest.mark.parametrize("ckpt_every", [1, 2, 4, 9])
def test_checkpoint_interval_does_not_change_results(ckpt_every, monkeypatch):
    """Chunks of 1 step, uneven chunks (9 = 4 + 4 + 1), and one chunk: the same gradients."""
    import sys

    mod = sys.modules["hebbkern.ops.plastic_lstm"]  # the module (the package exports the function)
    kw = make_lstm_inputs("retro", "per_neuron", True, T=9, B=2, N=9, seed=4)
    o_ref, g_ref = run_lstm(clone_kw(kw), "reference")
    monkeypatch.setattr(mod, "checkpoint_interval", lambda T, needs_grad=True: ckpt_every)
    o, g = run_lstm(clone_kw(kw), "triton")
    for k in o_ref:
        assert rel_err(o[k], o_ref[k]) < TOL[F64], k
    for k in g_ref:
        assert rel_err(g[k], g_ref[k]) < TOL[F64], k


def test_deterministic():
    """No atomics, partial sums in a fixed order: two runs give the same bits."""
    kw = make_lstm_inputs("neuromod", "per_connection", True, T=6, B=3, N=13, dtype=F32, seed=2)
    o1, g1 = run_lstm(clone_kw(kw), "triton")
    o2, g2 = run_lstm(clone_kw(kw), "triton")
    for k in o1:
        assert torch.equal(o1[k], o2[k]), k
    for k in g1:
        assert torch.equal(g1[k], g2[k]), k


def test_no_grad_matches_grad_mode():
    kw = make_lstm_inputs("neuromod", "per_neuron", True, T=7, B=2, N=6, dtype=F32, seed=1)
    h1, s1 = hebbkern.plastic_lstm(**kw, backend="triton")
    with torch.no_grad():
        h2, s2 = hebbkern.plastic_lstm(**kw, backend="triton")
    assert torch.equal(h1.detach(), h2) and torch.equal(s1.hebb.detach(), s2.hebb)
    assert checkpoint_interval(7, needs_grad=False) == 7


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_run_with_float32_state(dtype):
    """Half inputs are cast to float32 for the kernels: the result equals the float32 run of the
    same (rounded) inputs, cast back."""
    kw = make_lstm_inputs("neuromod", "per_neuron", True, T=4, B=2, N=9, dtype=dtype, seed=8)
    h, st = hebbkern.plastic_lstm(**kw, backend="triton")
    assert h.dtype == dtype and st.hebb.dtype == dtype and st.c.dtype == dtype
    h32, st32 = hebbkern.plastic_lstm(**clone_kw(kw, F32), backend="triton")
    assert torch.equal(h, h32.to(dtype)) and torch.equal(st.hebb, st32.hebb.to(dtype))
    g = torch.autograd.grad(h.float().sum() + st.c.float().sum(), [kw["u"], kw["wh"]])
    assert all(x.dtype == dtype and torch.isfinite(x).all() for x in g)


@pytest.mark.parametrize("rule", ["neuromod", "retro", "oja"])
def test_opcheck_schema_autograd_fake(rule):
    """opcheck's schema, autograd-registration and fake-tensor tests on both ops (the AOT-dispatch
    test needs kernels that trace, i.e. a GPU: test_plastic_lstm_triton.py::test_cuda_opcheck)."""
    from hebbkern.triton.plastic_lstm_ops import plastic_lstm_triton_fwd  # noqa: F401

    utils = ("test_schema", "test_autograd_registration", "test_faketensor")
    kw = make_lstm_inputs(rule, "per_connection", rule != "oja", T=4, B=2, N=5, seed=7, dtype=F32)
    args = (
        kw["u"], kw["wh"], kw["alpha"], kw["h0"], kw["c0"], kw["hebb0"], kw.get("elig0"),
        kw.get("eta"), kw.get("mod_w"), kw.get("mod_b"), kw.get("fanout_w"), kw.get("fanout_b"),
        rule, kw["clip"], 2,
    )  # fmt: skip
    fwd = torch.ops.hebbkern.plastic_lstm_triton_fwd.default
    torch.library.opcheck(fwd, args, test_utils=utils)
    with torch.no_grad():
        h, c, gates, hebb, elig, ck, eck, mod = fwd(*args)
    d = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    bargs = (
        torch.randn_like(h), torch.randn_like(c), torch.randn_like(hebb),
        torch.randn_like(elig) if rule == "retro" else None, d["wh"], d["alpha"], d["h0"],
        d["c0"], h, c, gates, ck, eck, mod, d.get("eta"), d.get("mod_w"), d.get("mod_b"),
        d.get("fanout_w"), d.get("fanout_b"), rule, kw["clip"], 2,
    )  # fmt: skip
    torch.library.opcheck(
        torch.ops.hebbkern.plastic_lstm_triton_bwd.default, bargs, test_utils=utils[:1] + utils[2:]
    )
