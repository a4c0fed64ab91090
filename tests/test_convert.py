"""``hebbkern.convert`` (issue 20, item 5): the papers' networks loaded into hebbkern modules.

Each test builds a state_dict the way the public code's network holds it (same key names and
shapes, written here from reading its definitions), steps a small eager re-implementation of the
original step (written here, in the original's layout) and checks that the converted module gives
the same outputs and traces in float64.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import hebbkern
from hebbkern.convert import from_backpropamine, from_differentiable_plasticity

f64 = torch.float64
TOL = dict(rtol=1e-12, atol=1e-12)


def _r(*shape, seed, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=g, dtype=f64)


def _linear_sd(name, n_in, n_out, seed):
    """An ``nn.Linear(n_in, n_out)`` named ``name`` as it appears in a state_dict."""
    return {f"{name}.weight": _r(n_out, n_in, seed=seed), f"{name}.bias": _r(n_out, seed=seed + 1)}


def _lin(sd, name, x):
    return F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"])


# ---------------------------------------------------------------------------------------------
# differentiable plasticity: pattern completion (and image completion, clamped)
# ---------------------------------------------------------------------------------------------


def _pattern_step(sd, x, y, hebb, clamps=None):
    """The original step: one sample, one unbatched trace [N, N], [pre, post]."""
    drive = y @ (sd["w"] + sd["alpha"] * hebb)
    if clamps is None:
        y_new = torch.tanh(drive + x)
    else:  # the image task: clamped neurons take their input, the others get no input
        y_new = torch.tanh(drive) * (1 - clamps) + x * clamps
    hebb = (1 - sd["eta"]) * hebb + sd["eta"] * torch.outer(y[0], y_new[0])
    return y_new, hebb


@pytest.mark.parametrize("alpha_shape", ["free", "homogeneous"])
@pytest.mark.parametrize("clamped", [False, True])
def test_pattern_network(alpha_shape, clamped):
    N, T = 12, 7
    sd = {
        "w": _r(N, N, seed=1),
        "alpha": _r(N, N, seed=2) if alpha_shape == "free" else _r(1, seed=2),
        "eta": torch.full((1,), 0.2, dtype=f64),
    }
    net = from_differentiable_plasticity(sd, "pattern")
    assert isinstance(net, hebbkern.nn.PlasticRNN) and not net.input_projection
    x = torch.sign(_r(T, 1, N, seed=3))
    if clamped:
        x = x * (_r(T, 1, N, seed=4) > 0)  # zeros where nothing is shown
    out, state = net(x, clamp_mask=(x != 0) if clamped else None)
    y, hebb = torch.zeros(1, N, dtype=f64), torch.zeros(N, N, dtype=f64)
    for t in range(T):
        y, hebb = _pattern_step(sd, x[t], y, hebb, (x[t] != 0).to(f64) if clamped else None)
        torch.testing.assert_close(out[t], y, **TOL)
    torch.testing.assert_close(state.hebb[0], hebb, **TOL)


# ---------------------------------------------------------------------------------------------
# differentiable plasticity: the Omniglot encoder and plastic read-out
# ---------------------------------------------------------------------------------------------


def _omniglot_sd(nbf, K, alpha, seed=10):
    sd = {}
    chans = [1, nbf, nbf, nbf, nbf]
    for k in range(1, 5):
        sd[f"cv{k}.weight"] = _r(chans[k], chans[k - 1], 3, 3, seed=seed + k)
        sd[f"cv{k}.bias"] = _r(chans[k], seed=seed + 10 + k)
    sd["w"] = _r(nbf, K, seed=seed + 20)
    sd["alpha"] = _r(nbf, K, seed=seed + 21) if alpha == "free" else _r(1, seed=seed + 21)
    sd["eta"] = torch.full((1,), 0.1, dtype=f64)
    return sd


def _omniglot_step(sd, img, label, hebb, rule):
    a = img
    for k in range(1, 5):
        a = torch.tanh(F.conv2d(a, sd[f"cv{k}.weight"], sd[f"cv{k}.bias"], stride=2))
    xin = a.view(-1, sd["w"].shape[0])
    y = torch.softmax(xin @ (sd["w"] + sd["alpha"] * hebb) + 1000.0 * label, dim=1)
    if rule == "hebb":
        hebb = (1 - sd["eta"]) * hebb + sd["eta"] * torch.outer(xin[0], y[0])
    else:  # Oja's rule, row vectors broadcast
        hebb = hebb + sd["eta"] * (xin[0].unsqueeze(1) - hebb * y[0].unsqueeze(0)) * y[0]
    return y, hebb


@pytest.mark.parametrize("alpha", ["free", "yoked"])
@pytest.mark.parametrize("rule", ["hebb", "oja"])
def test_omniglot_readout(alpha, rule):
    nbf, K, steps = 8, 5, 6
    sd = _omniglot_sd(nbf, K, alpha)
    net = from_differentiable_plasticity(sd, "omniglot", rule=rule)
    imgs = _r(steps, 1, 1, 31, 31, seed=30, scale=1.0)
    labels = torch.zeros(steps, 1, K, dtype=f64)
    for t in range(steps - 1):  # labelled presentations, then the unlabelled test sample
        labels[t, 0, t % K] = 1.0
    hebb_o = torch.zeros(nbf, K, dtype=f64)
    hebb_h = net["readout"].initial_trace()
    for t in range(steps):
        y_o, hebb_o = _omniglot_step(sd, imgs[t], labels[t], hebb_o, rule)
        feats = net["encoder"](imgs[t])
        y_h, hebb_h = net["readout"](feats, hebb_h, drive=1000.0 * labels[t])
        torch.testing.assert_close(y_h, y_o, **TOL)
        torch.testing.assert_close(hebb_h, hebb_o, **TOL)
    assert rule in repr(net["readout"])


# ---------------------------------------------------------------------------------------------
# Backpropamine: the one-file maze agent ([pre, post], fan-out, clip 2)
# ---------------------------------------------------------------------------------------------


def _simple_maze_sd(I, N, alpha, seed=40):
    alpha_shape = {"full": (N, N), "per_neuron": (1, 1, N), "single": (1,)}[alpha]
    return {
        **_linear_sd("i2h", I, N, seed),
        "w": _r(N, N, seed=seed + 2),
        "alpha": _r(*alpha_shape, seed=seed + 3),
        **_linear_sd("h2mod", N, 1, seed + 4),
        **_linear_sd("modfanout", 1, N, seed + 6),
        **_linear_sd("h2o", N, 4, seed + 8),
        **_linear_sd("h2v", N, 1, seed + 10),
    }


def _simple_maze_step(sd, x, h, hebb):
    h_new = torch.tanh(
        _lin(sd, "i2h", x) + torch.bmm(h.unsqueeze(1), sd["w"] + sd["alpha"] * hebb).squeeze(1)
    )
    delta = torch.bmm(h.unsqueeze(2), h_new.unsqueeze(1))
    eta = _lin(sd, "modfanout", torch.tanh(_lin(sd, "h2mod", h_new)).unsqueeze(2))  # [B, 1, N]
    hebb = torch.clamp(hebb + eta * delta, -2.0, 2.0)
    return _lin(sd, "h2o", h_new), _lin(sd, "h2v", h_new), h_new, hebb


@pytest.mark.parametrize("alpha", ["full", "per_neuron", "single"])
def test_simple_maze_agent(alpha):
    I, N, B, T = 7, 10, 4, 6
    sd = _simple_maze_sd(I, N, alpha)
    net = from_backpropamine(sd, "simple_maze")
    cell = net["cell"]
    assert cell.clip == 2.0 and cell.rule == "neuromod" and cell.fanout
    xs = _r(T, B, I, seed=50, scale=1.0)
    h, hebb = torch.zeros(B, N, dtype=f64), _r(B, N, N, seed=51)  # a trace mid-episode
    state = hebbkern.PlasticState(h, hebb, None)
    for t in range(T):
        logits, value, h, hebb = _simple_maze_step(sd, xs[t], h, hebb)
        state = cell(xs[t], state)
        torch.testing.assert_close(state.h, h, **TOL)
        torch.testing.assert_close(state.hebb, hebb, **TOL)
        torch.testing.assert_close(net["h2o"](state.h), logits, **TOL)
        torch.testing.assert_close(net["h2v"](state.h), value, **TOL)


# ---------------------------------------------------------------------------------------------
# Backpropamine: the batched maze code ([post, pre], clip 1): plastic, modplast, modul (retro)
# ---------------------------------------------------------------------------------------------


def _maze_sd(kind, I, N, seed=60):
    sd = {**_linear_sd("i2h", I, N, seed), "w": _r(N, N, seed=seed + 2)}
    sd["alpha"] = _r(N, N, seed=seed + 3)
    if kind == "plastic":
        sd["eta"] = torch.full((1,), 0.3, dtype=f64)
    else:
        sd.update(_linear_sd("h2DA", N, 1, seed + 4))
    if kind == "modul":
        sd["etaet"] = torch.full((1,), 0.3, dtype=f64)
    sd.update(_linear_sd("h2o", N, 4, seed + 8))
    sd.update(_linear_sd("h2v", N, 1, seed + 10))
    return sd


def _maze_step(sd, kind, addpw, x, h, hebb, et):
    """The batched maze step in its own layout: w, alpha, hebb, et are [post, pre]."""
    B, N = h.shape
    h_new = torch.tanh(
        _lin(sd, "i2h", x).view(B, N, 1)
        + torch.matmul(sd["w"] + sd["alpha"] * hebb, h.view(B, N, 1))
    ).view(B, N)
    delta = torch.bmm(h_new.view(B, N, 1), h.view(B, 1, N))  # [B, post, pre]
    if kind == "plastic":
        if addpw == 3:
            hebb = torch.clamp(hebb + sd["eta"] * delta, -1.0, 1.0)
        else:
            hebb = (1 - sd["eta"]) * hebb + sd["eta"] * delta
        return h_new, hebb, et
    da = torch.tanh(_lin(sd, "h2DA", h_new)).view(B, 1, 1)
    if kind == "modplast":
        return h_new, torch.clamp(hebb + da * delta, -1.0, 1.0), et
    hebb = torch.clamp(hebb + da * et, -1.0, 1.0)
    et = (1 - sd["etaet"]) * et + sd["etaet"] * delta
    return h_new, hebb, et


@pytest.mark.parametrize(
    "kind,addpw,rule",
    [("plastic", 3, "clip"), ("plastic", 0, "hebb"), ("modplast", 3, "neuromod"),
     ("modul", 3, "retro")],
)  # fmt: skip
def test_batched_maze_agents(kind, addpw, rule):
    I, N, B, T = 7, 9, 5, 6
    sd = _maze_sd(kind, I, N)
    net = from_backpropamine(sd, "maze", addpw=addpw)
    cell = net["cell"]
    assert cell.rule == rule and cell.clip == 1.0 and not cell.fanout
    xs = _r(T, B, I, seed=70, scale=1.0)
    h = _r(B, N, seed=71)
    hebb = _r(B, N, N, seed=72, scale=0.3)  # [B, post, pre], mid-episode
    et = _r(B, N, N, seed=73, scale=0.3) if kind == "modul" else None
    # hebbkern's traces are [B, pre, post]: the original's, transposed.
    state = hebbkern.PlasticState(
        h, hebb.transpose(1, 2), None if et is None else et.transpose(1, 2)
    )
    for t in range(T):
        h, hebb, et = _maze_step(sd, kind, addpw, xs[t], h, hebb, et)
        state = cell(xs[t], state)
        torch.testing.assert_close(state.h, h, **TOL)
        torch.testing.assert_close(state.hebb, hebb.transpose(1, 2), **TOL)
        if et is not None:
            torch.testing.assert_close(state.elig, et.transpose(1, 2), **TOL)
    torch.testing.assert_close(net["h2o"](state.h), _lin(sd, "h2o", h), **TOL)


# ---------------------------------------------------------------------------------------------
# Backpropamine: the plastic LSTM (per-neuron alpha [1, 1, N], fan-out, clip 2)
# ---------------------------------------------------------------------------------------------


def _lstm_sd(I, N, alpha_shape=None, seed=80, prefix=""):
    sd = {"w": _r(N, N, seed=seed), "alpha": _r(*(alpha_shape or (1, 1, N)), seed=seed + 1)}
    for i, g in enumerate(("f", "i", "opt")):
        sd.update(_linear_sd(f"h2{g}", N, N, seed + 10 + 2 * i))
    for i, g in enumerate(("f", "opt", "i", "c")):
        sd.update(_linear_sd(f"x2{g}", I, N, seed + 20 + 2 * i))
    sd.update(_linear_sd("h2mod", N, 1, seed + 30))
    sd.update(_linear_sd("modfanout", 1, N, seed + 32))
    return {prefix + k: v for k, v in sd.items()}


def _lstm_step(sd, x, h, c, hebb, *, quirk=False):
    f = torch.sigmoid(_lin(sd, "x2f", x) + _lin(sd, "h2f", h))
    i = torch.sigmoid(_lin(sd, "x2i", x) + _lin(sd, "h2i", h))
    o = torch.sigmoid(_lin(sd, "x2opt", x) + _lin(sd, "h2opt", h))
    rec = torch.bmm(h.unsqueeze(1), sd["w"] + sd["alpha"] * hebb).squeeze(1)
    g = torch.tanh(_lin(sd, "x2c", x) + rec)
    c = f * c + i * g
    h_new = o * torch.tanh(c)
    delta = torch.bmm(h.unsqueeze(2), g.unsqueeze(1))
    eta = _lin(sd, "modfanout", torch.tanh(_lin(sd, "h2mod", h_new)).unsqueeze(2))
    # The original squeezes then unsqueezes dim 1: [B, 1, N] for B > 1, but [N, 1] at B = 1.
    eta = eta.squeeze().unsqueeze(1) if quirk else eta
    hebb = torch.clamp(hebb + eta * delta, -2.0, 2.0)
    return h_new, c, hebb


@pytest.mark.parametrize("alpha_shape", [None, (1,), "full"])
def test_plastic_lstm(alpha_shape):
    I, N, B, T = 5, 6, 3, 7
    shape = (N, N) if alpha_shape == "full" else alpha_shape
    sd = _lstm_sd(I, N, shape, prefix="rnns.0.")
    net = from_backpropamine(sd, "lstm", prefix="rnns.0.")
    assert isinstance(net, hebbkern.nn.PlasticLSTM) and net.clip == 2.0 and net.fanout
    sd = {k[len("rnns.0.") :]: v for k, v in sd.items()}
    xs = _r(T, B, I, seed=90, scale=1.0)
    h, c, hebb = _r(B, N, seed=91), _r(B, N, seed=92), _r(B, N, N, seed=93, scale=0.3)
    out, state = net(xs, (h[None], c[None], hebb[None]))
    for t in range(T):
        h, c, hebb = _lstm_step(sd, xs[t], h, c, hebb)
        torch.testing.assert_close(out[t], h, **TOL)
    torch.testing.assert_close(state[1][0], c, **TOL)
    torch.testing.assert_close(state[2][0], hebb, **TOL)


def test_plastic_lstm_batch_one_is_the_intended_fanout():
    """At B = 1 the converted module keeps the [B, 1, N] fan-out (docs/SPEC.md section 9); the
    original's squeeze gives [N, 1] there, which modulates along the wrong axis."""
    I, N, T = 5, 6, 4
    sd = _lstm_sd(I, N)
    net = from_backpropamine(sd, "lstm")
    xs = _r(T, 1, I, seed=94, scale=1.0)
    out, state = net(xs)
    h = c = torch.zeros(1, N, dtype=f64)
    hebb = hebb_q = torch.zeros(1, N, N, dtype=f64)
    hq, cq = h, c
    for t in range(T):
        h, c, hebb = _lstm_step(sd, xs[t], h, c, hebb)
        hq, cq, hebb_q = _lstm_step(sd, xs[t], hq, cq, hebb_q, quirk=True)
    torch.testing.assert_close(state[2][0], hebb, **TOL)
    assert (state[2][0] - hebb_q).abs().max() > 1e-3


# ---------------------------------------------------------------------------------------------
# Errors name the key, the shape or the option
# ---------------------------------------------------------------------------------------------


def test_errors():
    sd = _simple_maze_sd(3, 4, "full")
    bad = dict(sd)
    del bad["h2mod.weight"]
    with pytest.raises(KeyError, match="h2mod.weight"):
        from_backpropamine(bad, "simple_maze")
    bad = dict(sd, alpha=_r(4, 5, seed=0))
    with pytest.raises(ValueError, match=r"state_dict\['alpha'\] must have shape"):
        from_backpropamine(bad, "simple_maze")
    with pytest.raises(ValueError, match="network must be"):
        from_backpropamine(sd, "tmaze")
    with pytest.raises(ValueError, match="addpw=2"):
        from_backpropamine(_maze_sd("modplast", 3, 4), "maze", addpw=2)
    with pytest.raises(ValueError, match="addpw=1"):
        from_backpropamine(_maze_sd("plastic", 3, 4), "maze", addpw=1)
    with pytest.raises(ValueError, match="network must be"):
        from_differentiable_plasticity({"w": _r(3, 3, seed=0)}, "images")
    with pytest.raises(KeyError, match="'eta'"):
        from_differentiable_plasticity({"w": _r(3, 3, seed=0), "alpha": _r(1, seed=0)})
    with pytest.raises(ValueError, match="rule must be"):
        from_differentiable_plasticity(_omniglot_sd(4, 3, "free"), "omniglot", rule="add")


# ---------------------------------------------------------------------------------------------
# The README's port example runs
# ---------------------------------------------------------------------------------------------


def test_readme_port_example():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Porting from the papers' code", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md (Porting from the papers' code)", "exec"), {})
