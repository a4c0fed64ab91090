"""Eager reference of the plastic LSTM (SPEC.md section 2, the Backpropamine language model)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_plastic_lstm_args
from ..types import PlasticLSTMState


def trace_update(
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
    modulation, already shaped ``[B, 1, 1]`` or ``[B, 1, N]``."""
    outer = pre.unsqueeze(2) * post.unsqueeze(1)
    if rule == "hebb":
        return (1 - eta) * hebb + eta * outer, elig
    if rule == "oja":
        p = post.unsqueeze(1)
        return hebb + eta * p * (pre.unsqueeze(2) - p * hebb), elig
    if rule == "clip":
        return torch.clamp(hebb + eta * outer, -clip, clip), elig
    if rule == "neuromod":
        return torch.clamp(hebb + m * outer, -clip, clip), elig
    if rule == "retro":
        hebb = torch.clamp(hebb + m * elig, -clip, clip)
        return hebb, (1 - eta) * elig + eta * outer
    raise ValueError(f"unknown rule {rule!r}")


def plastic_lstm_step(
    u_t: Tensor,
    h: Tensor,
    c: Tensor,
    hebb: Tensor,
    elig: Tensor | None,
    wh: Tensor,
    alpha: Tensor,
    *,
    rule: str,
    eta: Tensor | None,
    mod_w: Tensor | None,
    mod_b: Tensor | None,
    fanout_w: Tensor | None,
    fanout_b: Tensor | None,
    clip: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """One step ``(h, c, H, E)_{t-1} -> (h, c, H, E)_t``. Arguments already validated."""
    N = h.shape[1]
    gi, gf, gg, go = (u_t + h @ wh).split(N, dim=1)  # gate order i, f, g, o as torch.nn.LSTM
    # Only the candidate path is plastic: h_{t-1} (alpha * H_{t-1}) joins its pre-activation.
    plastic = torch.bmm(h.unsqueeze(1), alpha * hebb).squeeze(1)
    i, f, o = torch.sigmoid(gi), torch.sigmoid(gf), torch.sigmoid(go)
    g = torch.tanh(gg + plastic)
    c_new = f * c + i * g
    h_new = o * torch.tanh(c_new)
    m = None
    if rule in ("neuromod", "retro"):
        m = torch.tanh(h_new @ mod_w + mod_b)  # [B], from the new output of the step
        if fanout_w is not None:
            m = (m.unsqueeze(1) * fanout_w + fanout_b).unsqueeze(1)  # [B, 1, N], also at B = 1
        else:
            m = m.view(-1, 1, 1)
    hebb, elig = trace_update(hebb, elig, h, g, m, rule=rule, eta=eta, clip=clip)
    return h_new, c_new, hebb, elig


def plastic_lstm(
    u: Tensor,
    wh: Tensor,
    alpha: Tensor,
    *,
    rule: str = "neuromod",
    eta: float | Tensor | None = None,
    mod_w: Tensor | None = None,
    mod_b: float | Tensor | None = None,
    fanout_w: Tensor | None = None,
    fanout_b: Tensor | None = None,
    clip: float = 2.0,
    h0: Tensor | None = None,
    c0: Tensor | None = None,
    hebb0: Tensor | None = None,
    elig0: Tensor | None = None,
    backend: str | None = None,
) -> tuple[Tensor, PlasticLSTMState]:
    """Eager oracle of :func:`hebbkern.plastic_lstm` (same signature; ``backend`` is ignored)."""
    a = check_plastic_lstm_args(
        u, wh, alpha, rule=rule, eta=eta, mod_w=mod_w, mod_b=mod_b, fanout_w=fanout_w,
        fanout_b=fanout_b, clip=clip, h0=h0, c0=c0, hebb0=hebb0, elig0=elig0,
    )  # fmt: skip
    T, B, N = a.shape
    h = a.h0 if a.h0 is not None else u.new_zeros(B, N)
    c = a.c0 if a.c0 is not None else u.new_zeros(B, N)
    hebb = a.hebb0 if a.hebb0 is not None else u.new_zeros(B, N, N)
    elig = None
    if rule == "retro":
        elig = a.elig0 if a.elig0 is not None else u.new_zeros(B, N, N)
    outputs = []
    for t in range(T):
        h, c, hebb, elig = plastic_lstm_step(
            u[t], h, c, hebb, elig, wh, alpha, rule=rule, eta=a.eta, mod_w=mod_w, mod_b=a.mod_b,
            fanout_w=fanout_w, fanout_b=fanout_b, clip=a.clip,
        )  # fmt: skip
        outputs.append(h)
    return torch.stack(outputs), PlasticLSTMState(h, c, hebb, elig)
