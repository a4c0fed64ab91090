"""``hebbkern.trace_update``: the fused ``cpu`` backend against the eager reference for every rule,
per-sample and shared traces, every form of eta; every gradient; gradcheck, opcheck,
torch.compile, bad input."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_rejects, rel_err

import hebbkern

TOL = {torch.float64: 1e-8, torch.float32: 1e-4}
RULES = ("hebb", "oja", "add", "clip")
ETA_KINDS = ("scalar", "per_sample", "per_post")


def inputs(rule, shared, eta_kind, B=3, M=7, K=5, dtype=torch.float64, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)

    eta_shape = {"scalar": (), "per_sample": (B,), "per_post": (B, K)}[eta_kind]
    kw = {
        "trace": rnd(*((M, K) if shared else (B, M, K)), scale=0.4),
        "pre": rnd(B, M),
        "post": rnd(B, K),
        # Rates in (0.1, 0.5), signed for the per-sample modulations (a neuromodulator).
        "eta": (0.1 + 0.4 * torch.rand(eta_shape, generator=g, dtype=torch.float64)).to(dtype)
        * (1 if eta_kind == "scalar" else torch.sign(rnd(*eta_shape))),
    }
    kw = {k: v.requires_grad_(grad) for k, v in kw.items()}
    kw["rule"] = rule
    kw["clip"] = 0.5 if rule == "clip" else None
    return kw


def run(kw, backend, seed=1):
    out = hebbkern.trace_update(**kw, backend=backend)
    wt = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    names = [k for k in ("trace", "pre", "post", "eta") if isinstance(kw[k], torch.Tensor)]
    grads = torch.autograd.grad((out * wt.to(out.device, out.dtype)).sum(), [kw[k] for k in names])
    return out.detach(), dict(zip(names, grads, strict=True))


def copy(kw, dtype=None):
    return {k: v.detach().to(dtype or v.dtype).requires_grad_() if isinstance(v, torch.Tensor)
            else v for k, v in kw.items()}  # fmt: skip


def check(kw, tol):
    dtype = kw["trace"].dtype
    o, g = run(copy(kw), "cpu")
    orf, gr = run(copy(kw, torch.float64), "reference")
    assert o.dtype == dtype and o.shape == kw["trace"].shape and torch.isfinite(o).all()
    assert rel_err(o, orf) < tol
    for k in gr:
        assert gr[k].norm() > 0, k
        assert g[k].shape == kw[k].shape and g[k].dtype == dtype, k
        assert rel_err(g[k], gr[k]) < tol, k


def cases():
    for rule in RULES:
        for shared in (False, True):
            for ek in ETA_KINDS:
                if shared and rule == "hebb" and ek != "scalar":
                    continue  # rejected: see test_shared_hebb_needs_scalar_eta
                yield pytest.param(
                    rule, shared, ek, id=f"{rule}-{'shared' if shared else 'per_sample'}-{ek}"
                )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("rule, shared, eta_kind", list(cases()))
def test_matches_reference(rule, shared, eta_kind, dtype, nan_poison):
    check(inputs(rule, shared, eta_kind, dtype=dtype, seed=4), TOL[dtype])


@pytest.mark.parametrize("shared", [False, True])
def test_clip_bites(shared):
    kw = inputs("clip", shared, "per_post", seed=4, grad=False)
    out = hebbkern.trace_update(**kw, backend="cpu")
    frac = (out.abs() == 0.5).double().mean().item()
    assert 0.02 < frac < 0.95


def test_add_is_unbounded_clip():
    kw = inputs("add", False, "per_sample", seed=2, grad=False)
    big = dict(kw, rule="clip", clip=1e30)
    assert torch.equal(hebbkern.trace_update(**kw), hebbkern.trace_update(**big))


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 7, 33), (2, 100, 3), (3, 33, 129)])
@pytest.mark.parametrize("rule", ["oja", "clip"])
@pytest.mark.parametrize("shared", [False, True])
def test_odd_sizes(shape, rule, shared, nan_poison):
    B, M, K = shape
    check(inputs(rule, shared, "per_post", B=B, M=M, K=K, seed=M + K), 1e-8)


def test_python_float_eta_and_non_contiguous(nan_poison):
    kw = inputs("oja", False, "scalar", seed=5)
    nc = copy(kw)
    nc["trace"] = kw["trace"].detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
    nc["pre"] = kw["pre"].detach().t().contiguous().t().requires_grad_()
    nc["eta"] = 0.3
    ref = copy(kw)
    ref["eta"] = 0.3
    o, g = run(nc, "cpu")
    orf, gr = run(ref, "reference")
    assert not nc["trace"].is_contiguous()
    assert rel_err(o, orf) < 1e-12
    for k in gr:
        assert rel_err(g[k], gr[k]) < 1e-12, k


@pytest.mark.parametrize("rule, shared, eta_kind", list(cases()))
def test_gradcheck(rule, shared, eta_kind):
    kw = inputs(rule, shared, eta_kind, B=2, M=3, K=4, seed=9)
    names = ("trace", "pre", "post", "eta")

    def f(*t):
        return hebbkern.trace_update(*t[:3], eta=t[3], rule=rule, clip=kw["clip"], backend="cpu")

    assert torch.autograd.gradcheck(f, tuple(kw[k] for k in names), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("rule, shared, eta_kind", list(cases()))
def test_opcheck(rule, shared, eta_kind):
    kw = inputs(rule, shared, eta_kind, B=2, M=3, K=4, seed=9)
    clip = 0.5 if rule == "clip" else float("inf")
    args = (kw["trace"], kw["pre"], kw["post"], kw["eta"], rule, clip)
    torch.library.opcheck(torch.ops.hebbkern.trace_update_fwd.default, args)
    grad = torch.randn(kw["trace"].shape, dtype=torch.float64)
    bargs = (grad,) + tuple(a.detach() for a in args[:4]) + args[4:]
    torch.library.opcheck(torch.ops.hebbkern.trace_update_bwd.default, bargs)


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    kw = inputs("clip", False, "per_post", seed=3)

    def f(trace, pre, post, eta):
        t = hebbkern.trace_update(trace, pre, post, rule="clip", eta=eta, clip=0.5)
        return hebbkern.trace_update(t, post[:, :3].repeat(1, 3)[:, :7], post, rule="clip",
                                     eta=eta, clip=0.5).square().sum()  # fmt: skip

    args = [kw[k] for k in ("trace", "pre", "post", "eta")]
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got, ref = compiled(*args), f(*args)
    assert rel_err(got, ref) < 1e-12
    for a, b in zip(torch.autograd.grad(got, args), torch.autograd.grad(ref, args), strict=True):
        assert rel_err(a, b) < 1e-12


B, M, K = 2, 3, 4
BAD = [
    ("trace-rank1", dict(trace=torch.randn(K)), ValueError, r"^trace must have shape \[M, K\] \(shared\)"),
    ("trace-int", dict(trace=torch.ones(B, M, K, dtype=torch.int32)), TypeError, r"^trace must be a floating"),
    ("trace-mismatch", dict(trace=torch.randn(B, M, K + 1)), ValueError, r"^trace must have shape \[M, K\] = \[3, 4\]"),
    ("pre-rank", dict(pre=torch.randn(M)), ValueError, r"^pre must have shape \[B, M\]"),
    ("post-batch", dict(post=torch.randn(B + 1, K)), ValueError, r"^post must have shape \[B, K\] with B=2"),
    ("pre-dtype", dict(pre=torch.randn(B, M, dtype=torch.float64)), TypeError, r"^pre must have dtype"),
    ("rule", dict(rule="bcm"), ValueError, r"^rule must be one of 'hebb', 'oja', 'add', 'clip'"),
    ("eta-None", dict(eta=None), ValueError, r"^eta is required"),
    ("eta-shape", dict(eta=torch.rand(K)), ValueError, r"^eta must be a float, a 0-dim tensor, \[B\]"),
    ("eta-str", dict(eta="0.1"), TypeError, r"^eta must be a float"),
    ("eta-dtype", dict(eta=torch.tensor(0.1, dtype=torch.float64)), TypeError, r"^eta must have dtype"),
    ("clip-missing", dict(rule="clip"), ValueError, r"^rule 'clip' needs clip"),
    ("clip-unused", dict(clip=1.0), ValueError, r"^clip only applies to rule 'clip'"),
    ("clip-negative", dict(rule="clip", clip=-1.0), ValueError, r"^clip must be > 0"),
    ("shared-hebb-eta", dict(trace=torch.randn(M, K), eta=torch.rand(B)), ValueError, r"^a shared trace with rule 'hebb' needs a scalar eta"),
]  # fmt: skip


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("change, exc, match", [pytest.param(*c[1:], id=c[0]) for c in BAD])
def test_bad_argument(change, exc, match, backend):
    kw = {"trace": torch.randn(B, M, K), "pre": torch.randn(B, M), "post": torch.randn(B, K),
          "rule": "hebb", "eta": 0.1}  # fmt: skip
    assert_rejects(hebbkern.trace_update, kw, change, exc, match, backend=backend)


@pytest.mark.parametrize(
    "args",
    [(torch.randn(B, M, K + 1), torch.randn(B, M), torch.randn(B, K), torch.tensor(0.1), "add"),
     (torch.randn(M, K), torch.randn(B, M), torch.randn(B + 1, K), torch.tensor(0.1), "add"),
     (torch.randn(B, M, K), torch.randn(B, M), torch.randn(B, K), torch.rand(K + 1), "add"),
     (torch.randn(M, K), torch.randn(B, M), torch.randn(B, K), torch.rand(B), "hebb"),
     (torch.randn(M, K), torch.randn(B, M), torch.randn(B, K), torch.rand(B), "decay")],
)  # fmt: skip
def test_raw_op_checks_shapes(args):
    with pytest.raises((ValueError, TypeError), match="hebbkern::trace_update"):
        torch.ops.hebbkern.trace_update_fwd(*args, 1.0)
    with pytest.raises((ValueError, TypeError), match="hebbkern::trace_update"):
        torch.ops.hebbkern.trace_update_bwd(torch.randn(2, 2), *args, 1.0)


@pytest.mark.parametrize("isa", ["default", "avx2", "avx512"])
@pytest.mark.parametrize("rule", RULES)
def test_every_instruction_set(rule, isa, monkeypatch, nan_poison):
    """The loops are built once per instruction set; HEBBKERN_CPU_ISA caps the run-time choice."""
    monkeypatch.setenv("HEBBKERN_CPU_ISA", isa)
    check(inputs(rule, False, "per_post", B=3, M=9, K=37, dtype=torch.float32, seed=6), 1e-4)
