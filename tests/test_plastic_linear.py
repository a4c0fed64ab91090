"""``hebbkern.plastic_linear`` (``z = x (w + alpha * H)``): the fused ``cpu`` backend against the
eager reference, every gradient, shared and per-sample traces, every alpha shape; gradcheck,
opcheck, torch.compile, bad input."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_rejects, rel_err

import hebbkern

TOL = {torch.float64: 1e-8, torch.float32: 1e-4}
ALPHA = ("per_connection", "per_output", "scalar")
NAMES = ("x", "w", "alpha", "hebb")


def linear_inputs(B, M, K, alpha_kind, per_sample, dtype=torch.float64, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)

    a_shape = {"per_connection": (M, K), "per_output": (K,), "scalar": ()}[alpha_kind]
    kw = {
        "x": rnd(B, M),
        "w": rnd(M, K, scale=M**-0.5),
        "alpha": rnd(*a_shape, scale=0.5),
        "hebb": rnd(*((B, M, K) if per_sample else (M, K)), scale=0.5),
    }
    return {k: v.requires_grad_(grad) for k, v in kw.items()}


def run(kw, backend, seed=1):
    z = hebbkern.plastic_linear(**kw, backend=backend)
    wt = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    grads = torch.autograd.grad((z * wt.to(z.dtype)).sum(), [kw[k] for k in NAMES])
    return z.detach(), dict(zip(NAMES, grads, strict=True))


def check(kw, tol):
    dtype = kw["x"].dtype
    ref_kw = {k: v.detach().double().requires_grad_() for k, v in kw.items()}
    z, g = run(kw, "cpu")
    zr, gr = run(ref_kw, "reference")
    assert z.dtype == dtype and torch.isfinite(z).all()
    assert rel_err(z, zr) < tol
    for k in NAMES:
        assert gr[k].norm() > 0, k
        assert g[k].shape == kw[k].shape and g[k].dtype == dtype, k
        assert rel_err(g[k], gr[k]) < tol, k


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("per_sample", [True, False], ids=["per_sample", "shared"])
@pytest.mark.parametrize("alpha_kind", ALPHA)
def test_matches_reference(alpha_kind, per_sample, dtype, nan_poison):
    check(linear_inputs(5, 9, 6, alpha_kind, per_sample, dtype, seed=3), TOL[dtype])


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 7, 33), (3, 100, 7), (2, 129, 10), (7, 33, 129)])
@pytest.mark.parametrize("per_sample", [True, False], ids=["per_sample", "shared"])
def test_odd_sizes(shape, per_sample, nan_poison):
    check(linear_inputs(*shape, "per_connection", per_sample, seed=sum(shape)), 1e-8)


def test_non_contiguous(nan_poison):
    kw = linear_inputs(4, 6, 5, "per_connection", True, seed=2)
    nc = {
        "x": kw["x"].detach().t().contiguous().t(),
        "w": kw["w"].detach().t().contiguous().t(),
        "alpha": kw["alpha"].detach().t().contiguous().t(),
        "hebb": kw["hebb"].detach().transpose(1, 2).contiguous().transpose(1, 2),
    }
    assert not any(v.is_contiguous() for v in nc.values())
    nc = {k: v.requires_grad_() for k, v in nc.items()}
    z, g = run(nc, "cpu")
    zr, gr = run({k: v.detach().clone().requires_grad_() for k, v in kw.items()}, "reference")
    assert rel_err(z, zr) < 1e-10
    for k in NAMES:
        assert rel_err(g[k], gr[k]) < 1e-10, k


@pytest.mark.parametrize("alpha_kind", ALPHA)
@pytest.mark.parametrize("per_sample", [True, False], ids=["per_sample", "shared"])
def test_gradcheck(alpha_kind, per_sample):
    kw = linear_inputs(3, 4, 5, alpha_kind, per_sample, seed=5)
    assert torch.autograd.gradcheck(
        lambda *t: hebbkern.plastic_linear(*t, backend="cpu"), tuple(kw[k] for k in NAMES)
    )


@pytest.mark.parametrize("alpha_kind", ALPHA)
@pytest.mark.parametrize("per_sample", [True, False], ids=["per_sample", "shared"])
def test_opcheck(alpha_kind, per_sample):
    kw = linear_inputs(3, 4, 5, alpha_kind, per_sample, seed=6)
    args = tuple(kw[k] for k in NAMES)
    torch.library.opcheck(torch.ops.hebbkern.plastic_linear_fwd.default, args)
    gz = torch.randn(3, 5, dtype=torch.float64)
    torch.library.opcheck(
        torch.ops.hebbkern.plastic_linear_bwd.default, (gz,) + tuple(a.detach() for a in args)
    )


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    kw = linear_inputs(3, 4, 5, "per_output", True, seed=7)
    f = torch.compile(lambda *t: hebbkern.plastic_linear(*t).square().sum(), fullgraph=True,
                      backend="aot_eager")  # fmt: skip
    args = [kw[k] for k in NAMES]
    got = f(*args)
    ref = hebbkern.plastic_linear(*args, backend="reference").square().sum()
    assert rel_err(got, ref) < 1e-12
    for a, b in zip(torch.autograd.grad(got, args), torch.autograd.grad(ref, args), strict=True):
        assert rel_err(a, b) < 1e-12


def test_low_precision():
    kw = linear_inputs(3, 8, 4, "per_connection", True, seed=1, grad=False)
    z = hebbkern.plastic_linear(*(kw[k].to(torch.bfloat16) for k in NAMES), backend="cpu")
    assert z.dtype == torch.bfloat16
    assert rel_err(z, hebbkern.plastic_linear(**kw, backend="reference")) < 2e-2


B, M, K = 2, 3, 4
CASES = [
    ("x-rank1", dict(x=torch.randn(M)), ValueError, r"^x must have shape \[B, M\]"),
    ("x-int", dict(x=torch.ones(B, M, dtype=torch.int64)), TypeError, r"^x must be a floating"),
    ("x-list", dict(x=[[1.0]]), TypeError, r"^x must be a torch.Tensor"),
    ("w-rows", dict(w=torch.randn(M + 1, K)), ValueError, r"^w must have shape \[M, K\] with M=3"),
    ("w-dtype", dict(w=torch.randn(M, K, dtype=torch.float64)), TypeError, r"^w must have dtype"),
    ("alpha-shape", dict(alpha=torch.randn(M)), ValueError, r"^alpha must have shape \[M, K\]"),
    ("hebb-shape", dict(hebb=torch.randn(B + 1, M, K)), ValueError, r"^hebb must have shape \[M, K\]"),
    ("hebb-device", dict(hebb=torch.randn(M, K, device="meta")), ValueError, r"^hebb must be on cpu"),
]  # fmt: skip


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("change, exc, match", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_argument(change, exc, match, backend):
    kw = {"x": torch.randn(B, M), "w": torch.randn(M, K), "alpha": torch.randn(M, K),
          "hebb": torch.randn(B, M, K)}  # fmt: skip
    assert_rejects(hebbkern.plastic_linear, kw, change, exc, match, backend=backend)


@pytest.mark.parametrize(
    "args",
    [(torch.randn(B, M), torch.randn(M + 1, K), torch.randn(()), torch.randn(M + 1, K)),
     (torch.randn(B, M), torch.randn(M, K), torch.randn(K + 1), torch.randn(M, K)),
     (torch.randn(B, M), torch.randn(M, K), torch.randn(()), torch.randn(B + 1, M, K)),
     (torch.randn(B, M), torch.randn(M, K), torch.randn(()), torch.randn(M, K).double())],
)  # fmt: skip
def test_raw_op_checks_shapes(args):
    with pytest.raises((ValueError, TypeError), match="hebbkern::plastic_linear"):
        torch.ops.hebbkern.plastic_linear_fwd(*args)
    gz = torch.randn(B, K + 1)
    with pytest.raises((ValueError, TypeError), match="hebbkern::plastic_linear"):
        torch.ops.hebbkern.plastic_linear_bwd(gz, *args)


@pytest.mark.parametrize("isa", ["default", "avx2", "avx512"])
@pytest.mark.parametrize("alpha_kind", ALPHA)
def test_every_instruction_set(alpha_kind, isa, monkeypatch, nan_poison):
    """The loops are built once per instruction set; HEBBKERN_CPU_ISA caps the run-time choice."""
    monkeypatch.setenv("HEBBKERN_CPU_ISA", isa)
    check(linear_inputs(3, 9, 37, alpha_kind, True, torch.float32, seed=6), TOL[torch.float32])
