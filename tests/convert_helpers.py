"""The Backpropamine networks the converter tests load (tests/test_convert*.py): state_dicts built
the way the public code's networks hold them (key names and shapes written from reading its
definitions) and compact eager re-implementations of the original steps, in the original's own
layout, with the options of its command line (the maze code's type, addpw, da, activ, fm; the
plastic LSTM's cliptype, hebboutput, modultype, modulout).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

f64 = torch.float64
TOL = dict(rtol=1e-12, atol=1e-12)


def r(*shape, seed, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=g, dtype=f64)


def linear_sd(name, n_in, n_out, seed):
    """An ``nn.Linear(n_in, n_out)`` named ``name`` as it appears in a state_dict."""
    return {f"{name}.weight": r(n_out, n_in, seed=seed), f"{name}.bias": r(n_out, seed=seed + 1)}


def lin(sd, name, x):
    return F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"])


def trace(*shape, seed):
    """A trace as it stands mid-episode: inside the clamp, away from its bound."""
    return r(*shape, seed=seed, scale=0.3).clamp(-0.9, 0.9)


# The maze code's activ and da options (the original's names).
ACTIV = {"tanh": torch.tanh, "selu": F.selu, "relu": torch.relu}
DA = {"tanh": torch.tanh, "sig": torch.sigmoid, "lin": lambda z: z}


# ---------------------------------------------------------------------------------------------
# The one-file maze agent (simplemaze/maze.py): [pre, post], fan-out, clip 2
# ---------------------------------------------------------------------------------------------


def simple_maze_sd(I, N, alpha, seed=40):
    alpha_shape = {"full": (N, N), "per_neuron": (1, 1, N), "single": (1,)}[alpha]
    return {
        **linear_sd("i2h", I, N, seed),
        "w": r(N, N, seed=seed + 2),
        "alpha": r(*alpha_shape, seed=seed + 3),
        **linear_sd("h2mod", N, 1, seed + 4),
        **linear_sd("modfanout", 1, N, seed + 6),
        **linear_sd("h2o", N, 4, seed + 8),
        **linear_sd("h2v", N, 1, seed + 10),
    }


def simple_maze_step(sd, x, h, hebb):
    h_new = torch.tanh(
        lin(sd, "i2h", x) + torch.bmm(h.unsqueeze(1), sd["w"] + sd["alpha"] * hebb).squeeze(1)
    )
    delta = torch.bmm(h.unsqueeze(2), h_new.unsqueeze(1))
    eta = lin(sd, "modfanout", torch.tanh(lin(sd, "h2mod", h_new)).unsqueeze(2))  # [B, 1, N]
    hebb = torch.clamp(hebb + eta * delta, -2.0, 2.0)
    return lin(sd, "h2o", h_new), lin(sd, "h2v", h_new), h_new, hebb


# ---------------------------------------------------------------------------------------------
# The batched maze code (maze/batch.py; sr/modul.py for fm=0): [post, pre], clip 1
# ---------------------------------------------------------------------------------------------


def maze_sd(kind, I, N, seed=60, eta=False):
    """``kind``: the code's ``type`` (rnn, plastic, modplast, modul); ``eta``: a modulated network
    that also learns ``eta`` (its unmodulated half, fm=0: sr/modul.py's SimpleModulRNN)."""
    sd = {**linear_sd("i2h", I, N, seed), "w": r(N, N, seed=seed + 2)}
    if kind != "rnn":
        sd["alpha"] = r(N, N, seed=seed + 3)
    if kind == "plastic" or eta:
        sd["eta"] = torch.full((1,), 0.3, dtype=f64)
    if kind in ("modplast", "modul"):
        sd.update(linear_sd("h2DA", N, 1, seed + 4))
    if kind == "modul":
        sd["etaet"] = torch.full((1,), 0.3, dtype=f64)
    sd.update(linear_sd("h2o", N, 4, seed + 8))
    sd.update(linear_sd("h2v", N, 1, seed + 10))
    return sd


def constrain(hebb, d, addpw, rate=None, p=None, bound=1.0):
    """The maze code's ways of moving a trace by ``d``: addpw 3 hard clamp, 2 soft clamp (whose
    outer clamp is at ``bound``), 1 plain sum, 0 decay at ``rate`` toward ``p``."""
    if addpw == 3:
        return torch.clamp(hebb + d, -1.0, 1.0)
    if addpw == 2:
        soft = hebb + d.clamp(min=0.0) * (1 - hebb) + d.clamp(max=0.0) * (hebb + 1)
        return torch.clamp(soft, -bound, bound)
    if addpw == 1:
        return hebb + d
    return (1 - rate) * hebb + rate * p


def maze_step(sd, kind, x, h, hebb, et, addpw=3, da="tanh", activ="tanh", fm=1):
    """One step of the batched maze code in its own layout: w, alpha, hebb, et are [post, pre];
    for ``modul`` ``hebb`` is its plastic weights ``pw``."""
    B, N = h.shape
    w = sd["w"] if kind == "rnn" else sd["w"] + sd["alpha"] * hebb
    h_new = ACTIV[activ](lin(sd, "i2h", x).view(B, N, 1) + torch.matmul(w, h.view(B, N, 1)))
    h_new = h_new.view(B, N)
    if kind == "rnn":
        return h_new, hebb, et
    delta = torch.bmm(h_new.view(B, N, 1), h.view(B, 1, N))  # [B, post, pre]
    if kind == "plastic":
        return h_new, constrain(hebb, sd["eta"] * delta, addpw, sd["eta"], delta), et
    m = DA[da](lin(sd, "h2DA", h_new)).view(B, 1, 1)
    if kind == "modplast":
        new = constrain(hebb, m * delta, addpw, m, delta)
        if fm == 0:  # the first N // 2 rows (post neurons) modulated, the rest clip with eta
            rest = constrain(hebb, sd["eta"] * delta, addpw)
            new = torch.cat((new[:, : N // 2], rest[:, N // 2 :]), dim=1)
        return h_new, new, et
    hebb = constrain(hebb, m * et, addpw, bound=0.99999)  # modul's soft clamp bound is .99999
    et = (1 - sd["etaet"]) * et + sd["etaet"] * delta
    return h_new, hebb, et


# ---------------------------------------------------------------------------------------------
# The plastic LSTM (awd-lstm-lm/mylstm.py): per-neuron alpha [1, 1, N], clip 2
# ---------------------------------------------------------------------------------------------


def lstm_sd(I, N, alpha_shape=None, seed=80, prefix="", modulout="fanout"):
    """``modulout``: ``"fanout"`` or ``"single"`` (modultype modplasth2mod), or ``"none"``
    (modultype none: an ``eta`` and no modulator)."""
    sd = {"w": r(N, N, seed=seed), "alpha": r(*(alpha_shape or (1, 1, N)), seed=seed + 1)}
    for i, g in enumerate(("f", "i", "opt")):
        sd.update(linear_sd(f"h2{g}", N, N, seed + 10 + 2 * i))
    for i, g in enumerate(("f", "opt", "i", "c")):
        sd.update(linear_sd(f"x2{g}", I, N, seed + 20 + 2 * i))
    if modulout == "none":
        sd["eta"] = torch.full((1,), 0.2, dtype=f64)
    else:
        sd.update(linear_sd("h2mod", N, 1, seed + 30))
    if modulout == "fanout":
        sd.update(linear_sd("modfanout", 1, N, seed + 32))
    return {prefix + k: v for k, v in sd.items()}


def lstm_step(sd, x, h, c, hebb, *, quirk=False, cliptype="clip", hebboutput="i2c", clip=2.0):
    f = torch.sigmoid(lin(sd, "x2f", x) + lin(sd, "h2f", h))
    i = torch.sigmoid(lin(sd, "x2i", x) + lin(sd, "h2i", h))
    o = torch.sigmoid(lin(sd, "x2opt", x) + lin(sd, "h2opt", h))
    read = torch.clamp(hebb, -clip, clip) if cliptype == "aditya" else hebb
    drive = torch.bmm(h.unsqueeze(1), sd["w"] + sd["alpha"] * read).squeeze(1)
    g = torch.tanh(lin(sd, "x2c", x) + drive)
    c = f * c + i * g
    h_new = o * torch.tanh(c)
    y = {"i2c": g, "h2co": drive, "cell": c, "hidden": h_new}[hebboutput]
    delta = torch.bmm(h.unsqueeze(2), y.unsqueeze(1))
    if "eta" in sd:
        eta = sd["eta"]
    else:
        eta = torch.tanh(lin(sd, "h2mod", h_new)).unsqueeze(2)
        if "modfanout.weight" in sd:
            eta = lin(sd, "modfanout", eta)
            # The original squeezes then unsqueezes dim 1: [B, 1, N] for B > 1, [N, 1] at B = 1.
            eta = eta.squeeze().unsqueeze(1) if quirk else eta
    if cliptype == "decay":
        hebb = (1 - eta) * hebb + eta * delta
    elif cliptype == "clip":
        hebb = torch.clamp(hebb + eta * delta, -clip, clip)
    else:  # 'aditya': the trace is unbounded, clipped where it is read
        hebb = hebb + eta * delta
    return h_new, c, hebb
