"""The parts of one step that the plastic references share (SPEC.md sections 1 and 2): the
neuromodulator and the trace rules. ``plastic_rnn_step`` (hence ``plastic_step``) and
``plastic_lstm_step`` differ only in how the new activity is computed from the trace."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import MODULATED_RULES


def modulation(
    h_new: Tensor,
    rule: str,
    mod_w: Tensor | None,
    mod_b: Tensor | None,
    fanout_w: Tensor | None,
    fanout_b: Tensor | None,
    *,
    mod_squash: str = "tanh",
    n_modulated: int | None = None,
    eta: Tensor | None = None,
) -> Tensor | None:
    """``m_t = tanh(h_t . mod_w + mod_b)`` shaped ``[B, 1, 1]``, or with the fan-out
    ``[B, 1, N]`` (per post-synaptic neuron); ``None`` for the rules without a neuromodulator.

    SPEC.md section 1.1: ``mod_squash`` replaces the tanh; with ``n_modulated`` the post-synaptic
    neurons from ``n_modulated`` on take ``eta`` instead (``[B, 1, N]``)."""
    if rule not in MODULATED_RULES:
        return None
    m = squash(h_new @ mod_w + mod_b, mod_squash)  # [B]: one neuromodulator per sample
    if fanout_w is not None:
        m = (m.unsqueeze(1) * fanout_w + fanout_b).unsqueeze(1)  # [B, 1, N], also at B = 1
    else:
        m = m.view(-1, 1, 1)
    N = h_new.shape[-1]
    if n_modulated is not None and n_modulated < N:
        B = h_new.shape[0]
        m = torch.cat([m.expand(B, 1, N)[..., :n_modulated], eta.expand(B, 1, N - n_modulated)], 2)
    return m


def activate(a: Tensor, activation: str) -> Tensor:
    """The neuron's nonlinearity (SPEC.md section 1.1)."""
    if activation == "tanh":
        return torch.tanh(a)
    if activation == "relu":
        return torch.relu(a)
    if activation == "selu":
        return torch.selu(a)
    if activation == "sigmoid":
        return torch.sigmoid(a)
    if activation == "identity":
        return a
    raise ValueError(f"unknown activation {activation!r}")


def squash(z: Tensor, mod_squash: str) -> Tensor:
    """The neuromodulator's squashing function (SPEC.md section 1.1): one of the activations."""
    if mod_squash not in ("tanh", "sigmoid", "identity"):
        raise ValueError(f"unknown mod_squash {mod_squash!r}")
    return activate(z, mod_squash)


def bounded(hebb: Tensor, d: Tensor, clip: float, soft_clip: bool) -> Tensor:
    """``clamp(hebb + d, -c, c)``, or with ``soft_clip`` the soft clamp of SPEC.md section 1.1."""
    if not soft_clip:
        return torch.clamp(hebb + d, -clip, clip)
    up = torch.clamp(d, min=0) * (1 - hebb / clip)
    down = torch.clamp(d, max=0) * (1 + hebb / clip)
    return torch.clamp(hebb + up + down, -clip, clip)


def trace_step(
    hebb: Tensor,
    elig: Tensor | None,
    pre: Tensor,
    post: Tensor,
    m: Tensor | None,
    *,
    rule: str,
    eta: Tensor | None,
    clip: float,
    soft_clip: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """SPEC.md section 1's trace rules with ``P[b, i, j] = pre[b, i] * post[b, j]``; ``m`` is the
    modulation from :func:`modulation`; ``soft_clip`` as in section 1.1."""
    outer = pre.unsqueeze(2) * post.unsqueeze(1)
    if rule == "hebb":
        return (1 - eta) * hebb + eta * outer, elig
    if rule == "oja":
        p = post.unsqueeze(1)  # [B, 1, N]
        return hebb + eta * p * (pre.unsqueeze(2) - p * hebb), elig
    if rule == "clip":
        return bounded(hebb, eta * outer, clip, soft_clip), elig
    if rule == "neuromod":
        return bounded(hebb, m * outer, clip, soft_clip), elig
    if rule == "retro":
        hebb = bounded(hebb, m * elig, clip, soft_clip)
        return hebb, (1 - eta) * elig + eta * outer
    if rule == "gated":
        return (1 - m) * hebb + m * outer, elig
    raise ValueError(f"unknown rule {rule!r}")


def initial(x: Tensor | None, like: Tensor, *shape: int) -> Tensor:
    """A given initial state, or zeros of ``shape`` like ``like``."""
    return x if x is not None else like.new_zeros(shape)
