"""Per-sample parameters (a population, issue 13 item 3) in the Triton kernels, on CPU tensors
under the Triton interpreter, against the per-sample oracle of POPULATION.md: the shared-parameter
reference run once per sample, gradients by autograd through that loop.

The raw ops (``plastic_rnn_triton_fwd``, its registered backward ``plastic_rnn_triton_bwd``) take
the canonical forms the public op makes: ``w`` ``[B, N, N]``; ``alpha`` ``[B, N, N]`` /
``[B, 1, N]`` / ``[B, 1, 1]``; ``eta`` ``[B]``; the gradients must come back in those shapes.

Run by test_plastic_rnn_population_triton.py::test_interpreter_suite in its own pytest process
with ``TRITON_INTERPRET=1`` set before triton is imported. By hand::

    cd tests && TRITON_INTERPRET=1 python -m pytest interpret_plastic_rnn_population_triton.py -q
"""

from __future__ import annotations

import pytest
import torch
from helpers import ETA_RULES, MODULATED_RULES, make_inputs, rel_err
from triton_checks import TOL, record_plastic_rnn_launches
from triton_env import needs_interpreter

import hebbkern
from hebbkern._variants import check_variants
from hebbkern.ops.plastic_rnn import checkpoint_interval

pytestmark = needs_interpreter

F32, F64 = torch.float32, torch.float64
# helpers.RULES and gated (its modulation takes the place of eta; SPEC.md section 1.1).
RULES = ("hebb", "oja", "clip", "neuromod", "retro", "gated")
# Per-sample alpha kinds: the canonical shapes' last two sizes.
ALPHA_SHAPES = {"per_connection": lambda N: (N, N), "per_neuron": lambda N: (1, N),
                "scalar": lambda N: (1, 1)}  # fmt: skip
RAW_ORDER = ("u", "w", "alpha", "h0", "hebb0", "elig0", "clamp_mask", "eta", "mod_w", "mod_b",
             "fanout_w", "fanout_b")  # fmt: skip


def population_inputs(rule, alpha_kind, fanout, clamp, T, B, N, dtype=F32, seed=0,
                      w_ps=True, a_ps=True, eta_ps=True) -> dict:  # fmt: skip
    """make_inputs' arguments with w, alpha and eta per sample where asked (canonical forms; a
    shared alpha keeps make_inputs' shape), each sample's values distinct. Every tensor is a leaf
    requiring a gradient."""
    kw = make_inputs(rule, alpha_kind, fanout, clamp, T=T, B=B, N=N, seed=seed)
    g = torch.Generator().manual_seed(seed + 1000)
    s = 1.0 / N**0.5

    def rnd(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=F64)

    if w_ps:
        kw["w"] = rnd(B, N, N, scale=s)
    if a_ps:
        kw["alpha"] = rnd(B, *ALPHA_SHAPES[alpha_kind](N), scale=s)
    if eta_ps and rule in ETA_RULES:
        kw["eta"] = 0.1 + 0.4 * torch.rand(B, generator=g, dtype=F64)
    if rule == "gated":  # the reference's gated rule takes no eta
        kw.pop("eta", None)
    for k, v in kw.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            kw[k] = v.detach().to(dtype).requires_grad_()
    return kw


def _leaves(kw: dict, dtype=None, device="cpu") -> dict:
    """Fresh copies (on ``device``, optionally cast); the floating ones leaves requiring grad."""
    out = dict(kw)
    for k, v in kw.items():
        if isinstance(v, torch.Tensor):
            c = v.detach().to(device, dtype if v.is_floating_point() and dtype else v.dtype,
                              copy=True)  # fmt: skip
            out[k] = c.requires_grad_() if c.is_floating_point() else c
    return out


def _sample_alpha(alpha, b):
    """Sample b's alpha in the shared reference's forms: [N, N], [N] or 0-dim."""
    if alpha.dim() < 3:
        return alpha
    a = alpha[b]
    return a if a.shape[0] != 1 else (a[0] if a.shape[1] != 1 else a[0, 0])


def oracle(kw: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """POPULATION.md's oracle: the reference once per sample (its own w[b], alpha and eta[b]),
    results stacked: (h [T, B, N], hebb [B, N, N], elig [B, N, N] or None)."""
    B = kw["u"].shape[1]
    hs, hebbs, eligs = [], [], []
    for b in range(B):
        one = {k: kw[k] for k in ("mod_w", "mod_b", "fanout_w", "fanout_b") if k in kw}
        if "eta" in kw:
            one["eta"] = kw["eta"][b] if kw["eta"].dim() == 1 else kw["eta"]
        for k in ("h0", "hebb0", "elig0"):
            if k in kw:
                one[k] = kw[k][b : b + 1]
        if "clamp_mask" in kw:
            one["clamp_mask"] = kw["clamp_mask"][:, b : b + 1]
        w = kw["w"][b] if kw["w"].dim() == 3 else kw["w"]
        h, st = hebbkern.reference.plastic_rnn(
            kw["u"][:, b : b + 1], w, _sample_alpha(kw["alpha"], b), rule=kw["rule"],
            clip=kw["clip"], **one, **kw.get("variants", {}),
        )  # fmt: skip
        hs.append(h)
        hebbs.append(st.hebb)
        eligs.append(st.elig)
    elig = torch.cat(eligs) if kw["rule"] == "retro" else None
    return torch.cat(hs, dim=1), torch.cat(hebbs), elig


def triton_raw(kw: dict, ckpt_every: int | None = None):
    """The raw Triton forward on the canonical inputs: (h, hebb, elig or None)."""
    from hebbkern.triton.plastic_rnn_ops import plastic_rnn_triton_fwd

    T, _, N = kw["u"].shape
    args = [kw.get(k) for k in RAW_ORDER]
    code = check_variants(kw["rule"], N, **kw.get("variants", {})).code
    h, hebb, elig, _, _, _ = plastic_rnn_triton_fwd(
        *args, kw["rule"], float(kw["clip"]), ckpt_every or checkpoint_interval(T), code
    )
    return h, hebb, elig if kw["rule"] == "retro" else None


def check_population(kw: dict, tol: float, ckpt_every: int | None = None, seed: int = 1,
                     device="cpu"):  # fmt: skip
    """The raw Triton ops on ``device`` (forward, then backward with random incoming gradients of
    h, hebb and elig) against the oracle run in float64 on the CPU on the same values: every
    output, and the gradient of every input in its own (canonical) shape."""
    kt, kr = _leaves(kw, device=device), _leaves(kw, F64)
    out_t, out_r = triton_raw(kt, ckpt_every), oracle(kr)
    g = torch.Generator().manual_seed(seed)
    names = [k for k, v in kw.items() if isinstance(v, torch.Tensor) and v.requires_grad]
    loss_t, loss_r = 0, 0
    for name, ot, orf in zip(("h", "hebb", "elig"), out_t, out_r, strict=True):
        if orf is None:
            assert ot is None
            continue
        assert ot.shape == orf.shape and ot.dtype == kw["u"].dtype, name
        assert torch.isfinite(ot).all(), name
        err = rel_err(ot.detach().cpu(), orf.detach())
        assert err < tol, f"output {name}: relative error {err:.3g} >= {tol:g}"
        wt = torch.randn(orf.shape, generator=g, dtype=F64)
        loss_t = loss_t + (ot * wt.to(ot.device, ot.dtype)).sum()
        loss_r = loss_r + (orf * wt).sum()
    g_t = torch.autograd.grad(loss_t, [kt[n] for n in names], allow_unused=True)
    g_r = torch.autograd.grad(loss_r, [kr[n] for n in names], allow_unused=True)
    for name, a, r in zip(names, g_t, g_r, strict=True):
        assert r is not None and r.norm() > 0, f"oracle gradient of {name} is zero: vacuous"
        assert a is not None, f"no triton gradient for {name}"
        assert a.shape == kw[name].shape and a.dtype == kw["u"].dtype, (name, a.shape)
        assert torch.isfinite(a).all(), f"non-finite gradient of {name}"
        err = rel_err(a.detach().cpu(), r)
        assert err < tol, f"gradient of {name}: relative error {err:.3g} >= {tol:g}"


def _cases():
    """Every rule x per-sample alpha kind; fan-out for the modulated rules and the clamp mask on
    alternate alpha kinds, so each is on and off for every rule."""
    for rule in RULES:
        for i, ak in enumerate(ALPHA_SHAPES):
            fan = rule in (*MODULATED_RULES, "gated") and i != 1
            yield pytest.param(
                rule, ak, fan, i != 2, id=f"{rule}-{ak}-fan{int(fan)}-clamp{int(i != 2)}"
            )


@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", list(_cases()))
def test_population_matches_oracle(rule, alpha_kind, fanout, clamp, nan_poison):
    """w, alpha and eta all per sample; N = 11: a partial second row block of 8."""
    kw = population_inputs(rule, alpha_kind, fanout, clamp, T=5, B=3, N=11, seed=7)
    check_population(kw, TOL[F32])


@pytest.mark.parametrize(
    "w_ps, a_ps, eta_ps, alpha_kind",
    [(False, True, False, "per_connection"),  # shared w, per-sample alpha (as plastic_step takes)
     (False, False, True, "per_neuron"),  # only eta per sample
     (True, False, False, "scalar"),  # per-sample w with a shared 0-dim alpha
     (True, True, False, "per_neuron"),
     (False, True, True, "scalar")],
)  # fmt: skip
@pytest.mark.parametrize("rule", ["hebb", "retro"])
def test_mixed_sharing(rule, w_ps, a_ps, eta_ps, alpha_kind, nan_poison):
    """Some parameters per sample, the others shared: the shared ones' gradients are summed over
    the batch, the per-sample ones' are not."""
    kw = population_inputs(rule, alpha_kind, rule == "retro", True, T=4, B=3, N=6, seed=3,
                           w_ps=w_ps, a_ps=a_ps, eta_ps=eta_ps)  # fmt: skip
    assert (kw["w"].dim() == 3) == w_ps and (kw["alpha"].dim() == 3) == a_ps
    check_population(kw, TOL[F32])


@pytest.mark.parametrize(
    "rule, alpha_kind", [("oja", "per_connection"), ("retro", "per_neuron"), ("neuromod", "scalar")]
)
def test_float64(rule, alpha_kind, nan_poison):
    kw = population_inputs(rule, alpha_kind, rule != "oja", True, T=6, B=2, N=10, dtype=F64,
                           seed=5)  # fmt: skip
    check_population(kw, TOL[F64])


@pytest.mark.parametrize(
    "shape",
    [
        (5, 1, 9),
        (3, 2, 1),
        (3, 2, 17),
        (17, 2, 5),
    ],  # B = 1; N = 1; odd N; K = 5 with a ragged chunk
    ids=lambda s: "T{}-B{}-N{}".format(*s),
)
@pytest.mark.parametrize("rule, alpha_kind", [("clip", "per_connection"), ("retro", "per_neuron")])
def test_odd_sizes(shape, rule, alpha_kind, nan_poison):
    T, B, N = shape
    kw = population_inputs(rule, alpha_kind, rule == "retro", True, T=T, B=B, N=N, seed=T + N)
    check_population(kw, TOL[F32])


@pytest.mark.parametrize(
    "rule, variants",
    [("neuromod", {"n_modulated": 6, "soft_clip": True, "activation": "selu",
                   "mod_squash": "sigmoid"}),
     ("retro", {"soft_clip": True, "activation": "sigmoid", "mod_squash": "identity"}),
     ("hebb", {"activation": "relu"})],
)  # fmt: skip
def test_variants(rule, variants, nan_poison):
    """The variants of SPEC.md section 1.1 with per-sample parameters; neuromod with unmodulated
    neurons takes eta (per sample here) as their rate."""
    kw = population_inputs(rule, "per_neuron", rule != "hebb", True, T=5, B=3, N=9, seed=6)
    if "n_modulated" in variants:
        g = torch.Generator().manual_seed(6)
        kw["eta"] = (0.1 + 0.4 * torch.rand(3, generator=g)).requires_grad_()
    kw["variants"] = variants
    check_population(kw, TOL[F32])


@pytest.mark.parametrize("ckpt_every", [1, 4])
def test_any_checkpoint_interval(ckpt_every, nan_poison):
    kw = population_inputs("retro", "per_connection", True, True, T=7, B=2, N=5, seed=2)
    check_population(kw, TOL[F32], ckpt_every=ckpt_every)


def test_samples_are_independent():
    """Changing sample 1's w, alpha and eta leaves sample 0's outputs bit for bit as they were (no
    sample reads another's slab)."""
    kw = population_inputs("retro", "per_connection", True, True, T=4, B=2, N=9, seed=4)
    before = triton_raw(_leaves(kw))
    changed = _leaves(kw)
    with torch.no_grad():
        for k in ("w", "alpha", "eta"):
            changed[k][1] += 0.25
    after = triton_raw(changed)
    assert torch.equal(before[0][:, 0], after[0][:, 0])
    assert torch.equal(before[1][0], after[1][0]) and torch.equal(before[2][0], after[2][0])
    assert not torch.equal(before[1][1], after[1][1])


@pytest.mark.parametrize("rule", ["hebb", "retro"])
def test_opcheck(rule):
    """Schema, autograd registration and fake tensors with per-sample parameters (the traced
    test_aot_dispatch_dynamic runs on a GPU only: the interpreter's kernels cannot be traced)."""
    kw = population_inputs(rule, "per_neuron", rule == "retro", True, T=4, B=2, N=3, seed=8)
    args = (*(kw.get(k) for k in RAW_ORDER), rule, float(kw["clip"]), checkpoint_interval(4))
    torch.library.opcheck(
        torch.ops.hebbkern.plastic_rnn_triton_fwd.default,
        args,
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )


@pytest.mark.parametrize("rule, alpha_kind", [("retro", "per_neuron"), ("clip", "scalar")])
def test_gradcheck_float64(rule, alpha_kind):
    """torch.autograd.gradcheck of the raw ops (forward and registered backward) in float64 with
    u, w, alpha and eta per sample as the differentiated inputs (small sizes: the interpreter)."""
    kw = population_inputs(rule, alpha_kind, rule == "retro", True, T=3, B=2, N=3, dtype=F64,
                           seed=12)  # fmt: skip
    names = ("u", "w", "alpha", "eta")
    fixed = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}

    def f(*xs):
        h, hebb, elig = triton_raw({**fixed, **dict(zip(names, xs, strict=True))})
        return (h, hebb) if elig is None else (h, hebb, elig)

    leaves = [kw[k].detach().clone().requires_grad_() for k in names]
    assert torch.autograd.gradcheck(f, leaves, fast_mode=True)


@pytest.mark.parametrize("rule", ["hebb", "neuromod", "retro"])
@pytest.mark.parametrize("alpha_form", ["[B, N, N]", "[B, N]", "[B]", "[]"])
def test_public_op_forms(rule, alpha_form, nan_poison):
    """The public op with backend="triton" on the user's forms (alpha [B, N, N] / [B, N] / [B] /
    a shared scalar, eta [B], w [B, N, N]): the op turns them into the canonical forms and the
    gradients come back in the user's shapes, equal to the reference's in float64."""
    T, B, N = 4, 3, 5
    g = torch.Generator().manual_seed(21)
    shape = {"[B, N, N]": (B, N, N), "[B, N]": (B, N), "[B]": (B,), "[]": ()}[alpha_form]
    kw = make_inputs(rule, "per_connection", rule == "retro", False, T=T, B=B, N=N, seed=21)
    base = {
        "u": kw["u"], "w": 0.3 * torch.randn(B, N, N, generator=g, dtype=F64),
        "alpha": 0.2 * torch.randn(shape, generator=g, dtype=F64),
    }  # fmt: skip
    opts = {k: kw[k] for k in ("mod_w", "mod_b", "fanout_w", "fanout_b") if k in kw}
    if rule in ETA_RULES:
        opts["eta"] = 0.1 + 0.4 * torch.rand(B, generator=g, dtype=F64)
    runs = {}
    for backend in ("reference", "triton"):
        leaves = {
            k: v.detach().to(F64).clone().requires_grad_() for k, v in {**base, **opts}.items()
        }
        rest = {k: v for k, v in leaves.items() if k not in ("u", "w", "alpha")}
        h, st = hebbkern.plastic_rnn(
            leaves["u"], leaves["w"], leaves["alpha"], rule=rule, clip=kw["clip"], backend=backend,
            **rest,
        )  # fmt: skip
        outs = [h, st.hebb] + ([st.elig] if rule == "retro" else [])
        weights = [torch.linspace(-1, 1, o.numel(), dtype=F64).view_as(o) for o in outs]
        sum((o * c).sum() for o, c in zip(outs, weights, strict=True)).backward()
        runs[backend] = (outs, leaves)
    (ref_o, ref_l), (tri_o, tri_l) = runs["reference"], runs["triton"]
    for a, b in zip(ref_o, tri_o, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    for k, leaf in ref_l.items():
        assert tri_l[k].grad.shape == leaf.shape, k  # the user's form, not the canonical one
        torch.testing.assert_close(tri_l[k].grad, leaf.grad, rtol=1e-10, atol=1e-12, msg=k)


# ---------------------------------------------------------------------------------------------
# The resident kernels (issue 13 item 4) with per-sample parameters: the interpreter runs them up
# to the GPU's widths (forward N <= 64, backward N <= 32).


@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", list(_cases()))
def test_resident_population_matches_oracle(rule, alpha_kind, fanout, clamp, monkeypatch,
                                            nan_poison):  # fmt: skip
    seen = record_plastic_rnn_launches(monkeypatch, 64)
    kw = population_inputs(rule, alpha_kind, fanout, clamp, T=7, B=3, N=27, seed=27)
    check_population(kw, TOL[F32])
    assert [(k, r) for k, _, r in seen] == [("fwd", True), ("bwd", True)]


@pytest.mark.parametrize("shape", [(5, 2, 1), (9, 1, 7), (6, 2, 51)],
                         ids=lambda s: "T{}-B{}-N{}".format(*s))  # fmt: skip
@pytest.mark.parametrize("rule, alpha_kind", [("clip", "per_connection"), ("retro", "per_neuron")])
def test_resident_odd_sizes(shape, rule, alpha_kind, monkeypatch, nan_poison):
    """N = 1 and 7 (both kernels resident), 51 (resident forward, tiled backward)."""
    seen = record_plastic_rnn_launches(monkeypatch, 64)
    T, B, N = shape
    kw = population_inputs(rule, alpha_kind, rule == "retro", True, T=T, B=B, N=N, seed=T + N)
    check_population(kw, TOL[F32])
    assert [(k, r) for k, _, r in seen] == [("fwd", True), ("bwd", N <= 32)]
