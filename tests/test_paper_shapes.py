"""The papers' shapes (issue 20, item 1): alpha ``[1]`` and ``[1, 1, N]``, ``nn.Linear`` weights
for the modulator (``[1, N]``) and the fan-out (``[N, 1]``), unbatched traces ``[N, N]``.

Each accepted form is run against the canonical call on the same numbers, on the reference and
the CPU kernel: the outputs must be equal and the gradient of the paper-shaped tensor must be the
canonical gradient brought back to its shape (a reshape for the views, a sum over the batch for a
broadcast trace). gradcheck in float64 on the paper forms; one op under torch.compile; the shapes
still refused raise a ValueError naming the argument.
"""

from __future__ import annotations

import pytest
import torch

import hebbkern

B, N, T = 3, 5, 4
f64 = torch.float64
BACKENDS = ("reference", "cpu")


def _rand(*shape, seed, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=g, dtype=f64)


# The accepted paper forms: (argument, paper shape, canonical shape, how the canonical value is
# made from the paper value, how a canonical gradient is brought back to the paper shape).
def _view(shape):
    return lambda x: x.reshape(shape)


def _bcast(x):
    return x.expand(B, N, N).clone()


def _sum_batch(g):
    return g.sum(0)


PAPER_FORMS = {
    "alpha-[1]": ("alpha", (1,), _view(()), _view((1,))),
    "alpha-[1,1,N]": ("alpha", (1, 1, N), _view((N,)), _view((1, 1, N))),
    "mod_w-[1,N]": ("mod_w", (1, N), _view((N,)), _view((1, N))),
    "mod_b-[1]": ("mod_b", (1,), _view(()), _view((1,))),
    "fanout_w-[N,1]": ("fanout_w", (N, 1), _view((N,)), _view((N, 1))),
}


def _base(rule: str, seed: int = 0) -> dict:
    """Canonical float64 arguments of a modulated step/sequence (the rule's own scalars only)."""
    kw = {
        "w": _rand(N, N, seed=seed + 1),
        "alpha": _rand(N, N, seed=seed + 2),
        "rule": rule,
        "clip": 0.4,  # low enough that some trace entries sit on the bound
    }
    if rule in ("hebb", "oja", "clip", "retro"):
        kw["eta"] = torch.tensor(0.3, dtype=f64)
    if rule in ("neuromod", "retro"):
        kw["mod_w"] = _rand(N, seed=seed + 3)
        kw["mod_b"] = torch.tensor(0.1, dtype=f64)
        kw["fanout_w"] = _rand(N, seed=seed + 4)
        kw["fanout_b"] = _rand(N, seed=seed + 5)
    return kw


def _paper_pair(kw: dict, form: str):
    """``(paper kwargs, canonical kwargs, name, back)``: leaves requiring grad in both."""
    name, shape, to_canon, back = PAPER_FORMS[form]
    paper = dict(kw)
    paper[name] = kw[name].reshape(shape) if name != "alpha" else _alpha_of(shape)
    canon = dict(paper)
    canon[name] = to_canon(paper[name])
    return _leaves(paper), _leaves(canon), name, back


def _unbatched_pair(kw: dict, trace: str, seed: int):
    """``(paper, canonical)`` kwargs: ``trace`` unbatched ``[N, N]`` against its broadcast."""
    paper = dict(kw)
    paper[trace] = _rand(N, N, seed=seed)
    paper = _leaves(paper)
    canon = dict(paper)
    canon[trace] = _bcast(paper[trace])
    return paper, _leaves(canon)


def _all_paper_forms(kw: dict, traces: tuple[str, ...]) -> dict:
    """Every paper form at once: alpha [1, 1, N], the nn.Linear modulator and fan-out, mod_b [1]
    and the given traces unbatched; leaves for gradcheck."""
    kw = dict(kw, alpha=_rand(1, 1, N, seed=5))
    kw["mod_w"] = kw["mod_w"].reshape(1, N)
    kw["mod_b"] = kw["mod_b"].reshape(1)
    kw["fanout_w"] = kw["fanout_w"].reshape(N, 1)
    for i, name in enumerate(traces):
        kw[name] = _rand(N, N, seed=6 + i)
    return _leaves(kw)


def _gradcheck(kw: dict, fn) -> bool:
    """gradcheck of ``fn(kwargs) -> outputs`` over every tensor of ``kw`` (None outputs dropped)."""
    names = [k for k, v in kw.items() if isinstance(v, torch.Tensor)]

    def f(*tensors):
        args = dict(kw)
        args.update(zip(names, tensors, strict=True))
        return tuple(o for o in fn(args) if o is not None)

    return torch.autograd.gradcheck(f, tuple(kw[k] for k in names))


def _alpha_of(shape):
    return _rand(*shape, seed=77)


def _leaves(kw: dict) -> dict:
    return {
        k: v.detach().clone().requires_grad_(True) if isinstance(v, torch.Tensor) else v
        for k, v in kw.items()
    }


def _loss(outs) -> torch.Tensor:
    total = 0
    for i, o in enumerate(outs):
        if o is not None:
            total = total + (_rand(*o.shape, seed=100 + i) * o).sum()
    return total


def _compare(paper: dict, canon: dict, name: str, back, fn):
    out_p, out_c = fn(paper), fn(canon)
    for a, b in zip(out_p, out_c, strict=True):
        if a is None:
            assert b is None
            continue
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)
    _loss(out_p).backward()
    _loss(out_c).backward()
    for k, v in paper.items():
        if not isinstance(v, torch.Tensor) or k in ("u",):
            continue
        want = canon[k].grad if k != name else back(canon[k].grad)
        assert v.grad is not None, k
        assert v.grad.shape == v.shape, k
        torch.testing.assert_close(v.grad, want, rtol=1e-12, atol=1e-13, msg=k)


# ---------------------------------------------------------------------------------------------
# plastic_step
# ---------------------------------------------------------------------------------------------


def _step_fn(backend):
    def fn(kw):
        return tuple(hebbkern.plastic_step(backend=backend, **kw))

    return fn


def _step_kw(rule, seed=0):
    kw = _base(rule, seed)
    kw["u"] = _rand(B, N, seed=seed + 10, scale=1.0)
    kw["h"] = _rand(B, N, seed=seed + 11)
    kw["hebb"] = _rand(B, N, N, seed=seed + 12)
    if rule == "retro":
        kw["elig"] = _rand(B, N, N, seed=seed + 13)
    return kw


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("form", list(PAPER_FORMS))
@pytest.mark.parametrize("rule", ["neuromod", "retro", "hebb"])
def test_step_paper_forms(rule, form, backend):
    name = PAPER_FORMS[form][0]
    if name in ("mod_w", "mod_b", "fanout_w") and rule == "hebb":
        pytest.skip("no modulator in rule 'hebb'")
    paper, canon, name, back = _paper_pair(_step_kw(rule), form)
    _compare(paper, canon, name, back, _step_fn(backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "rule,trace", [("hebb", "hebb"), ("oja", "hebb"), ("retro", "hebb"), ("retro", "elig")]
)
def test_step_unbatched_trace(rule, trace, backend):
    paper, canon = _unbatched_pair(_step_kw(rule), trace, seed=55)
    _compare(paper, canon, trace, _sum_batch, _step_fn(backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_gradcheck_paper_shapes(backend):
    """Every paper form at once, gradcheck in float64 (small sizes)."""
    kw = _all_paper_forms(_step_kw("retro"), ("hebb", "elig"))
    assert _gradcheck(kw, _step_fn(backend))


def test_step_compile_fullgraph_paper_shapes():
    kw = _step_kw("neuromod")
    kw["alpha"] = _rand(1, seed=8)
    kw["mod_w"] = kw["mod_w"].reshape(1, N)
    kw["fanout_w"] = kw["fanout_w"].reshape(N, 1)
    kw["hebb"] = _rand(N, N, seed=9)
    eager = hebbkern.plastic_step(backend="cpu", **kw)

    # aot_eager: dynamo traces the views in one graph and autograd runs through the fake kernels.
    @torch.compile(fullgraph=True, backend="aot_eager")
    def step(u, h, hebb, w, alpha, mod_w, mod_b, fanout_w, fanout_b):
        return hebbkern.plastic_step(
            u, h, hebb, w, alpha, rule="neuromod", mod_w=mod_w, mod_b=mod_b, fanout_w=fanout_w,
            fanout_b=fanout_b, clip=0.4, backend="cpu",
        )  # fmt: skip

    names = ("u", "h", "hebb", "w", "alpha", "mod_w", "mod_b", "fanout_w", "fanout_b")
    leaves = _leaves({k: kw[k] for k in names})
    out = step(*(leaves[k] for k in names))
    for a, b in zip(out, eager, strict=True):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-14)
    out.h.sum().backward()
    assert leaves["hebb"].grad.shape == (N, N)
    assert leaves["alpha"].grad.shape == (1,)
    assert leaves["fanout_w"].grad.shape == (N, 1)


# ---------------------------------------------------------------------------------------------
# plastic_rnn and plastic_lstm (sequences)
# ---------------------------------------------------------------------------------------------


def _rnn_kw(rule, seed=0):
    kw = _base(rule, seed)
    kw["u"] = _rand(T, B, N, seed=seed + 20, scale=1.0)
    kw["h0"] = _rand(B, N, seed=seed + 21)
    kw["hebb0"] = _rand(B, N, N, seed=seed + 22)
    if rule == "retro":
        kw["elig0"] = _rand(B, N, N, seed=seed + 23)
    return kw


def _lstm_kw(rule, seed=0):
    kw = _base(rule, seed)
    del kw["w"]
    kw["wh"] = _rand(N, 4 * N, seed=seed + 30)
    kw["u"] = _rand(T, B, 4 * N, seed=seed + 31, scale=1.0)
    kw["h0"] = _rand(B, N, seed=seed + 32)
    kw["c0"] = _rand(B, N, seed=seed + 33)
    kw["hebb0"] = _rand(B, N, N, seed=seed + 34)
    return kw


def _seq_fn(op, backend):
    def fn(kw):
        h, state = op(backend=backend, **kw)
        return (h, *state)

    return fn


SEQ_OPS = {"rnn": (hebbkern.plastic_rnn, _rnn_kw), "lstm": (hebbkern.plastic_lstm, _lstm_kw)}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("form", list(PAPER_FORMS))
@pytest.mark.parametrize("op", list(SEQ_OPS))
def test_sequence_paper_forms(op, form, backend):
    fn, make = SEQ_OPS[op]
    paper, canon, name, back = _paper_pair(make("retro" if op == "rnn" else "neuromod"), form)
    _compare(paper, canon, name, back, _seq_fn(fn, backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "op,rule,trace",
    [("rnn", "hebb", "hebb0"), ("rnn", "retro", "elig0"), ("lstm", "neuromod", "hebb0")],
)
def test_sequence_unbatched_trace(op, rule, trace, backend):
    fn, make = SEQ_OPS[op]
    paper, canon = _unbatched_pair(make(rule), trace, seed=56)
    _compare(paper, canon, trace, _sum_batch, _seq_fn(fn, backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_lstm_gradcheck_paper_shapes(backend):
    """The plastic LSTM with its code's shapes: alpha [1, 1, N], nn.Linear modulator and fan-out,
    one unbatched trace."""
    kw = _all_paper_forms(_lstm_kw("neuromod"), ("hebb0",))
    assert _gradcheck(kw, _seq_fn(hebbkern.plastic_lstm, backend))


# ---------------------------------------------------------------------------------------------
# plastic_linear: the yoked alpha [1]
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batched", [False, True])
def test_plastic_linear_alpha_one(backend, batched):
    M, K = 6, 4
    x, w = _rand(B, M, seed=1), _rand(M, K, seed=2)
    hebb = _rand(*((B, M, K) if batched else (M, K)), seed=3)
    alpha = _rand(1, seed=4)
    paper = _leaves({"x": x, "w": w, "alpha": alpha, "hebb": hebb})
    canon = _leaves({"x": x, "w": w, "alpha": alpha.reshape(()), "hebb": hebb})
    _compare(
        paper, canon, "alpha", _view((1,)),
        lambda kw: (hebbkern.plastic_linear(backend=backend, **kw),),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# What is still refused (ambiguous or wrong), with the argument named
# ---------------------------------------------------------------------------------------------

REFUSED = [
    ("alpha", (1, N), r"^alpha must have shape"),
    ("alpha", (N, 1, 1), r"^alpha must have shape"),
    ("alpha", (2,), r"^alpha must have shape"),
    ("alpha", (1, 1, N + 1), r"^alpha must have shape"),
    ("mod_w", (N, 1), r"^mod_w must have shape \[5\] \(\[N\], or \[1, 5\]"),
    ("mod_w", (2, N), r"^mod_w must have shape \[5\]"),
    ("mod_b", (1, 1, 2), r"^mod_b must be a 0-dim tensor"),
    ("fanout_w", (1, N), r"^fanout_w must have shape \[5\] \(\[N\], or \[5, 1\]"),
    ("fanout_b", (1, N), r"^fanout_b must have shape"),
    ("hebb", (N, N + 1), r"^hebb must have shape \[3, 5, 5\] \(\[B, N, N\], or unbatched"),
    ("hebb", (1, N, N), r"^hebb must have shape \[3, 5, 5\]"),
    ("elig", (N + 1, N), r"^elig must have shape \[3, 5, 5\]"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,shape,match", REFUSED)
def test_step_refused_shapes(name, shape, match, backend):
    kw = _step_kw("retro")
    kw[name] = _rand(*shape, seed=9)
    with pytest.raises(ValueError, match=match):
        hebbkern.plastic_step(backend=backend, **kw)


@pytest.mark.parametrize(
    "op,name,shape", [("rnn", "hebb0", (1, N, N)), ("lstm", "hebb0", (N, N + 1)),
                      ("rnn", "elig0", (B, N)), ("lstm", "alpha", (1, N))],
)  # fmt: skip
def test_sequence_refused_shapes(op, name, shape):
    fn, make = SEQ_OPS[op]
    kw = make("retro")
    kw[name] = _rand(*shape, seed=9)
    with pytest.raises(ValueError, match=rf"^{name} must have shape"):
        fn(**kw)


def test_unbatched_trace_dtype_still_checked():
    kw = _step_kw("hebb")
    kw["hebb"] = _rand(N, N, seed=1).float()
    with pytest.raises(TypeError, match=r"^hebb must have dtype torch.float64"):
        hebbkern.plastic_step(**kw)
