"""The fused FOP step's Triton kernels on CPU tensors under the Triton interpreter.

Run by test_fop_triton.py::test_interpreter_suite in its own pytest process with
``TRITON_INTERPRET=1`` set before triton is imported (the name does not match ``test_*.py``, so
the main test run does not collect this file). By hand::

    cd tests && TRITON_INTERPRET=1 python -m pytest interpret_fop_triton.py -q

float32 trajectories against the float64 reference, by flash-attention's rule: the kernels' error
is at most twice the error of the reference run in float32 (plus one float32 rounding, 2^-24, for
values the float32 reference gets exactly). Under the interpreter the tiles are 16 rows (matrix
classes) and 16 elements (flat class), two tiles per program, so the shapes below cross tile,
program and class boundaries.
"""

from __future__ import annotations

import copy

import pytest
import torch
from fop_helpers import BASE_CASES, BASE_IDS, make_params, run, run_steps, small_cnn, train_steps
from helpers import rel_err
from triton_env import needs_interpreter

import hebbkern
from hebbkern.optim import FOP

pytestmark = needs_interpreter

F32 = torch.float32
ULP = 2.0**-24
needs_ext = pytest.mark.skipif(not hebbkern.extension_available(), reason="no compiled extension")

# d = 9 over 1 and 4 programs (15 and 120 rows), d = 1 (1x1 conv), d = 16 (the small class's
# widest), d = 17 and 49 (the 64-lane class), d = 100 (cuBLAS products, 33 rows), flat tensors of
# 129 elements (5 programs), 7 and one element.
SHAPES = [(5, 3, 3, 3), (40, 3, 3, 3), (3, 2, 1, 1), (70, 16), (65, 17), (2, 1, 7, 7), (33, 100),
          (129,), (7,), ()]  # fmt: skip


def check_trajectory(base, momentum, wd, steps, shapes=SHAPES, **kw):
    """Every parameter and state tensor of the kernels (float32) against the float64 reference,
    within twice the float32 reference's own error."""
    p64, o64 = run("reference", base, momentum, wd, steps=steps, shapes=shapes, **kw)
    p32, o32 = run("reference", base, momentum, wd, steps=steps, shapes=shapes, dtype=F32, **kw)
    pt, ot = run("triton", base, momentum, wd, steps=steps, shapes=shapes, dtype=F32, **kw)
    moved = [
        (o64.state[p]["M"] - torch.eye(o64.state[p]["M"].shape[0], dtype=torch.float64)).norm()
        for p in p64
        if "M" in o64.state[p]
    ]
    assert min(moved) > 1e-4, "the preconditioners must move for the comparison to mean much"
    for i, (a, r, b) in enumerate(zip(pt, p64, p32, strict=True)):
        assert a.dtype == F32
        err, ref_err = rel_err(a, r), rel_err(b, r)
        assert err <= 2 * ref_err + ULP, f"param {i} {list(r.shape)}: {err:.3g} vs {ref_err:.3g}"
        st, sr, s32 = ot.state[a], o64.state[r], o32.state[b]
        assert st.keys() == sr.keys()
        for key in sr:
            err, ref_err = rel_err(st[key], sr[key]), rel_err(s32[key], sr[key])
            assert st[key].dtype == F32, key
            assert err <= 2 * ref_err + ULP, f"{key} of param {i}: {err:.3g} vs {ref_err:.3g}"
    return pt, ot


@pytest.mark.parametrize(("base", "momentum", "wd"), BASE_CASES, ids=BASE_IDS)
def test_trajectory_matches_reference(base, momentum, wd):
    check_trajectory(base, momentum, wd, steps=10)


def test_nan_poisoned_allocations(nan_poison):
    """Scratch (partial sums, P) and tables come from torch.empty: unwritten values would show."""
    check_trajectory("sgd", 0.9, 0.01, steps=4)
    check_trajectory("adam", 0.0, 0.0, steps=4)


def test_betas_zero_and_precondition_modes():
    """beta1 = 0 (no bias correction of the first moment) and the scalar preconditioner (d = 1
    for every tensor, including biases and the 0-dim parameter's base path)."""
    check_trajectory("adam", 0.0, 0.0, steps=5, betas=(0.0, 0.99))
    check_trajectory("sgd", 0.5, 0.0, steps=5, precondition="scalar")


def test_deterministic():
    """Same inputs, same bits: no atomics, sums in a fixed order."""
    a, oa = run("triton", "adam", 0.0, 0.01, steps=4, shapes=SHAPES, dtype=F32)
    b, ob = run("triton", "adam", 0.0, 0.01, steps=4, shapes=SHAPES, dtype=F32)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
        for key in oa.state[x]:
            assert torch.equal(oa.state[x][key], ob.state[y][key])


@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_non_contiguous(base):
    """Channels-last conv weights and transposed linear weights, strided gradients."""

    def params():
        g = torch.Generator().manual_seed(3)
        conv = torch.randn(6, 4, 3, 3, generator=g)
        lin = torch.randn(33, 7, generator=g)
        return [torch.nn.Parameter(conv.to(memory_format=torch.channels_last)),
                torch.nn.Parameter(lin.t())]  # fmt: skip

    def grads(step):
        g = torch.Generator().manual_seed(10 + step)
        conv = torch.randn(6, 4, 3, 3, generator=g)
        lin = torch.randn(33, 7, generator=g)
        return [0.3 * conv.to(memory_format=torch.channels_last), 0.3 * lin.t()]

    out = {}
    for b in ("triton", "reference"):
        ps = params()
        opt = FOP(ps, lr=0.1, hyper_lr=0.05, base=base, backend=b)
        for step in range(4):
            for p, g in zip(ps, grads(step), strict=True):
                p.grad = g
            opt.step()
        out[b] = ps
    for a, r in zip(out["triton"], out["reference"], strict=True):
        assert rel_err(a, r) < 1e-5
    assert out["triton"][0].is_contiguous(memory_format=torch.channels_last)


def test_half_parameters_keep_float32_state():
    """float16 parameters step with float32 state (the interpreter cannot do bfloat16 arithmetic;
    here only loads and stores are half) and follow the reference, which also keeps float32
    state, to float16 resolution."""
    shapes = [(4, 3, 3, 3), (5, 70), (5,)]
    pr, _ = run("reference", "adam", 0.0, 0.0, steps=3, shapes=shapes, dtype=torch.float16)
    pt, ot = run("triton", "adam", 0.0, 0.0, steps=3, shapes=shapes, dtype=torch.float16)
    for a, r in zip(pt, pr, strict=True):
        assert a.dtype == torch.float16
        assert rel_err(a, r) < 2e-3
        assert all(v.dtype == F32 for v in ot.state[a].values())


# ------------------------------------------------------------------------------------- resuming


def _model_opt(backend, base, momentum, dtype=F32):
    model = small_cnn(dtype)
    opt = FOP(model.parameters(), lr=0.05, hyper_lr=0.5, base=base, momentum=momentum,
              weight_decay=1e-3, backend=backend)  # fmt: skip
    return model, opt


@pytest.mark.parametrize(("base", "momentum"), [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0)],
                         ids=["sgd", "momentum", "adam"])  # fmt: skip
@pytest.mark.parametrize(("first", "second"), [
    ("triton", "triton"), ("triton", "reference"), ("reference", "triton"),
    ("triton", "foreach"), ("foreach", "triton"),
    pytest.param("triton", "cpu", marks=needs_ext), pytest.param("cpu", "triton", marks=needs_ext),
])  # fmt: skip
def test_checkpoint_moves_between_backends(base, momentum, first, second):
    """Train on one backend, resume on another: the same trajectory as the float64 reference
    throughout, within twice the float32 reference's error (triton -> triton continues
    bit-identically)."""
    ref_model, ref_opt = _model_opt("reference", base, momentum, torch.float64)
    train_steps(ref_model, ref_opt, 6, torch.float64)
    r32_model, r32_opt = _model_opt("reference", base, momentum)
    train_steps(r32_model, r32_opt, 6, F32)
    model, opt = _model_opt(first, base, momentum)
    first_losses = train_steps(model, opt, 3, F32)
    model2, opt2 = _model_opt(second, base, momentum)
    model2.load_state_dict(copy.deepcopy(model.state_dict()))
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    train_steps(model2, opt2, 3, F32)
    for a, b, r in zip(model2.parameters(), r32_model.parameters(), ref_model.parameters(),
                       strict=True):  # fmt: skip
        assert rel_err(a, r) <= 2 * rel_err(b, r) + ULP
    if first == second:
        model3, opt3 = _model_opt(first, base, momentum)
        assert train_steps(model3, opt3, 3, F32) == first_losses
        train_steps(model3, opt3, 3, F32)
        for a, b in zip(model2.parameters(), model3.parameters(), strict=True):
            assert torch.equal(a, b)


def test_half_checkpoint_keeps_float32_state():
    """torch's load_state_dict would cast the state to the parameters' dtype: FOP's keeps float32."""
    params = make_params([(4, 3, 3, 3), (5,)], torch.float16)
    opt = FOP(params, lr=0.1, hyper_lr=0.1, base="adam", backend="triton")
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    opt2 = FOP(params, lr=0.1, hyper_lr=0.1, base="adam", backend="triton")
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    for p in params:
        for key, v in opt.state[p].items():
            assert opt2.state[p][key].dtype == F32 and torch.equal(opt2.state[p][key], v), key


# ------------------------------------------------------------------------------ op and compile


def test_compiled_step_fullgraph():
    """``torch.compile(opt.step, fullgraph=True)``: dynamo traces the optimiser (state lookup,
    bucketing) without a break and the op is one node; the run matches the eager one bit for bit
    (the same kernels run)."""
    eager_model, eager_opt = _model_opt("triton", "adam", 0.0)
    comp_model, comp_opt = _model_opt("triton", "adam", 0.0)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 5, (16,))
    compiled_step = torch.compile(comp_opt.step, fullgraph=True)
    for _ in range(3):
        for model, opt, step in ((eager_model, eager_opt, eager_opt.step),
                                 (comp_model, comp_opt, compiled_step)):  # fmt: skip
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            step()
    for a, b in zip(comp_model.parameters(), eager_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_step_is_one_op_call_per_group(monkeypatch):
    from hebbkern.triton import fop_ops

    calls = []
    op = fop_ops.fop_step_triton_
    monkeypatch.setattr(fop_ops, "fop_step_triton_", lambda *a: calls.append(a) or op(*a))
    params = make_params(SHAPES, F32)
    opt = FOP(params, lr=0.1, hyper_lr=0.1, base="adam", backend="triton")
    run_steps(params, [[torch.randn_like(p) for p in params]] * 2, opt)
    assert len(calls) == 2 and len(calls[0][0]) == len(params)
