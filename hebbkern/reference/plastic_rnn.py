"""Eager reference of the plastic recurrent layer (SPEC.md section 1)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_plastic_rnn_args
from ..types import PlasticState
from ._plastic_rule import initial, modulation, trace_step


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
    m = modulation(h_new, rule, mod_w, mod_b, fanout_w, fanout_b)
    hebb, elig = trace_step(hebb, elig, h, h_new, m, rule=rule, eta=eta, clip=clip)
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
    h, hebb = initial(a.h0, u, B, N), initial(a.hebb0, u, B, N, N)
    elig = initial(a.elig0, u, B, N, N) if rule == "retro" else None
    outputs = []
    for t in range(T):
        h, hebb, elig = plastic_rnn_step(
            u[t], h, hebb, elig, w, a.alpha, rule=rule, eta=a.eta, mod_w=a.mod_w, mod_b=a.mod_b,
            fanout_w=a.fanout_w, fanout_b=a.fanout_b, clip=a.clip,
            clamp_t=None if a.clamp_mask is None else a.clamp_mask[t],
        )  # fmt: skip
        outputs.append(h)
    return torch.stack(outputs), PlasticState(h, hebb, elig)
