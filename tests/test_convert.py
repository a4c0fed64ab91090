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
from convert_helpers import TOL, f64
from convert_helpers import lstm_sd as _lstm_sd
from convert_helpers import lstm_step as _lstm_step
from convert_helpers import r as _r
from convert_helpers import simple_maze_sd as _simple_maze_sd
from convert_helpers import simple_maze_step as _simple_maze_step

import hebbkern
from hebbkern.convert import from_backpropamine, from_differentiable_plasticity

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


@pytest.mark.parametrize("layout", ["pre_post", "post_pre"])
@pytest.mark.parametrize("alpha", ["full", "per_neuron", "single"])
def test_simple_maze_agent(alpha, layout):
    I, N, B, T = 7, 10, 4, 6
    sd = _simple_maze_sd(I, N, alpha)
    net = from_backpropamine(sd, "simple_maze", layout=layout)
    cell = net["cell"]
    assert cell.clip == 2.0 and cell.rule == "neuromod" and cell.fanout and cell.layout == layout
    xs = _r(T, B, I, seed=50, scale=1.0)
    h, hebb = torch.zeros(B, N, dtype=f64), _r(B, N, N, seed=51)  # a trace mid-episode
    # The original's trace is [B, pre, post]; with layout="post_pre" hebbkern keeps it transposed.
    lay = (lambda x: x) if layout == "pre_post" else (lambda x: x.transpose(1, 2))
    state = hebbkern.PlasticState(h, lay(hebb), None)
    for t in range(T):
        logits, value, h, hebb = _simple_maze_step(sd, xs[t], h, hebb)
        state = cell(xs[t], state)
        torch.testing.assert_close(state.h, h, **TOL)
        torch.testing.assert_close(state.hebb, lay(hebb), **TOL)
        torch.testing.assert_close(net["h2o"](state.h), logits, **TOL)
        torch.testing.assert_close(net["h2v"](state.h), value, **TOL)


# ---------------------------------------------------------------------------------------------
# Backpropamine: the plastic LSTM (per-neuron alpha [1, 1, N], fan-out, clip 2)
# ---------------------------------------------------------------------------------------------


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
