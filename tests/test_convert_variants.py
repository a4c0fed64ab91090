"""``hebbkern.convert.from_backpropamine`` with the original code's options (issue 20, item 5 for
the variants of docs/SPEC.md sections 1.1 and 2.1): the batched maze code's ``type``, ``addpw``,
``da``, ``activ``, ``fm`` in both weight layouts, the plastic LSTM's ``cliptype``,
``hebboutput``, ``modultype``/``modulout``, and the fan-out's axis. Each case loads a state_dict
built the papers' way into the converted module and checks its outputs and traces, step by step,
against the eager re-implementation of the original step with that option (convert_helpers.py) in
float64; each option hebbkern cannot compute is refused with a ValueError naming it.
"""

from __future__ import annotations

import math

import pytest
import torch
from convert_helpers import (
    TOL,
    f64,
    lin,
    lstm_sd,
    lstm_step,
    maze_sd,
    maze_step,
    r,
    simple_maze_sd,
    trace,
)

import hebbkern
from hebbkern.convert import from_backpropamine

LAYOUTS = ("pre_post", "post_pre")

# ---------------------------------------------------------------------------------------------
# The batched maze code: type x addpw x da x activ x fm, in both layouts
# ---------------------------------------------------------------------------------------------

# type, addpw, da, activ, fm -> hebbkern rule (None: torch.nn.RNNCell)
MAZE_CASES = [
    ("rnn", 3, "tanh", "tanh", 1, None),
    ("rnn", 3, "tanh", "relu", 1, None),
    ("plastic", 3, "tanh", "tanh", 1, "clip"),
    ("plastic", 2, "tanh", "selu", 1, "clip"),
    ("plastic", 1, "tanh", "tanh", 1, "clip"),
    ("plastic", 0, "tanh", "tanh", 1, "hebb"),
    ("modplast", 3, "tanh", "tanh", 1, "neuromod"),
    ("modplast", 2, "sig", "tanh", 1, "neuromod"),
    ("modplast", 1, "lin", "selu", 1, "neuromod"),
    ("modplast", 0, "sig", "tanh", 1, "gated"),
    ("modplast", 3, "tanh", "tanh", 0, "neuromod"),
    ("modplast", 2, "lin", "selu", 0, "neuromod"),
    ("modplast", 1, "sig", "tanh", 0, "neuromod"),
    ("modul", 3, "tanh", "tanh", 1, "retro"),
    ("modul", 2, "sig", "tanh", 1, "retro"),  # tanh keeps |pw| inside modul's .99999 (below)
    ("modul", 1, "lin", "tanh", 1, "retro"),
    ("modul", 3, "sig", "selu", 1, "retro"),
]


def _lay(layout):
    """The original's [post, pre] trace in hebbkern's ``layout``."""
    if layout == "post_pre":
        return lambda x: x
    return lambda x: None if x is None else x.transpose(1, 2)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "kind,addpw,da,activ,fm,rule", MAZE_CASES,
    ids=[f"{k}-addpw{a}-{d}-{v}-fm{f}" for k, a, d, v, f, _ in MAZE_CASES],
)  # fmt: skip
def test_batched_maze_options(kind, addpw, da, activ, fm, rule, layout):
    I, N, B, T = 7, 9, 5, 6  # N odd: fm=0 modulates the first N // 2 = 4 post neurons
    sd = maze_sd(kind, I, N, eta=fm == 0)
    opts = dict(addpw=addpw, da=da, activ=activ, fm=fm)
    net = from_backpropamine(sd, "maze", layout=layout, **opts)
    cell, lay = net["cell"], _lay(layout)
    xs, h = r(T, B, I, seed=70, scale=1.0), r(B, N, seed=71)
    hebb = None if kind == "rnn" else trace(B, N, N, seed=72)  # [B, post, pre], mid-episode
    et = trace(B, N, N, seed=73) if kind == "modul" else None
    if rule is None:
        assert isinstance(cell, torch.nn.RNNCell) and cell.nonlinearity == activ
        state = h
    else:
        assert (cell.rule, cell.layout, cell.fanout) == (rule, layout, False)
        assert cell.clip == (math.inf if addpw == 1 else 1.0)
        v = cell.variants
        assert (v.activation, v.soft_clip, v.n_unmodulated) == (
            activ,
            addpw == 2,
            (N + 1) // 2 * (1 - fm),
        )
        state = hebbkern.PlasticState(h, lay(hebb), lay(et))
    for t in range(T):
        h, hebb, et = maze_step(sd, kind, xs[t], h, hebb, et, **opts)
        state = cell(xs[t], state)
        torch.testing.assert_close(state if rule is None else state.h, h, **TOL)
        if rule is not None:
            torch.testing.assert_close(state.hebb, lay(hebb), **TOL)
            torch.testing.assert_close(state.elig, lay(et), **TOL)
    torch.testing.assert_close(net["h2o"](h), lin(sd, "h2o", h), **TOL)


def test_modul_soft_clamp_outer_bound():
    """The one difference left: type 'modul' with addpw=2 clamps its plastic weights at
    +-0.99999, hebbkern's soft clip at +-clip (1.0). With selu activity the eligibility trace
    leaves [-1, 1] and the step overshoots: there the original stops at 0.99999 and hebbkern at
    1.0 (docs/porting.md); every other entry agrees to round-off."""
    I, N, B = 7, 9, 5
    sd = maze_sd("modul", I, N)
    opts = dict(addpw=2, da="sig", activ="selu")
    cell = from_backpropamine(sd, "maze", layout="post_pre", **opts)["cell"]
    h, hebb, et = r(B, N, seed=71), trace(B, N, N, seed=72), 3.0 * trace(B, N, N, seed=73)
    state = cell(r(B, I, seed=70), hebbkern.PlasticState(h, hebb, et))
    _, pw, _ = maze_step(sd, "modul", r(B, I, seed=70), h, hebb, et, **opts)
    at_bound = pw.abs() == 0.99999
    assert at_bound.any()
    torch.testing.assert_close(state.hebb[at_bound], torch.sign(pw[at_bound]), **TOL)
    torch.testing.assert_close(state.hebb[~at_bound], pw[~at_bound], **TOL)


# ---------------------------------------------------------------------------------------------
# The fan-out's axis: per post-synaptic neuron in the original and in both hebbkern layouts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fanout_is_per_post_neuron(layout):
    """The one-file maze agent's fan-out [B, 1, N] scales the columns of its [B, pre, post] trace,
    i.e. each post-synaptic neuron. Fanning out to neuron j alone must move only the trace of the
    connections onto j: column j in "pre_post", row j in "post_pre"."""
    I, N, B, j = 5, 6, 3, 2
    sd = simple_maze_sd(I, N, "full")
    sd["modfanout.weight"] = torch.zeros(N, 1, dtype=f64)
    sd["modfanout.weight"][j] = 1.0
    sd["modfanout.bias"] = torch.zeros(N, dtype=f64)
    cell = from_backpropamine(sd, "simple_maze", layout=layout)["cell"]
    state = hebbkern.PlasticState(r(B, N, seed=1), torch.zeros(B, N, N, dtype=f64), None)
    hebb = cell(r(B, I, seed=2), state).hebb
    onto_j = hebb[:, :, j] if layout == "pre_post" else hebb[:, j, :]
    assert onto_j.abs().min() > 0
    assert torch.count_nonzero(hebb) == torch.count_nonzero(onto_j)


# ---------------------------------------------------------------------------------------------
# The plastic LSTM: cliptype x hebboutput x modultype / modulout
# ---------------------------------------------------------------------------------------------

# modulout ("none": modultype 'none'), cliptype, hebboutput -> hebbkern rule
LSTM_CASES = [
    ("fanout", "aditya", "i2c", "neuromod"),
    ("fanout", "decay", "i2c", "gated"),
    ("fanout", "clip", "h2co", "neuromod"),
    ("fanout", "clip", "cell", "neuromod"),
    ("fanout", "clip", "hidden", "neuromod"),
    ("fanout", "aditya", "h2co", "neuromod"),
    ("single", "clip", "i2c", "neuromod"),
    ("single", "decay", "hidden", "gated"),
    ("none", "clip", "i2c", "clip"),
    ("none", "aditya", "cell", "clip"),
    ("none", "decay", "i2c", "hebb"),
]


@pytest.mark.parametrize(
    "modulout,cliptype,hebboutput,rule", LSTM_CASES,
    ids=[f"{m}-{c}-{h}" for m, c, h, _ in LSTM_CASES],
)  # fmt: skip
def test_plastic_lstm_options(modulout, cliptype, hebboutput, rule):
    I, N, B, T = 5, 6, 3, 7
    sd = lstm_sd(I, N, modulout=modulout)
    net = from_backpropamine(sd, "lstm", cliptype=cliptype, hebboutput=hebboutput)
    post = {"i2c": "candidate", "h2co": "drive"}.get(hebboutput, hebboutput)
    assert (net.rule, net.fanout, net.post) == (rule, modulout == "fanout", post)
    assert net.clip_mode == ("read" if cliptype == "aditya" else "update")
    xs, h, c = r(T, B, I, seed=90, scale=1.0), r(B, N, seed=91), r(B, N, seed=92)
    # 'aditya' lets the trace pass the bound: start some entries beyond it
    hebb = r(B, N, N, seed=93, scale=1.5) if cliptype == "aditya" else trace(B, N, N, seed=93)
    if cliptype == "aditya":
        assert hebb.abs().max() > 2.0
    out, state = net(xs, (h[None], c[None], hebb[None]))
    for t in range(T):
        h, c, hebb = lstm_step(sd, xs[t], h, c, hebb, cliptype=cliptype, hebboutput=hebboutput)
        torch.testing.assert_close(out[t], h, **TOL)
    torch.testing.assert_close(state[1][0], c, **TOL)
    torch.testing.assert_close(state[2][0], hebb, **TOL)


# ---------------------------------------------------------------------------------------------
# Options hebbkern cannot compute, or that the network does not have: ValueError naming them
# ---------------------------------------------------------------------------------------------

ERRORS = [
    ("maze", "modul", dict(type="modul2"), "type='modul2' is not expressible"),
    ("maze", "modul", dict(addpw=0), "addpw=0 of the 'modul' network"),
    ("maze", "modul", dict(fm=0), "fm=0 of the 'modul' network"),
    ("maze", "modplast", dict(fm=0, addpw=0), "fm=0 with addpw=0"),
    ("maze", "modplast", dict(addpw=4), "addpw must be one of"),
    ("maze", "modplast", dict(fm=2), "fm must be one of"),
    ("maze", "modplast", dict(da="relu"), "da must be one of 'tanh', 'sig', 'lin'"),
    ("maze", "plastic", dict(activ="gelu"), "activ must be one of"),
    ("maze", "rnn", dict(activ="selu"), "activ='selu' with type='rnn'"),
    ("maze", "plastic", dict(type="lstm"), "type must be one of"),
    (
        "maze",
        "plastic",
        dict(cliptype="aditya"),
        "cliptype='aditya' is an option of network='lstm'",
    ),
    ("simple_maze", None, dict(addpw=2), "addpw=2 is an option of network='maze'"),
    ("simple_maze", None, dict(da="sig"), "da='sig' is an option of network='maze'"),
    ("lstm", None, dict(activ="selu"), "activ='selu' is an option of network='maze'"),
    ("lstm", None, dict(layout="post_pre"), "layout applies to the maze networks"),
    ("lstm", None, dict(modultype="modplastc2mod"), "modultype='modplastc2mod' is not"),
    ("lstm", None, dict(modultype="h2mod"), "modultype must be one of"),
    ("lstm", None, dict(cliptype="soft"), "cliptype must be one of"),
    ("lstm", None, dict(hebboutput="output"), "hebboutput must be one of"),
    ("maze", "modplast", dict(layout="pre-post"), "layout must be one of"),
]


@pytest.mark.parametrize("network,kind,opts,match", ERRORS, ids=[e[3][:30] for e in ERRORS])
def test_refused_options(network, kind, opts, match):
    sd = {"maze": lambda: maze_sd(kind, 3, 4), "simple_maze": lambda: simple_maze_sd(3, 4, "full"),
          "lstm": lambda: lstm_sd(3, 4)}[network]()  # fmt: skip
    with pytest.raises(ValueError, match=match):
        from_backpropamine(sd, network, **opts)


def test_half_modulated_needs_eta():
    """fm=0 reads the unmodulated half's rate from the state_dict's eta (sr/modul.py has one;
    maze/batch.py's modplast does not, and has no fm)."""
    with pytest.raises(KeyError, match="'eta'"):
        from_backpropamine(maze_sd("modplast", 3, 4), "maze", fm=0)
