"""Eager reference of the plastic recurrent layer (SPEC.md section 1)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_plastic_rnn_args
from .._variants import check_variants, eta_for_check, partial_eta
from ..types import PlasticState
from ._plastic_rule import activate, initial, modulation, trace_step


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
    activation: str = "tanh",
    mod_squash: str = "tanh",
    soft_clip: bool = False,
    n_modulated: int | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """One step: ``(h_{t-1}, H_{t-1}, E_{t-1}) -> (h_t, H_t, E_t)``. Arguments already validated;
    the variants (SPEC.md section 1.1) default to section 1."""
    # alpha is [N, N], [N] (per post neuron j: broadcasts over the pre index i) or a scalar.
    a = u_t + torch.bmm(h.unsqueeze(1), w + alpha * hebb).squeeze(1)
    h_new = activate(a, activation)
    if clamp_t is not None:
        h_new = torch.where(clamp_t, u_t, h_new)
    m = modulation(
        h_new, rule, mod_w, mod_b, fanout_w, fanout_b, mod_squash=mod_squash,
        n_modulated=n_modulated, eta=eta,
    )  # fmt: skip
    hebb, elig = trace_step(
        hebb, elig, h, h_new, m, rule=rule, eta=eta, clip=clip, soft_clip=soft_clip
    )
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
    activation: str = "tanh",
    mod_squash: str = "tanh",
    soft_clip: bool = False,
    n_modulated: int | None = None,
) -> tuple[Tensor, PlasticState]:
    """Eager oracle of :func:`hebbkern.plastic_rnn` (same signature; ``backend`` is ignored)."""
    a = check_plastic_rnn_args(
        u, w, alpha, rule=rule, eta=eta_for_check(rule, eta, n_modulated), mod_w=mod_w,
        mod_b=mod_b, fanout_w=fanout_w, fanout_b=fanout_b, clip=clip, h0=h0, hebb0=hebb0,
        elig0=elig0, clamp_mask=clamp_mask,
    )  # fmt: skip
    T, B, N = a.shape
    v = check_variants(
        rule, N, activation=activation, mod_squash=mod_squash, soft_clip=soft_clip,
        n_modulated=n_modulated,
    )  # fmt: skip
    a.eta = partial_eta(v, eta, a.eta, u)
    h, hebb = initial(a.h0, u, B, N), initial(a.hebb0, u, B, N, N)
    elig = initial(a.elig0, u, B, N, N) if rule == "retro" else None
    outputs = []
    for t in range(T):
        h, hebb, elig = plastic_rnn_step(
            u[t], h, hebb, elig, w, a.alpha, rule=rule, eta=a.eta, mod_w=a.mod_w, mod_b=a.mod_b,
            fanout_w=a.fanout_w, fanout_b=a.fanout_b, clip=a.clip,
            clamp_t=None if a.clamp_mask is None else a.clamp_mask[t], activation=activation,
            mod_squash=mod_squash, soft_clip=soft_clip, n_modulated=n_modulated,
        )  # fmt: skip
        outputs.append(h)
    return torch.stack(outputs), PlasticState(h, hebb, elig)
