"""The raw custom ops ``torch.ops.hebbkern.plastic_rnn_fwd`` / ``plastic_rnn_bwd`` check their
arguments in C++: called without hebbkern's Python checks, a bad shape, dtype or an argument the
rule does not use raises ``ValueError``/``TypeError`` instead of reading out of bounds."""

from __future__ import annotations

import pytest
import torch
from helpers import fused_args, make_inputs

from hebbkern._validation import MODULATED_RULES, RULES
from hebbkern.ops.plastic_rnn import checkpoint_interval

T, B, N = 5, 2, 4
K = checkpoint_interval(T)
f64 = torch.float64
fwd = torch.ops.hebbkern.plastic_rnn_fwd
bwd = torch.ops.hebbkern.plastic_rnn_bwd

# Positions in the fwd schema.
U, W, ALPHA, H0, HEBB0, ELIG0, CLAMP, ETA, MOD_W, MOD_B, FAN_W, FAN_B, RULE, CLIP, CKPT = range(15)


def valid(rule: str) -> list:
    kw = make_inputs(rule, "per_connection", rule in MODULATED_RULES, True, T=T, B=B, N=N, seed=3,
                     requires_grad=False)  # fmt: skip
    return list(fused_args(kw, K))


def randn(*shape, dtype=f64):
    return torch.randn(shape, dtype=dtype)


# (id, rule, {position: value}, exception, message regex)
FWD_CASES = [
    ("alpha-1d-size", "hebb", {ALPHA: randn(N + 1)}, ValueError, "alpha must have shape"),
    ("alpha-2d-size", "hebb", {ALPHA: randn(N, N + 1)}, ValueError, "alpha must have shape"),
    ("alpha-rank3", "hebb", {ALPHA: randn(1, N, N)}, ValueError, "alpha must be"),
    ("alpha-dtype", "hebb", {ALPHA: randn(N, N, dtype=torch.float32)}, TypeError, "alpha must have the dtype"),
    ("w-size", "oja", {W: randn(N, N - 1)}, ValueError, "w must have shape"),
    ("h0-size", "hebb", {H0: randn(B + 1, N)}, ValueError, "h0 must have shape"),
    ("hebb0-size", "clip", {HEBB0: randn(B, N, N - 1)}, ValueError, "hebb0 must have shape"),
    ("hebb0-empty", "hebb", {HEBB0: randn(0)}, ValueError, "hebb0 must have shape"),
    ("elig0-size", "retro", {ELIG0: randn(B, N, 1)}, ValueError, "elig0 must have shape"),
    ("elig0-for-hebb", "hebb", {ELIG0: randn(B, N, N)}, ValueError, "elig0 is only used by rule 'retro'"),
    ("clamp-size", "hebb", {CLAMP: torch.ones(T, B, 1, dtype=torch.bool)}, ValueError, "clamp_mask must be"),
    ("eta-missing", "oja", {ETA: None}, ValueError, "needs eta"),
    ("eta-numel", "hebb", {ETA: randn(B + 1)}, ValueError, "eta must have one element"),  # [B]: per sample
    ("eta-empty", "retro", {ETA: randn(0)}, ValueError, "eta must have one element"),
    ("eta-for-neuromod", "neuromod", {ETA: randn()}, ValueError, "eta is only used by"),
    ("mod_w-empty", "neuromod", {MOD_W: randn(0)}, ValueError, "mod_w must have shape"),
    ("mod_w-missing", "retro", {MOD_W: None}, ValueError, "needs mod_w"),
    ("mod_w-for-hebb", "hebb", {MOD_W: randn(N)}, ValueError, "mod_w is only used by"),
    ("mod_b-numel", "neuromod", {MOD_B: randn(N)}, ValueError, "mod_b must have one element"),
    ("fanout_w-size", "neuromod", {FAN_W: randn(N + 2)}, ValueError, "fanout_w must have shape"),
    ("fanout_b-empty", "retro", {FAN_B: randn(0)}, ValueError, "fanout_b must have shape"),
    ("fanout-alone", "neuromod", {FAN_B: None}, ValueError, "fanout_w and fanout_b go together"),
    ("fanout-for-clip", "clip", {FAN_W: randn(N), FAN_B: randn(N)}, ValueError, "fanout_w is only used by"),
    ("u-float16", "hebb", {U: randn(T, B, N).half()}, TypeError, "float32 or float64"),
    ("u-int", "hebb", {U: torch.ones(T, B, N, dtype=torch.int64)}, TypeError, "float32 or float64"),
    ("u-rank2", "hebb", {U: randn(B, N)}, ValueError, "u must be"),
    ("clip-zero", "clip", {CLIP: 0.0}, ValueError, "clip must be > 0"),
    ("clip-nan", "neuromod", {CLIP: float("nan")}, ValueError, "clip must be > 0"),
    ("ckpt-zero", "hebb", {CKPT: 0}, ValueError, "ckpt_every must be >= 1"),
    ("rule-unknown", "hebb", {RULE: "hebbian"}, ValueError, "unknown rule"),
]  # fmt: skip


@pytest.mark.parametrize(
    "rule, change, exc, match", [pytest.param(*c[1:], id=c[0]) for c in FWD_CASES]
)
def test_fwd_rejects(rule, change, exc, match):
    args = valid(rule)
    fwd(*args)  # the unchanged call is accepted: the error below comes from the change
    for pos, value in change.items():
        args[pos] = value
    with pytest.raises(exc, match=match):
        fwd(*args)


def bwd_args(rule: str) -> dict:
    """Valid arguments of plastic_rnn_bwd, from a forward run with the same checkpoint interval."""
    a = valid(rule)
    h, hebb, elig, hebb_ckpt, elig_ckpt, mod = fwd(*a)
    retro = rule == "retro"
    return dict(
        grad_h=torch.randn_like(h), grad_hebb=torch.randn_like(hebb),
        grad_elig=torch.randn_like(elig) if retro else None, u=a[U], w=a[W], alpha=a[ALPHA],
        h0=a[H0], h=h, hebb_ckpt=hebb_ckpt, elig_ckpt=elig_ckpt, mod=mod, clamp_mask=a[CLAMP],
        eta=a[ETA], mod_w=a[MOD_W], mod_b=a[MOD_B], fanout_w=a[FAN_W], fanout_b=a[FAN_B],
        rule=rule, clip=a[CLIP], ckpt_every=a[CKPT],
    )  # fmt: skip


BWD_CASES = [
    ("hebb_ckpt-interval", "hebb", {"ckpt_every": 1}, "hebb_ckpt must have shape"),
    ("hebb_ckpt-empty", "oja", {"hebb_ckpt": randn(0)}, "hebb_ckpt must have shape"),
    ("elig_ckpt-empty", "retro", {"elig_ckpt": randn(0)}, "elig_ckpt must have shape"),
    ("mod-empty", "neuromod", {"mod": randn(0)}, "mod must have shape"),
    ("mod-short", "retro", {"mod": randn(T - 1, B)}, "mod must have shape"),
    ("h-short", "clip", {"h": randn(T - 1, B, N)}, "h must have shape"),
    ("grad_h-size", "hebb", {"grad_h": randn(T, B, N + 1)}, "grad_h must have shape"),
    ("grad_hebb-size", "neuromod", {"grad_hebb": randn(B, N, 1)}, "grad_hebb must have shape"),
    ("grad_elig-for-hebb", "hebb", {"grad_elig": randn(B, N, N)}, "grad_elig is only used by"),
    ("grad_elig-size", "retro", {"grad_elig": randn(B, 1, N)}, "grad_elig must have shape"),
    ("mod_w-empty", "neuromod", {"mod_w": randn(0)}, "mod_w must have shape"),
]  # fmt: skip


@pytest.mark.parametrize("rule, change, match", [pytest.param(*c[1:], id=c[0]) for c in BWD_CASES])
def test_bwd_rejects(rule, change, match):
    kw = bwd_args(rule)
    bwd(**kw)
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        bwd(**kw)


@pytest.mark.parametrize("rule", RULES)
def test_bwd_opcheck(rule):
    """The backward op on its own: schema, fake kernel (shapes and strides) and no aliasing between
    its outputs (several of which are empty for a rule that does not use the input)."""
    kw = bwd_args(rule)
    torch.library.opcheck(bwd.default, (), kw)


def test_bwd_opcheck_transposed_alpha():
    """dalpha is contiguous whatever alpha's strides: the fake kernel must say so."""
    kw = bwd_args("neuromod")
    kw.update(alpha=kw["alpha"].t())
    torch.library.opcheck(bwd.default, (), kw)


def test_bwd_opcheck_scalar_alpha_without_grads_of_state():
    kw = bwd_args("hebb")
    kw.update(alpha=kw["alpha"][0, 0].clone(), grad_hebb=None, h0=None)
    torch.library.opcheck(bwd.default, (), kw)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_backward_with_transposed_alpha(backend):
    """alpha given as a transposed view through a compiled graph: the gradients match eager."""
    import hebbkern

    kw = make_inputs("neuromod", "per_connection", True, False, T=4, B=2, N=5, seed=4,
                     requires_grad=False)  # fmt: skip
    alpha_t = kw["alpha"].t().contiguous().requires_grad_()
    w = kw["w"].clone().requires_grad_()

    def f(alpha_t, w):
        h, state = hebbkern.plastic_rnn(**{**kw, "alpha": alpha_t.t(), "w": w}, backend="cpu")
        return h.square().sum() + state.hebb.sum()

    f(alpha_t, w).backward()
    expect_a, expect_w = alpha_t.grad.clone(), w.grad.clone()
    alpha_t.grad = w.grad = None
    torch._dynamo.reset()
    torch.compile(f, backend=backend, fullgraph=True)(alpha_t, w).backward()
    torch.testing.assert_close(alpha_t.grad, expect_a, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w.grad, expect_w, rtol=1e-10, atol=1e-12)
