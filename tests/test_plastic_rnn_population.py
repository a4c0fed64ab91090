"""Populations in one call (issue 13 item 3, POPULATION.md): ``w`` ``[B, N, N]``, alpha per sample
and ``eta`` ``[B]`` on the reference, the public op and the C++ CPU kernel, against the
shared-parameter reference run once per sample (the oracle); gradients come back in the shapes
given."""

from __future__ import annotations

import pytest
import torch
from helpers import RULES, assert_low_precision_rule, clone_inputs, rel_err
from population_helpers import (
    POP_ALPHA_KINDS,
    against_oracle,
    make_population,
    op,
    oracle,
    run_pop,
)

import hebbkern
from hebbkern.ops.plastic_rnn import checkpoint_interval

MODULATED = ("neuromod", "retro")
TOL64 = 1e-9


def assert_close(got, exact, tol=TOL64):
    (o, g), (oe, ge) = got, exact
    assert o.keys() == oe.keys()
    for k in oe:
        assert o[k].shape == oe[k].shape, k
        assert torch.isfinite(o[k]).all(), k
        assert rel_err(o[k], oe[k]) < tol, f"output {k}: {rel_err(o[k], oe[k]):.3g}"
    assert g.keys() == ge.keys()
    for k in ge:
        assert ge[k] is not None and ge[k].norm() > 0, f"oracle gradient of {k} is zero"
        assert g[k] is not None and g[k].shape == ge[k].shape, k
        assert torch.isfinite(g[k]).all(), k
        assert rel_err(g[k], ge[k]) < tol, f"grad {k}: {rel_err(g[k], ge[k]):.3g}"


def cases():
    for rule in RULES:
        for i, kind in enumerate(POP_ALPHA_KINDS):
            yield pytest.param(rule, kind, rule in MODULATED and i % 2 == 0, i % 2 == 1,
                               id=f"{rule}-{kind}")  # fmt: skip


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", list(cases()))
def test_population_matches_oracle(rule, alpha_kind, fanout, clamp, backend, nan_poison):
    kw = make_population(rule, alpha_kind, fanout, clamp, T=6, B=3, N=7, seed=3)
    assert_close(*against_oracle(kw, op(backend)))


@pytest.mark.parametrize("rule", ["hebb", "retro", "neuromod"])
@pytest.mark.parametrize("alpha_kind", ["per_connection", "per_neuron", "scalar"])
def test_shared_w_per_sample_alpha_eta(rule, alpha_kind, nan_poison):
    """Shared w with alpha [B, N, N] (per_connection drawn per sample) or shared alpha and eta [B]."""
    kw = make_population(rule, alpha_kind, rule != "hebb", True, seed=4, per_sample_w=False)
    if alpha_kind == "per_connection":
        B, N = kw["u"].shape[1:]
        kw["alpha"] = torch.randn(B, N, N, dtype=torch.float64).mul(0.3).requires_grad_()
    assert_close(*against_oracle(kw, op("cpu")))


@pytest.mark.parametrize(
    "T, B, N, rule, kind",
    [(4, 1, 9, "retro", "per_sample_neuron"), (3, 2, 257, "hebb", "per_sample_connection"),
     (5, 2, 1, "clip", "per_sample_scalar"), (10, 2, 33, "oja", "per_sample_neuron"),
     (1, 3, 5, "neuromod", "shared")],
    ids=["B1", "N257", "N1", "chunks", "T1"],
)  # fmt: skip
def test_edge_sizes(T, B, N, rule, kind, nan_poison):
    kw = make_population(rule, kind, rule in MODULATED, True, T=T, B=B, N=N, seed=5)
    assert_close(*against_oracle(kw, op("cpu")))


def test_b_equals_n_reads_alpha_per_sample():
    """At B == N a [B, N] alpha is per sample and post neuron (never a shared [N, N])."""
    kw = make_population("hebb", "per_sample_neuron", T=4, B=5, N=5, seed=6)
    assert_close(*against_oracle(kw, op("cpu")))


def test_unmodulated_neurons_take_their_sample_eta():
    """rule neuromod with n_modulated: the unmodulated neurons' eta may be per sample too."""
    kw = make_population("neuromod", "per_sample_neuron", True, False, seed=8)
    kw["eta"] = torch.tensor([0.1, 0.3, 0.5], dtype=torch.float64, requires_grad=True)
    assert_close(*against_oracle(kw, op("cpu", n_modulated=4), n_modulated=4))


@pytest.mark.parametrize("rule", ["hebb", "neuromod"])
def test_variants(rule):
    """SPEC.md section 1.1's options apply per sample alike."""
    options = dict(activation="relu", soft_clip=rule == "neuromod")
    kw = make_population(rule, "per_sample_connection", rule == "neuromod", False, seed=9)
    assert_close(*against_oracle(kw, op("cpu", **options), **options))


@pytest.mark.parametrize("rule, kind", [("hebb", "per_sample_connection"),
                                        ("retro", "per_sample_neuron")])  # fmt: skip
def test_float32_rule(rule, kind):
    """flash-attention's rule: the float32 kernel is within twice the float32 reference's error."""
    kw = make_population(rule, kind, rule == "retro", True, T=8, B=3, N=11, seed=10)
    kernel = run_pop(clone_inputs(kw, torch.float32), op("cpu"))
    low = run_pop(clone_inputs(kw, torch.float32), op("reference"))
    exact = run_pop(clone_inputs(kw), lambda **k: oracle(k))
    assert_low_precision_rule(kernel, low, exact, torch.float32)


@pytest.mark.parametrize(
    "rule, kind", [(r, k) for r, k in zip(RULES, POP_ALPHA_KINDS * 2, strict=False)]
)
def test_gradcheck(rule, kind):
    kw = make_population(rule, kind, rule in MODULATED, True, T=3, B=2, N=3, seed=11, clip=0.6)
    names = [k for k, v in kw.items() if isinstance(v, torch.Tensor) and v.requires_grad]

    def f(*xs):
        h, st = hebbkern.plastic_rnn(**{**kw, **dict(zip(names, xs, strict=True))}, backend="cpu")
        return (h, st.hebb) + ((st.elig,) if st.elig is not None else ())

    assert torch.autograd.gradcheck(f, [kw[k] for k in names])


@pytest.mark.parametrize("isa", ["default", "avx2", "avx512"])
@pytest.mark.parametrize("rule, kind", [("oja", "per_sample_connection"),
                                        ("neuromod", "per_sample_neuron"),
                                        ("retro", "per_sample_scalar")])  # fmt: skip
def test_every_instruction_set(rule, kind, isa, monkeypatch, nan_poison):
    monkeypatch.setenv("HEBBKERN_CPU_ISA", isa)
    kw = make_population(rule, kind, rule != "oja", True, T=7, B=3, N=21, seed=12)
    assert_close(*against_oracle(kw, op("cpu")))


def test_post_pre_layout():
    """layout='post_pre' transposes each sample's w and [B, N, N] alpha; a [B, N] alpha (per post
    neuron) stays as it is."""
    for kind in ("per_sample_connection", "per_sample_neuron"):
        kw = make_population("clip", kind, T=4, B=4, N=4, seed=13)
        swapped = {**kw, "w": kw["w"].transpose(-1, -2), "hebb0": kw["hebb0"].transpose(-1, -2)}
        if kind == "per_sample_connection":
            swapped["alpha"] = kw["alpha"].transpose(-1, -2)
        h, st = hebbkern.plastic_rnn(**swapped, backend="cpu", layout="post_pre")
        h_ref, st_ref = oracle(kw)
        assert rel_err(h, h_ref) < TOL64
        assert rel_err(st.hebb.transpose(-1, -2), st_ref.hebb) < TOL64


def test_compile_fullgraph():
    kw = make_population("retro", "per_sample_neuron", True, False, T=4, B=2, N=5, seed=14)
    names = ("u", "w", "alpha", "eta")
    rest = {k: v for k, v in kw.items() if k not in names}

    def f(u, w, alpha, eta):
        h, st = hebbkern.plastic_rnn(u, w, alpha, eta=eta, backend="cpu", **rest)
        return h, st.hebb

    xs = [kw[k] for k in names]
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got, want = compiled(*xs), f(*xs)
    for a, b in zip(got, want, strict=True):
        assert rel_err(a, b) < TOL64
    g1 = torch.autograd.grad(sum(t.sum() for t in got), xs)
    g2 = torch.autograd.grad(sum(t.sum() for t in want), xs)
    for name, a, b in zip(names, g1, g2, strict=True):
        assert a.shape == kw[name].shape and rel_err(a, b) < TOL64, name


def raw_args(kw: dict, alpha_canonical) -> tuple:
    """The raw op's arguments in POPULATION.md's canonical forms."""
    T = kw["u"].shape[0]
    return (
        kw["u"], kw["w"], alpha_canonical, kw.get("h0"), kw.get("hebb0"), kw.get("elig0"),
        kw.get("clamp_mask"), kw.get("eta"), kw.get("mod_w"), kw.get("mod_b"),
        kw.get("fanout_w"), kw.get("fanout_b"), kw["rule"], float(kw["clip"]),
        checkpoint_interval(T),
    )  # fmt: skip


@pytest.mark.parametrize("rule, kind", [("hebb", "per_sample_connection"),
                                        ("retro", "per_sample_neuron"),
                                        ("neuromod", "per_sample_scalar")])  # fmt: skip
def test_opcheck(rule, kind):
    kw = make_population(rule, kind, rule != "hebb", True, T=5, B=2, N=4, seed=15)
    a = kw["alpha"]
    canonical = {3: a, 2: a.unsqueeze(1), 1: a[:, None, None]}[a.dim()]
    torch.library.opcheck(torch.ops.hebbkern.plastic_rnn_fwd.default, raw_args(kw, canonical))


def test_raw_backward_returns_canonical_shapes():
    kw = make_population("hebb", "per_sample_neuron", T=4, B=3, N=5, seed=16)
    a = kw["alpha"].detach().unsqueeze(1)
    args = raw_args({k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}, a)
    out = torch.ops.hebbkern.plastic_rnn_fwd(*args)
    h, hebb, elig, ck_h, ck_e, mod = out
    g = torch.ops.hebbkern.plastic_rnn_bwd(
        torch.ones_like(h), None, None, *args[:4], h, ck_h, ck_e, mod, *args[6:]
    )
    assert g[1].shape == (3, 5, 5) and g[2].shape == (3, 1, 5) and g[6].shape == (3,)


# ---------------------------------------------------------------------------------------------
# Refused: a clear error naming the argument, before any kernel runs (public op and raw op).

T_, B_, N_ = 3, 2, 4


def _bad(change: dict, rule="hebb"):
    kw = make_population(rule, "per_sample_connection", T=T_, B=B_, N=N_, seed=17)
    return {
        **{k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in kw.items()},
        **change,
    }


def r(*shape):
    return torch.randn(shape, dtype=torch.float64)


REFUSED = [
    ("w-batch", dict(w=r(B_ + 1, N_, N_)), r"^w must have shape \[4, 4\] \(shared\) or \[2, 4, 4\]"),
    ("alpha-shared-NxN", dict(alpha=r(N_, N_)), r"^alpha must be per sample .* expand it"),
    ("alpha-shared-N", dict(alpha=r(N_)), r"^alpha must be per sample .* expand it"),
    ("alpha-paper-1x1xN", dict(alpha=r(1, 1, N_)), r"^alpha must be per sample .* expand it"),
    ("alpha-Bx1xN", dict(alpha=r(B_, 1, N_)), r"^alpha must have shape \[B, N, N\]"),
    ("alpha-wrong-B", dict(alpha=r(B_ + 1, N_, N_)), r"^alpha must have shape \[B, N, N\]"),
    ("alpha-dtype", dict(alpha=r(B_, N_).float()), r"^alpha must have dtype"),
    ("eta-wrong-B", dict(eta=r(B_ + 1)), r"^eta must be a 0-dim tensor \(or shape \[1\]\) or \[B\]"),
    ("eta-2d", dict(eta=r(B_, 1)), r"^eta must be a 0-dim tensor"),
    ("eta-dtype", dict(eta=r(B_).float()), r"^eta must have dtype"),
]  # fmt: skip


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("change, match", [pytest.param(c, m, id=i) for i, c, m in REFUSED])
def test_refused(change, match, backend):
    kw = _bad(change)
    exc = TypeError if "dtype" in match else ValueError
    with pytest.raises(exc, match=match):
        hebbkern.plastic_rnn(**kw, backend=backend)


def test_shared_w_refuses_per_sample_neuron_alpha():
    """With shared w, alpha [B, N] is not a population form (it reads as [N, N] at B == N)."""
    kw = _bad(dict(w=r(N_, N_), alpha=r(B_, N_)))
    with pytest.raises(ValueError, match=r"^alpha must have shape"):
        hebbkern.plastic_rnn(**kw, backend="cpu")


RAW_REFUSED = [
    ("w", r(B_ + 1, N_, N_), r"w must have shape \[2, 4, 4\]"),
    (
        "alpha",
        r(B_, 2, N_),
        r"alpha must be .* per sample \[B, N, N\], \[B, 1, N\] or \[B, 1, 1\] with B = 2, N = 4",
    ),
    ("alpha", r(B_ + 1, 1, 1), r"alpha must be .* per sample .* got \[3, 1, 1\]"),
    ("alpha", r(1, B_, N_, N_), r"alpha must be \[N, N\], \[N\], 0-dim, \[B, N, N\]"),
    ("eta", r(B_ + 1), r"eta must have one element or one per sample \(\[B\] = \[2\]\)"),
]


@pytest.mark.parametrize("name, value, match", RAW_REFUSED)
def test_raw_op_checks_shapes(name, value, match):
    """The C++ raw op checks the canonical forms itself: no out-of-bounds read whatever it gets."""
    kw = _bad({name: value}) if name != "alpha" else _bad({})
    alpha = value if name == "alpha" else kw["alpha"]
    with pytest.raises(ValueError, match=match):
        torch.ops.hebbkern.plastic_rnn_fwd(*raw_args(kw, alpha))
