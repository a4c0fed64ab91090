"""``hebbkern.nn.PlasticRNN``: construction, parameters, forward against a hand-written eager
computation, state carrying, serialisation and ``torch.compile``."""

from __future__ import annotations

import io
import math

import pytest
import torch
from helpers import ALPHA_KINDS, ETA_RULES, MODULATED_RULES, RULES, rel_err

import hebbkern
from hebbkern.nn import PlasticRNN

I, N = 5, 6  # input features, neurons


def module_cases():
    for rule in RULES:
        for ak in ALPHA_KINDS:
            for fanout in (False, True) if rule in MODULATED_RULES else (False,):
                yield pytest.param(rule, ak, fanout, id=f"{rule}-{ak}{'-fanout' if fanout else ''}")


def randomise(m: PlasticRNN, seed: int = 0) -> PlasticRNN:
    """Parameters large enough that the recurrence, the traces and the clip all matter (the papers'
    initialisation makes w and alpha tiny)."""
    g = torch.Generator().manual_seed(seed)
    s = 1.0 / math.sqrt(m.hidden_size)
    scales = {"weight_ih": 0.7, "bias_ih": 0.2, "w": s, "alpha": 2 * s, "mod_w": 1.5 * s,
              "mod_b": 0.2, "fanout_w": 1.0, "fanout_b": 0.3}  # fmt: skip
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name == "eta":
                p.fill_(0.3)
            else:
                p.copy_(scales[name] * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return m


def eager(m: PlasticRNN, x, state=None, clamp_mask=None):
    """The layer written out by hand with the module's parameters and the reference op
    (``[T, B, I]`` input, no batch_first)."""
    u = x @ m.weight_ih.T
    if m.bias_ih is not None:
        u = u + m.bias_ih
    h0 = hebb0 = elig0 = None
    if state is not None:
        h0, hebb0 = state[0], state[1]
        elig0 = state[2] if len(state) > 2 else None
    return hebbkern.reference.plastic_rnn(
        u, m.w, m.alpha, rule=m.rule, eta=m.eta, mod_w=m.mod_w, mod_b=m.mod_b,
        fanout_w=m.fanout_w, fanout_b=m.fanout_b, clip=m.clip, h0=h0, hebb0=hebb0, elig0=elig0,
        clamp_mask=clamp_mask,
    )  # fmt: skip


def grads(m: PlasticRNN) -> dict:
    return {k: p.grad.clone() for k, p in m.named_parameters()}


def state_loss(out, state) -> torch.Tensor:
    """A loss that uses the output and every part of the final state, with distinct weights."""
    g = torch.Generator().manual_seed(5)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
    for s in state:
        if s is not None:
            loss = loss + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
    return loss


# ---------------------------------------------------------------------------------------------
# Construction and parameters.


@pytest.mark.parametrize("rule, alpha_kind, fanout", list(module_cases()))
def test_parameters(rule, alpha_kind, fanout):
    m = PlasticRNN(I, N, rule=rule, alpha=alpha_kind, fanout=fanout)
    shapes = {k: tuple(p.shape) for k, p in m.named_parameters()}
    expected = {"weight_ih": (N, I), "bias_ih": (N,), "w": (N, N)}
    expected["alpha"] = {"per_connection": (N, N), "per_neuron": (N,), "scalar": ()}[alpha_kind]
    if rule in ETA_RULES:
        expected["eta"] = ()
    if rule in MODULATED_RULES:
        expected["mod_w"], expected["mod_b"] = (N,), ()
    if fanout:
        expected["fanout_w"], expected["fanout_b"] = (N,), (N,)
    assert shapes == expected
    assert all(p.dtype == torch.float32 and p.requires_grad for p in m.parameters())
    if m.eta is not None:
        assert m.eta.item() == pytest.approx(0.01)
    assert set(m.state_dict()) == set(expected)


def test_no_bias():
    m = PlasticRNN(I, N, bias=False)
    assert m.bias_ih is None and "bias_ih" not in dict(m.named_parameters())
    x = torch.randn(4, 2, I)
    out, _ = m(x)
    torch.testing.assert_close(out, eager(m, x)[0])


def test_initialisation_follows_the_papers():
    n = 64
    dp = PlasticRNN(I, n, rule="hebb")  # differentiable plasticity: 0.01 * N(0, 1)
    assert 0.008 < dp.w.std().item() < 0.012 and 0.008 < dp.alpha.std().item() < 0.012
    assert dp.w.min() < 0 < dp.w.max()
    bp = PlasticRNN(I, n, rule="neuromod", fanout=True)  # Backpropamine: 0.001 * U[0, 1)
    for p in (bp.w, bp.alpha):
        assert p.min() >= 0 and p.max() < 0.001 and p.mean() > 0.0003
    b = 1 / math.sqrt(n)
    assert bp.mod_w.abs().max() <= b and bp.mod_b.abs() <= b
    assert bp.fanout_w.abs().max() <= 1 and bp.fanout_b.abs().max() <= 1
    bound = 1 / math.sqrt(I)
    assert dp.weight_ih.abs().max() <= bound and dp.bias_ih.abs().max() <= bound


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, "5, 6, rule='hebb', alpha='per_connection'"),
        ({"rule": "oja", "alpha": "scalar"}, "5, 6, rule='oja', alpha='scalar'"),
        ({"rule": "clip", "clip": 2.0}, "5, 6, rule='clip', alpha='per_connection', clip=2.0"),
        (
            {"rule": "neuromod", "alpha": "per_neuron", "fanout": True},
            "5, 6, rule='neuromod', alpha='per_neuron', fanout=True, clip=1.0",
        ),
        (
            {"rule": "retro", "batch_first": True, "bias": False, "clip": 0.5},
            "5, 6, rule='retro', alpha='per_connection', clip=0.5, batch_first=True, bias=False",
        ),
    ],
    ids=["hebb", "oja-scalar", "clip", "neuromod-fanout", "retro-batch_first-nobias"],
)
def test_extra_repr(kwargs, expected):
    m = PlasticRNN(I, N, **kwargs)
    assert m.extra_repr() == expected
    assert repr(m) == f"PlasticRNN({expected})"


@pytest.mark.parametrize("rule", ["hebb", "retro"])
def test_reset_parameters_redraws(rule):
    m = PlasticRNN(I, N, rule=rule, alpha="per_neuron", fanout=rule == "retro")
    before = {k: p.detach().clone() for k, p in m.named_parameters()}
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(7.0)
    m.reset_parameters()
    for k, p in m.named_parameters():
        if k == "eta":
            assert p.item() == pytest.approx(0.01)
            continue
        assert not (p == 7.0).any(), f"{k} was not re-initialised"
        if p.numel() > 1:
            assert not torch.equal(p, before[k]), f"{k} was not re-drawn"


def test_float64():
    m1 = PlasticRNN(I, N, rule="retro", fanout=True, dtype=torch.float64)
    m2 = PlasticRNN(I, N, rule="retro", fanout=True).double()
    for m in (m1, m2):
        assert all(p.dtype == torch.float64 for p in m.parameters())
        x = torch.randn(3, 2, I, dtype=torch.float64)
        out, state = m(x)
        assert out.dtype == state.hebb.dtype == state.elig.dtype == torch.float64
    m2.load_state_dict(m1.state_dict())
    x = torch.randn(3, 2, I, dtype=torch.float64)
    assert torch.equal(m1(x)[0], m2(x)[0])


BAD_CONSTRUCTOR_ARGS = [
    ({"input_size": 0}, "input_size"),
    ({"input_size": -3}, "input_size"),
    ({"input_size": 2.0}, "input_size"),
    ({"input_size": True}, "input_size"),
    ({"hidden_size": 0}, "hidden_size"),
    ({"hidden_size": "6"}, "hidden_size"),
    ({"rule": "hebbian"}, "rule"),
    ({"rule": None}, "rule"),
    ({"alpha": "per_row"}, "alpha"),
    ({"alpha": None}, "alpha"),
    ({"rule": "hebb", "fanout": True}, "fanout"),
    ({"rule": "clip", "fanout": True}, "fanout"),
    ({"rule": "clip", "clip": 0.0}, "clip"),
    ({"rule": "neuromod", "clip": -1.0}, "clip"),
    ({"rule": "retro", "clip": float("nan")}, "clip"),
]


@pytest.mark.parametrize(
    "kwargs, name",
    BAD_CONSTRUCTOR_ARGS,
    ids=[",".join(f"{k}={v!r}" for k, v in d.items()) for d, _ in BAD_CONSTRUCTOR_ARGS],
)
def test_bad_constructor_argument(kwargs, name):
    args = {"input_size": I, "hidden_size": N, **kwargs}
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        PlasticRNN(**args)


@pytest.mark.parametrize("clip", ["1", None], ids=["str", "None"])
def test_non_numeric_clip_names_the_argument(clip):
    """A clip that is not a number must raise an error that names ``clip`` (DESIGN.md: argument
    errors name the argument), not a bare comparison TypeError."""
    with pytest.raises((TypeError, ValueError), match="clip"):
        PlasticRNN(I, N, rule="clip", clip=clip)


@pytest.mark.parametrize(
    "x, exc",
    [
        (torch.randn(3, 2, I + 1), ValueError),
        (torch.randn(3, 2, 1, I), ValueError),
        (torch.randn(I), ValueError),
        ([[0.0] * I] * 3, TypeError),
    ],
    ids=["features", "rank4", "rank1", "list"],
)
def test_bad_input(x, exc):
    m = PlasticRNN(I, N)
    with pytest.raises(exc, match=r"^x must"):
        m(x)


def test_bad_state_names_the_argument():
    m = PlasticRNN(I, N, rule="retro")
    x = torch.randn(3, 2, I)
    _, state = m(x)
    with pytest.raises(ValueError, match=r"^h0 must have shape"):
        m(x, (state.h[:1], state.hebb, state.elig))
    with pytest.raises(ValueError, match=r"^hebb0 must have shape"):
        m(x, (state.h, state.hebb[:, :-1], state.elig))
    with pytest.raises(TypeError, match=r"^elig0 must have dtype"):
        m(x, (state.h, state.hebb, state.elig.double()))


# ---------------------------------------------------------------------------------------------
# Forward and gradients against the hand-written computation.


@pytest.mark.parametrize("clamp", [False, True], ids=["noclamp", "clamp"])
@pytest.mark.parametrize("rule, alpha_kind, fanout", list(module_cases()))
def test_forward_matches_eager(rule, alpha_kind, fanout, clamp):
    m = randomise(PlasticRNN(I, N, rule=rule, alpha=alpha_kind, fanout=fanout, clip=0.5,
                             dtype=torch.float64))  # fmt: skip
    T, B = 6, 3
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(T, B, N, generator=g) < 0.3 if clamp else None

    out, state = m(x, clamp_mask=mask)
    assert out.shape == (T, B, N) and state.h.shape == (B, N) and state.hebb.shape == (B, N, N)
    assert (state.elig is not None) == (rule == "retro")
    state_loss(out, state).backward()
    got, gx = grads(m), x.grad.clone()

    m.zero_grad()
    x.grad = None
    ref_out, ref_state = eager(m, x, clamp_mask=mask)
    state_loss(ref_out, ref_state).backward()
    exp, ex = grads(m), x.grad

    assert rel_err(out, ref_out) < 1e-10
    for a, b in zip(state, ref_state, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert rel_err(a, b) < 1e-10
    assert rel_err(gx, ex) < 1e-8
    for k in exp:
        assert exp[k].norm() > 0, f"reference gradient of {k} is zero: vacuous comparison"
        assert rel_err(got[k], exp[k]) < 1e-8, k


@pytest.mark.parametrize("rule", ["hebb", "retro"])
def test_batch_first(rule):
    torch.manual_seed(0)
    m = randomise(PlasticRNN(I, N, rule=rule, fanout=rule == "retro", dtype=torch.float64))
    mb = PlasticRNN(I, N, rule=rule, fanout=rule == "retro", batch_first=True, dtype=torch.float64)
    mb.load_state_dict(m.state_dict())
    x = torch.randn(5, 3, I, dtype=torch.float64)
    mask = torch.rand(5, 3, N) < 0.3
    out, state = m(x, clamp_mask=mask)
    out_b, state_b = mb(x.transpose(0, 1).contiguous(), clamp_mask=mask.transpose(0, 1))
    assert out_b.shape == (3, 5, N)
    assert torch.equal(out_b, out.transpose(0, 1))
    for a, b in zip(state, state_b, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize("rule", ["clip", "retro"])
def test_unbatched_input(rule):
    m = randomise(PlasticRNN(I, N, rule=rule, dtype=torch.float64))
    x = torch.randn(7, I, dtype=torch.float64)
    out, state = m(x)
    assert out.shape == (7, N) and state.h.shape == (N,) and state.hebb.shape == (N, N)
    out1, state1 = m(x.unsqueeze(1))
    assert torch.equal(out, out1[:, 0])
    for a, b in zip(state, state1, strict=True):
        assert (a is None and b is None) or torch.equal(a, b[0])
    # an unbatched state goes back in, with an unbatched clamp mask
    mask = torch.rand(3, N) < 0.5
    out2, _ = m(x[:3], state, clamp_mask=mask)
    out2b, _ = m(x[:3].unsqueeze(1), state1, clamp_mask=mask.unsqueeze(1))
    assert out2.shape == (3, N) and torch.equal(out2, out2b[:, 0])


@pytest.mark.parametrize("rule, fanout", [("hebb", False), ("oja", False), ("neuromod", True),
                                          ("retro", True)])  # fmt: skip
def test_state_continues_the_sequence(rule, fanout):
    """Running T1 steps, then T2 steps from the returned state, equals running T1 + T2 at once."""
    m = randomise(PlasticRNN(I, N, rule=rule, fanout=fanout, dtype=torch.float64))
    T1, T2, B = 4, 5, 2
    x = torch.randn(T1 + T2, B, I, dtype=torch.float64)
    out, state = m(x)
    state_loss(out, state).backward()
    g_full = grads(m)

    m.zero_grad()
    out1, state1 = m(x[:T1])
    out2, state2 = m(x[T1:], state1)  # the gradient flows back through state1
    assert torch.equal(torch.cat([out1, out2]), out)
    for a, b in zip(state2, state, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    state_loss(torch.cat([out1, out2]), state2).backward()
    for k, g in grads(m).items():
        assert rel_err(g, g_full[k]) < 1e-10, k


def test_plain_tuple_state():
    m = randomise(PlasticRNN(I, N, rule="clip", dtype=torch.float64))
    x = torch.randn(4, 2, I, dtype=torch.float64)
    _, state = m(x)
    assert isinstance(state, hebbkern.PlasticState)
    a, _ = m(x, state)
    b, _ = m(x, (state.h, state.hebb))
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------
# Serialisation.


@pytest.mark.parametrize("rule, alpha_kind, fanout", [("hebb", "scalar", False),
                                                      ("retro", "per_neuron", True)])  # fmt: skip
def test_state_dict_round_trip(rule, alpha_kind, fanout):
    m = randomise(PlasticRNN(I, N, rule=rule, alpha=alpha_kind, fanout=fanout))
    x = torch.randn(4, 3, I)
    out, state = m(x)

    fresh = PlasticRNN(I, N, rule=rule, alpha=alpha_kind, fanout=fanout)
    assert not torch.equal(fresh(x)[0], out)  # a fresh module differs: the round trip matters
    fresh.load_state_dict(m.state_dict())
    out2, state2 = fresh(x)
    assert torch.equal(out, out2) and torch.equal(state.hebb, state2.hebb)

    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    loaded = PlasticRNN(I, N, rule=rule, alpha=alpha_kind, fanout=fanout)
    loaded.load_state_dict(torch.load(buf, weights_only=True))
    out3, _ = loaded(x)
    assert torch.equal(out, out3)


def test_load_state_dict_of_another_configuration_fails():
    m = PlasticRNN(I, N, rule="neuromod", fanout=True)
    other = PlasticRNN(I, N, rule="neuromod", fanout=False)
    with pytest.raises(RuntimeError, match="fanout_w"):
        other.load_state_dict(m.state_dict())


# ---------------------------------------------------------------------------------------------
# torch.compile: the custom op must not break the graph (fullgraph=True proves it).


def _compile_check(m, x, mask, backend, tol):
    torch._dynamo.reset()
    out, state = m(x, clamp_mask=mask)
    state_loss(out, state).backward()
    g_eager = grads(m)
    m.zero_grad()

    compiled = torch.compile(m, backend=backend, fullgraph=True)
    out_c, state_c = compiled(x, clamp_mask=mask)
    assert rel_err(out_c, out) < tol
    for a, b in zip(state_c, state, strict=True):
        assert (a is None and b is None) or rel_err(a, b) < tol
    state_loss(out_c, state_c).backward()
    for k, g in grads(m).items():
        assert rel_err(g, g_eager[k]) < tol, k


@pytest.mark.parametrize("rule, fanout", [("retro", True), ("hebb", False)])
def test_compile_aot_eager(rule, fanout):
    m = randomise(PlasticRNN(I, N, rule=rule, fanout=fanout, alpha="per_neuron"))
    x = torch.randn(5, 2, I)
    mask = torch.rand(5, 2, N) < 0.3
    _compile_check(m, x, mask, "aot_eager", 1e-6)


@pytest.mark.slow
def test_compile_inductor():
    m = randomise(PlasticRNN(I, N, rule="neuromod", fanout=True))
    x = torch.randn(4, 2, I)
    _compile_check(m, x, None, "inductor", 1e-5)
