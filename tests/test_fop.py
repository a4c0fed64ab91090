"""The fused FOP step (C++ kernel and the device-generic foreach path) against the eager reference:
many steps, every base optimiser, float64 and float32, odd sizes, non-contiguous parameters and
gradients, NaN-poisoned allocations, a small model (eager and torch.compile'd), opcheck."""

from __future__ import annotations

import pytest
import torch
from fop_helpers import (
    BASE_CASES,
    BASE_IDS,
    SHAPES,
    grad_sequence,
    make_params,
    run,
    run_steps,
    small_cnn,
    train_steps,
)  # fmt: skip
from helpers import rel_err

import hebbkern
from hebbkern.optim import FOP

FUSED = ["cpu", "foreach"]
needs_ext = pytest.mark.skipif(not hebbkern.extension_available(), reason="no compiled extension")


def fused_param(b):
    return pytest.param(b, marks=needs_ext) if b == "cpu" else b


FUSED_P = [fused_param(b) for b in FUSED]


def compare(opt_f, params_f, opt_r, params_r, tol):
    for i, (pf, pr) in enumerate(zip(params_f, params_r, strict=True)):
        assert rel_err(pf, pr) < tol, f"param {i} {list(pr.shape)}: {rel_err(pf, pr)}"
        sf, sr = opt_f.state[pf], opt_r.state[pr]
        assert sf.keys() == sr.keys()
        for k in sr:
            assert rel_err(sf[k], sr[k]) < tol, f"state {k} of param {i}: {rel_err(sf[k], sr[k])}"


def moved(opt, params):
    """The preconditioners really learned something (so the comparison can fail)."""
    Ms = [opt.state[p]["M"] for p in params if "M" in opt.state[p]]
    eye = [torch.eye(M.shape[0], dtype=M.dtype) for M in Ms]
    return min((M - e).norm().item() for M, e in zip(Ms, eye, strict=True))


@pytest.mark.parametrize("backend", FUSED_P)
@pytest.mark.parametrize(("base", "momentum", "wd"), BASE_CASES, ids=BASE_IDS)
def test_matches_reference_float64(backend, base, momentum, wd):
    pr, opt_r = run("reference", base, momentum, wd, steps=8)
    pf, opt_f = run(backend, base, momentum, wd, steps=8)
    assert moved(opt_r, pr) > 1e-3
    compare(opt_f, pf, opt_r, pr, 1e-10)


@pytest.mark.parametrize("backend", FUSED_P)
@pytest.mark.parametrize(("base", "momentum", "wd"), BASE_CASES[:3], ids=BASE_IDS[:3])
def test_matches_reference_float32(backend, base, momentum, wd):
    pr, opt_r = run("reference", base, momentum, wd, steps=8)  # float64 oracle
    pf, opt_f = run(backend, base, momentum, wd, steps=8, dtype=torch.float32)
    compare(opt_f, pf, opt_r, pr, 1e-4)


# Row counts across the kernel's block (64 rows) and reduction-chunk (1024 rows) boundaries, for
# each row-kernel kind: d = 9 and d = 1 (compile-time d), d = 4 and 16 (run-time d <= 16), d = 17
# (transposed blocks).
LONG_SHAPES = [(40, 30, 3, 3), (1100, 1, 1, 1), (9, 10, 2, 2), (70, 16), (65, 17)]


@needs_ext
@pytest.mark.parametrize(("base", "momentum", "wd"), BASE_CASES, ids=BASE_IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_many_rows_match_reference(base, momentum, wd, dtype):
    pr, opt_r = run("reference", base, momentum, wd, steps=5, shapes=LONG_SHAPES)
    pf, opt_f = run("cpu", base, momentum, wd, steps=5, shapes=LONG_SHAPES, dtype=dtype)
    assert moved(opt_r, pr) > 1e-3
    compare(opt_f, pf, opt_r, pr, 1e-10 if dtype == torch.float64 else 1e-4)


@pytest.mark.parametrize("backend", FUSED_P)
def test_nan_poisoned_allocations(backend, nan_poison):
    for base, momentum, wd in BASE_CASES[:3]:
        pr, opt_r = run("reference", base, momentum, wd, steps=4)
        pf, opt_f = run(backend, base, momentum, wd, steps=4)
        compare(opt_f, pf, opt_r, pr, 1e-10)


@pytest.mark.parametrize("backend", FUSED_P)
@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_non_contiguous(backend, base):
    """Channels-last conv weights, transposed linear weights and strided gradients."""

    def params():
        g = torch.Generator().manual_seed(3)
        conv = torch.randn(6, 4, 3, 3, generator=g, dtype=torch.float64)
        lin = torch.randn(33, 7, generator=g, dtype=torch.float64)
        return [torch.nn.Parameter(conv.to(memory_format=torch.channels_last)),
                torch.nn.Parameter(lin.t()), torch.nn.Parameter(torch.randn(9, generator=g, dtype=torch.float64))]  # fmt: skip

    def grads(step):
        g = torch.Generator().manual_seed(10 + step)
        conv = torch.randn(6, 4, 3, 3, generator=g, dtype=torch.float64)
        lin = torch.randn(33, 7, generator=g, dtype=torch.float64)
        bias = torch.randn(18, generator=g, dtype=torch.float64)
        return [0.3 * conv.to(memory_format=torch.channels_last), 0.3 * lin.t(), bias[::2]]

    out = {}
    for b in (backend, "reference"):
        ps = params()
        assert not ps[0].is_contiguous() and not ps[1].is_contiguous()
        opt = FOP(ps, lr=0.1, hyper_lr=0.05, base=base, momentum=0.0, backend=b)
        for step in range(5):
            for p, g in zip(ps, grads(step), strict=True):
                p.grad = g
            opt.step()
        out[b] = (opt, ps)
    compare(*out[backend], *out["reference"], 1e-10)
    # The parameters keep their memory format.
    assert out[backend][1][0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("backend", ["foreach", "reference"])
def test_low_precision_parameters(backend):
    """bfloat16 parameters step on the foreach path (the default for dtypes the kernel lacks)."""
    shapes = [(4, 3, 3, 3), (5, 7), (5,)]
    pr, opt_r = run("reference", "adam", 0.0, 0.0, steps=3, shapes=shapes)
    pf, opt_f = run(None if backend == "foreach" else backend, "adam", 0.0, 0.0, steps=3,
                    shapes=shapes, dtype=torch.bfloat16)  # fmt: skip
    for a, b in zip(pf, pr, strict=True):
        assert a.dtype == torch.bfloat16
        assert rel_err(a, b) < 2e-2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_cuda_parameters(base):
    shapes = [(8, 4, 3, 3), (10, 130), (10,)]
    pr, opt_r = run("reference", base, 0.0, 0.0, steps=4, shapes=shapes)
    params = [torch.nn.Parameter(p.detach().cuda()) for p in make_params(shapes)]
    opt = FOP(params, lr=0.1, hyper_lr=0.02, base=base)
    seq = [[g.cuda() for g in step] for step in grad_sequence(shapes, 4)]
    run_steps(params, seq, opt)
    for a, b in zip(params, pr, strict=True):
        assert rel_err(a.cpu(), b) < 1e-10


def train(model, backend, base, dtype, steps=10, compiled=False):
    opt = FOP(model.parameters(), lr=0.05, hyper_lr=0.5, base=base, momentum=0.5 if base == "sgd"
              else 0.0, backend=backend)  # fmt: skip
    fwd = torch.compile(model, fullgraph=True) if compiled else model
    return train_steps(model, opt, steps, dtype, fwd), opt


@pytest.mark.parametrize("backend", FUSED_P)
@pytest.mark.parametrize("base", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_small_model_training(backend, base, dtype):
    ref_model, model = small_cnn(dtype), small_cnn(dtype)
    ref_losses, ref_opt = train(ref_model, "reference", base, dtype)
    losses, opt = train(model, backend, base, dtype)
    assert ref_losses[-1] < ref_losses[0]
    assert moved(ref_opt, list(ref_model.parameters())) > 1e-4
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    for a, b in zip(model.parameters(), ref_model.parameters(), strict=True):
        assert rel_err(a, b) < tol


@needs_ext
def test_compiled_model():
    """A torch.compile'd model trains with FOP exactly as the eager one does."""
    eager_model, compiled_model = small_cnn(torch.float64), small_cnn(torch.float64)
    eager, _ = train(eager_model, "cpu", "sgd", torch.float64, steps=4)
    compiled, _ = train(compiled_model, "cpu", "sgd", torch.float64, steps=4, compiled=True)
    assert compiled == pytest.approx(eager, rel=1e-9)
    for a, b in zip(compiled_model.parameters(), eager_model.parameters(), strict=True):
        assert rel_err(a, b) < 1e-9


@needs_ext
def test_step_is_one_kernel_call_per_group(monkeypatch):
    calls = []
    op = torch.ops.hebbkern.fop_step_
    monkeypatch.setattr(torch.ops.hebbkern, "fop_step_", lambda *a: calls.append(a) or op(*a))
    model = small_cnn(torch.float32)
    train(model, "cpu", "adam", torch.float32, steps=2)
    assert len(calls) == 2 and len(calls[0][0]) == len(list(model.parameters()))


def _op_args(base, dtype=torch.float64, first=False):
    g = torch.Generator().manual_seed(0)
    shapes = [(4, 3, 3, 3), (5, 70), (6,)]

    def rnd(positive=False):
        return [
            (torch.rand if positive else torch.randn)(s, generator=g, dtype=dtype) for s in shapes
        ]

    precond = [torch.eye(9, dtype=dtype) + 0.1 * torch.randn(9, 9, generator=g, dtype=dtype),
               torch.eye(70, dtype=dtype), torch.empty(0, dtype=dtype)]  # fmt: skip
    buf1 = rnd() if base != "sgd" else []
    buf2 = rnd(positive=True) if base == "adam" else []
    steps = [torch.tensor(0.0 if first else 3.0) for _ in shapes]
    momentum = 0.9 if base == "momentum" else 0.0
    return (rnd(), rnd(), precond, rnd(), buf1, buf2, steps, "adam" if base == "adam" else "sgd",
            0.1, 0.01, momentum, 0.9, 0.999, 1e-8, 0.01)  # fmt: skip


@needs_ext
@pytest.mark.parametrize("base", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("first", [False, True])
def test_opcheck(base, first):
    torch.library.opcheck(torch.ops.hebbkern.fop_step_.default, _op_args(base, first=first))


def test_shapes_cover_both_kernel_paths():
    """The shape list keeps conv kernels and linear weights on both sides of d = 64."""
    ds = [hebbkern.reference.fop.preconditioned_dim(s, "auto") for s in SHAPES]
    assert {1, 9, 49, 7, 100, 129} <= set(ds) and None in ds


@needs_ext
@pytest.mark.parametrize("isa", ["default", "avx2", "avx512"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_instruction_set(isa, dtype, monkeypatch):
    """The row kernels of each instruction set (capped by HEBBKERN_CPU_ISA, read at every call;
    a cap above what the CPU has runs the best it has)."""
    monkeypatch.setenv("HEBBKERN_CPU_ISA", isa)
    for base, momentum, wd in [BASE_CASES[1], BASE_CASES[5]]:
        pr, opt_r = run("reference", base, momentum, wd, steps=5)
        pf, opt_f = run("cpu", base, momentum, wd, steps=5, dtype=dtype)
        compare(opt_f, pf, opt_r, pr, 1e-10 if dtype == torch.float64 else 1e-4)
