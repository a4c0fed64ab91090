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
) -> Tensor | None:
    """``m_t = tanh(h_t . mod_w + mod_b)`` shaped ``[B, 1, 1]``, or with the fan-out
    ``[B, 1, N]`` (per post-synaptic neuron); ``None`` for the rules without a neuromodulator."""
    if rule not in MODULATED_RULES:
        return None
    m = torch.tanh(h_new @ mod_w + mod_b)  # [B]: one neuromodulator per sample
    if fanout_w is not None:
        return (m.unsqueeze(1) * fanout_w + fanout_b).unsqueeze(1)  # [B, 1, N], also at B = 1
    return m.view(-1, 1, 1)


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
) -> tuple[Tensor, Tensor | None]:
    """SPEC.md section 1's trace rules with ``P[b, i, j] = pre[b, i] * post[b, j]``; ``m`` is the
    modulation from :func:`modulation`."""
    outer = pre.unsqueeze(2) * post.unsqueeze(1)
    if rule == "hebb":
        return (1 - eta) * hebb + eta * outer, elig
    if rule == "oja":
        p = post.unsqueeze(1)  # [B, 1, N]
        return hebb + eta * p * (pre.unsqueeze(2) - p * hebb), elig
    if rule == "clip":
        return torch.clamp(hebb + eta * outer, -clip, clip), elig
    if rule == "neuromod":
        return torch.clamp(hebb + m * outer, -clip, clip), elig
    if rule == "retro":
        hebb = torch.clamp(hebb + m * elig, -clip, clip)
        return hebb, (1 - eta) * elig + eta * outer
    raise ValueError(f"unknown rule {rule!r}")


def initial(x: Tensor | None, like: Tensor, *shape: int) -> Tensor:
    """A given initial state, or zeros of ``shape`` like ``like``."""
    return x if x is not None else like.new_zeros(shape)
