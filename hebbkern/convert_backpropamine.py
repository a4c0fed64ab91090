"""Backpropamine (Miconi et al., ICLR 2019) networks as hebbkern modules: the body of
:func:`hebbkern.convert.from_backpropamine` and the map from the original code's options to
hebbkern's (docs/porting.md has the table; docs/SPEC.md sections 1.1 and 2.1 the math).

The options keep the original's names and values: the batched maze code's ``type``, ``addpw``,
``da``, ``activ`` and ``fm``; the plastic LSTM's ``cliptype``, ``hebboutput`` and ``modultype``.
An option hebbkern cannot compute raises ``ValueError`` naming it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._layout import check_layout
from ._variants import ACTIVATIONS
from .convert_keys import alpha_kind, choice, fanout, get, heads, modulator, scalar, shape
from .nn import PlasticLSTM, PlasticRNNCell

# da (the batched maze code's squashing of its modulator output DAout) -> mod_squash
DA = {"tanh": "tanh", "sig": "sigmoid", "lin": "identity"}
# addpw: 3 hard clamp, 2 soft clamp, 1 unclamped sum, 0 decay (gated by the modulator if any)
ADDPW = (0, 1, 2, 3)
MAZE_TYPES = ("rnn", "plastic", "modplast", "modul", "modul2")
# the plastic LSTM's hebboutput -> post, cliptype -> clip_mode (decay is a rule, not a clip mode)
HEBBOUTPUT = {"i2c": "candidate", "h2co": "drive", "cell": "cell", "hidden": "hidden"}
CLIPTYPE = {"clip": "update", "aditya": "read", "decay": "update"}
MODULTYPES = ("none", "modplasth2mod", "modplastc2mod")

# The options of each network, with their defaults (the original code's): an option given to a
# network that has no such switch is an error rather than silently ignored.
MAZE_OPTIONS = {"type": None, "addpw": 3, "da": "tanh", "activ": "tanh", "fm": 1}
LSTM_OPTIONS = {"cliptype": "clip", "hebboutput": "i2c", "modultype": None}


def check_options(network: str, opts: dict) -> None:
    own = {"maze": MAZE_OPTIONS, "lstm": LSTM_OPTIONS}.get(network, {})
    for name, default in {**MAZE_OPTIONS, **LSTM_OPTIONS}.items():
        if name not in own and opts[name] != default:
            where = "'maze'" if name in MAZE_OPTIONS else "'lstm'"
            raise ValueError(
                f"{name}={opts[name]!r} is an option of network={where}, not of {network!r}"
            )
    if network == "lstm" and opts["layout"] != "pre_post":
        raise ValueError("layout applies to the maze networks; nn.PlasticLSTM is [pre, post]")


def _cell(I, N, rule, kind, ref: Tensor, params: dict, **opts) -> PlasticRNNCell:
    cell = PlasticRNNCell(I, N, rule=rule, alpha=kind, dtype=ref.dtype, device=ref.device, **opts)
    cell.load_state_dict(params)
    return cell


def simple_maze(sd, clip: float, layout: str) -> nn.ModuleDict:
    """simplemaze/maze.py: ``[pre, post]``, neuromodulated with a fan-out, clip 2."""
    net = "simple_maze"
    wi = get(sd, "i2h.weight", net)
    N, I = wi.shape
    w = shape("w", get(sd, "w", net), (N, N))  # [pre, post]: h.bmm(w + alpha * hebb)
    kind, alpha = alpha_kind("alpha", get(sd, "alpha", net), N, N)
    if layout == "post_pre":
        w, alpha = w.t(), alpha.t() if kind == "per_connection" else alpha
    params = {"weight_ih": wi, "bias_ih": get(sd, "i2h.bias", net), "w": w, "alpha": alpha}
    params["mod_w"], params["mod_b"] = modulator(sd, "h2mod", N, net)
    params["fanout_w"], params["fanout_b"] = fanout(sd, N, net)
    cell = _cell(I, N, "neuromod", kind, wi, params, fanout=True, clip=clip, layout=layout)
    return nn.ModuleDict({"cell": cell, **heads(sd, net)})


def _maze_type(sd) -> str:
    """The batched maze code's ``type`` read from the keys its ``Network.__init__`` creates."""
    if "alpha" not in sd and "w" in sd:
        return "rnn"
    for key, net_type in (("etaet", "modul"), ("h2DA.weight", "modplast"), ("eta", "plastic")):
        if key in sd:
            return net_type
    raise KeyError(
        "the 'maze' state_dict has neither 'eta' (plastic), 'h2DA.weight' (modplast), 'etaet' "
        f"(modul) nor 'w' without 'alpha' (rnn); keys present: {sorted(sd)}"
    )


def _rnn(sd, I: int, N: int, activation: str, wi: Tensor) -> nn.RNNCell:
    """``type='rnn'``: no plasticity; its ``w @ h`` is ``nn.RNNCell``'s ``weight_hh`` as is."""
    if activation not in ("tanh", "relu"):
        raise ValueError(
            f"activ={activation!r} with type='rnn': the converted torch.nn.RNNCell computes "
            "'tanh' or 'relu' only"
        )
    cell = nn.RNNCell(I, N, nonlinearity=activation, dtype=wi.dtype, device=wi.device)
    w = shape("w", get(sd, "w", "maze"), (N, N))
    cell.load_state_dict(
        {"weight_ih": wi, "bias_ih": get(sd, "i2h.bias", "maze"), "weight_hh": w,
         "bias_hh": torch.zeros_like(w[0])}
    )  # fmt: skip
    return cell


def batched_maze(sd, clip: float, layout: str, o: dict) -> nn.ModuleDict:
    """maze/batch.py (and the same-named networks of sr/modul.py): ``[post, pre]``, no fan-out."""
    net = "maze"
    net_type = _maze_type(sd) if o["type"] is None else choice("type", o["type"], MAZE_TYPES)
    addpw, fm = choice("addpw", o["addpw"], ADDPW), choice("fm", o["fm"], (0, 1))
    activation = choice("activ", o["activ"], ACTIVATIONS)
    mod_squash = choice("da", o["da"], DA)
    if net_type == "modul2":
        raise ValueError(
            "type='modul2' is not expressible: it updates the eligibility trace before the "
            "modulator moves the plastic weights by it; rule 'retro' (type 'modul') moves them by "
            "the trace as it stood before the step"
        )
    wi = get(sd, "i2h.weight", net)
    N, I = wi.shape
    if net_type == "rnn":
        return nn.ModuleDict({"cell": _rnn(sd, I, N, activation, wi), **heads(sd, net)})
    # (w + alpha * hebb) @ h with a column h: its matrices are [post, pre], hebbkern's "post_pre".
    w = shape("w", get(sd, "w", net), (N, N))
    kind, alpha = alpha_kind("alpha", get(sd, "alpha", net), N, N)
    if kind == "per_neuron":  # [1, 1, N] on [post, pre] matrices would be per PRE neuron
        raise ValueError("state_dict['alpha'] of the 'maze' network is [N, N] or [1]")
    if layout == "pre_post":
        w, alpha = w.t(), alpha.t() if kind == "per_connection" else alpha
    params = {"weight_ih": wi, "bias_ih": get(sd, "i2h.bias", net), "w": w, "alpha": alpha}
    opts = {"activation": activation, "soft_clip": addpw == 2, "layout": layout}
    # addpw=1, the unclamped sum, is the clamp at an infinite bound
    opts["clip"] = math.inf if addpw == 1 else clip
    if net_type == "plastic":  # da and fm are read by the modulated types only, as in the original
        rule = "hebb" if addpw == 0 else "clip"
        params["eta"] = scalar("eta", get(sd, "eta", net))
    else:
        opts["mod_squash"] = mod_squash
        params["mod_w"], params["mod_b"] = modulator(sd, "h2DA", N, net)
        if net_type == "modul":
            if addpw == 0:
                raise ValueError(
                    "addpw=0 of the 'modul' network is not expressible (the original's decay "
                    "branch reads the plastic weights' new value before assigning it, so it "
                    "cannot run; rule 'gated' is the decay of type 'modplast')"
                )
            if fm == 0:
                raise ValueError(
                    "fm=0 of the 'modul' network is not expressible (its unmodulated half keeps "
                    "a separate trace; n_modulated applies to type 'modplast')"
                )
            rule = "retro"
            params["eta"] = scalar("etaet", get(sd, "etaet", net))
        else:
            rule = "gated" if addpw == 0 else "neuromod"
            if fm == 0:
                if addpw == 0:
                    raise ValueError(
                        "fm=0 with addpw=0 is not expressible (n_modulated applies to the "
                        "additive rule; with addpw=0 both halves decay)"
                    )
                # the first N // 2 rows of the [post, pre] trace: the first N // 2 post neurons
                opts["n_modulated"] = N // 2
                params["eta"] = scalar("eta", get(sd, "eta", net))
    cell = _cell(I, N, rule, kind, wi, params, **opts)
    return nn.ModuleDict({"cell": cell, **heads(sd, net)})


def lstm(sd, clip: float, o: dict) -> PlasticLSTM:
    """awd-lstm-lm/mylstm.py's ``PlasticLSTM`` (and ``SimplePlasticLSTM``, its defaults)."""
    net = "lstm"
    w = get(sd, "w", net)
    N = w.shape[0]
    shape("w", w, (N, N))
    x2 = {g: get(sd, f"x2{g}.weight", net) for g in ("i", "f", "c", "opt")}
    I = x2["i"].shape[1]
    kind, alpha = alpha_kind("alpha", get(sd, "alpha", net), N, N)
    post = choice("hebboutput", o["hebboutput"], HEBBOUTPUT)
    clip_mode = choice("cliptype", o["cliptype"], CLIPTYPE)
    modultype = o["modultype"]
    if modultype is None:  # h2mod exists for both modulated types; 'none' has an eta instead
        if "h2mod.weight" not in sd and "eta" not in sd:
            raise KeyError(
                f"the 'lstm' state_dict has neither 'h2mod.weight' nor 'eta': {sorted(sd)}"
            )
        modultype = "modplasth2mod" if "h2mod.weight" in sd else "none"
    if choice("modultype", modultype, MODULTYPES) == "modplastc2mod":
        raise ValueError(
            "modultype='modplastc2mod' is not expressible: hebbkern's modulator reads the new "
            "hidden state h_t, not the cell state c_t"
        )
    modulated = modultype != "none"
    decay = o["cliptype"] == "decay"
    rule = ("gated" if decay else "neuromod") if modulated else ("hebb" if decay else "clip")
    has_fanout = modulated and "modfanout.weight" in sd  # modulout 'fanout' or 'single'
    m = PlasticLSTM(
        I, N, rule=rule, alpha=kind, fanout=has_fanout, clip=clip, dtype=w.dtype,
        device=w.device, clip_mode=clip_mode, post=post,
    )  # fmt: skip

    def hb(g):  # h2{g} is an nn.Linear(N, N): weight [post, pre], as nn.LSTM's weight_hh blocks
        return get(sd, f"h2{g}.weight", net), get(sd, f"h2{g}.bias", net)

    (whi, bhi), (whf, bhf), (who, bho) = hb("i"), hb("f"), hb("opt")
    # Gate order i, f, g, o (nn.LSTM's); the candidate's recurrent block is the plastic w [pre,
    # post], transposed into weight_hh's [post, pre] rows; it has no recurrent bias.
    params = {
        "weight_ih_l0": torch.cat([x2["i"], x2["f"], x2["c"], x2["opt"]]),
        "bias_ih_l0": torch.cat([get(sd, f"x2{g}.bias", net) for g in ("i", "f", "c", "opt")]),
        "weight_hh_l0": torch.cat([whi, whf, w.t(), who]),
        "bias_hh_l0": torch.cat([bhi, bhf, torch.zeros_like(bhi), bho]),
        "alpha_l0": alpha,
    }
    if modulated:
        params["mod_w_l0"], params["mod_b_l0"] = modulator(sd, "h2mod", N, net)
        if has_fanout:
            params["fanout_w_l0"], params["fanout_b_l0"] = fanout(sd, N, net)
    else:
        params["eta_l0"] = scalar("eta", get(sd, "eta", net))
    m.load_state_dict(params)
    return m


def convert(sd, network: str, clip, layout, opts: dict) -> nn.Module:
    if network not in ("simple_maze", "maze", "lstm"):
        raise ValueError(f"network must be 'simple_maze', 'maze' or 'lstm', got {network!r}")
    check_layout(layout)
    check_options(network, {**opts, "layout": layout})
    if network == "simple_maze":
        return simple_maze(sd, 2.0 if clip is None else clip, layout)
    if network == "maze":
        return batched_maze(sd, 1.0 if clip is None else clip, layout, opts)
    return lstm(sd, 2.0 if clip is None else clip, opts)
