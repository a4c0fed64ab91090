"""Eager reference of the plastic recurrent layer (SPEC.md section 1)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_plastic_rnn_args
from ..types import PlasticState


def plastic_rnn_step(
    u_t: Tensor,
    h: Tensor,
    hebb: Tensor,
    elig: Tensor | None,
    w: Tensor,
    alpha: Tensor,
    *,
    rule: str,
    eta: Tensor | None,
    mod_w: Tensor | None,
    mod_b: Tensor | None,
    fanout_w: Tensor | None,
    fanout_b: Tensor | None,
    clip: float,
    clamp_t: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """One step: ``(h_{t-1}, H_{t-1}, E_{t-1}) -> (h_t, H_t, E_t)``. Arguments already validated."""
    # alpha is [N, N], [N] (per post neuron j: broadcasts over the pre index i) or a scalar.
    a = u_t + torch.bmm(h.unsqueeze(1), w + alpha * hebb).squeeze(1)
    h_new = torch.tanh(a)
    if clamp_t is not None:
        h_new = torch.where(clamp_t, u_t, h_new)
    outer = h.unsqueeze(2) * h_new.unsqueeze(1)  # P[b, i, j] = h_{t-1}[b, i] * h_t[b, j]

    if rule in ("neuromod", "retro"):
        m = torch.tanh(h_new @ mod_w + mod_b)  # [B]: one neuromodulator per sample
        if fanout_w is not None:
            m = m.unsqueeze(1) * fanout_w + fanout_b  # [B, N]: per post-synaptic neuron
            m = m.unsqueeze(1)  # [B, 1, N], also at B = 1 (SPEC.md section 9)
        else:
            m = m.view(-1, 1, 1)

    if rule == "hebb":
        hebb = (1 - eta) * hebb + eta * outer
    elif rule == "oja":
        post = h_new.unsqueeze(1)  # [B, 1, N]
        hebb = hebb + eta * post * (h.unsqueeze(2) - post * hebb)
    elif rule == "clip":
        hebb = torch.clamp(hebb + eta * outer, -clip, clip)
    elif rule == "neuromod":
        hebb = torch.clamp(hebb + m * outer, -clip, clip)
    elif rule == "retro":
        hebb = torch.clamp(hebb + m * elig, -clip, clip)
        elig = (1 - eta) * elig + eta * outer
    else:
        raise ValueError(f"unknown rule {rule!r}")
    return h_new, hebb, elig


def plastic_rnn(
    u: Tensor,
    w: Tensor,
    alpha: Tensor,
    *,
    rule: str = "hebb",
    eta: float | Tensor | None = None,
    mod_w: Tensor | None = None,
    mod_b: float | Tensor | None = None,
    fanout_w: Tensor | None = None,
    fanout_b: Tensor | None = None,
    clip: float = 1.0,
    h0: Tensor | None = None,
    hebb0: Tensor | None = None,
    elig0: Tensor | None = None,
    clamp_mask: Tensor | None = None,
    backend: str | None = None,
) -> tuple[Tensor, PlasticState]:
    """Eager oracle of :func:`hebbkern.plastic_rnn` (same signature; ``backend`` is ignored)."""
    a = check_plastic_rnn_args(
        u, w, alpha, rule=rule, eta=eta, mod_w=mod_w, mod_b=mod_b, fanout_w=fanout_w,
        fanout_b=fanout_b, clip=clip, h0=h0, hebb0=hebb0, elig0=elig0, clamp_mask=clamp_mask,
    )  # fmt: skip
    T, B, N = a.shape
    h = a.h0 if a.h0 is not None else u.new_zeros(B, N)
    hebb = a.hebb0 if a.hebb0 is not None else u.new_zeros(B, N, N)
    elig = None
    if rule == "retro":
        elig = a.elig0 if a.elig0 is not None else u.new_zeros(B, N, N)
    outputs = []
    for t in range(T):
        h, hebb, elig = plastic_rnn_step(
            u[t], h, hebb, elig, w, alpha, rule=rule, eta=a.eta, mod_w=mod_w, mod_b=a.mod_b,
            fanout_w=fanout_w, fanout_b=fanout_b, clip=a.clip,
            clamp_t=None if a.clamp_mask is None else a.clamp_mask[t],
        )  # fmt: skip
        outputs.append(h)
    return torch.stack(outputs), PlasticState(h, hebb, elig)
