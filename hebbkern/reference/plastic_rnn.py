"""Eager reference of the plastic recurrent layer (SPEC.md section 1)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_plastic_rnn_args
from .._variants import check_with_variants
from ..types import PlasticState
from ._plastic_rule import activate, initial, modulation, trace_step
from ._signature import op_keywords


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
    # alpha is [N, N], [N] (per post neuron j: broadcasts over the pre index i) or a scalar, or
    # per sample [B, N, N], [B, 1, N] or [B, 1, 1]; w is [N, N] or [B, N, N] (a population).
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


def plastic_rnn(u: Tensor, w: Tensor, alpha: Tensor, **options) -> tuple[Tensor, PlasticState]:
    """Eager oracle of :func:`hebbkern.plastic_rnn`: the op's arguments and defaults, ``layout``
    aside (``options`` are checked against the op's signature; ``backend`` is ignored)."""
    o = op_keywords("plastic_rnn", options, drop=("layout",), ignore=("backend",))
    a, _ = check_with_variants(check_plastic_rnn_args, u, w, alpha, **o)
    if a.eta is not None and a.eta.dim() == 1:  # one rate per sample: broadcast over its trace
        a.eta = a.eta.view(-1, 1, 1)
    T, B, N = a.shape
    h, hebb = initial(a.h0, u, B, N), initial(a.hebb0, u, B, N, N)
    elig = initial(a.elig0, u, B, N, N) if o["rule"] == "retro" else None
    outputs = []
    for t in range(T):
        clamp_t = None if a.clamp_mask is None else a.clamp_mask[t]
        h, hebb, elig = plastic_rnn_step(
            u[t], h, hebb, elig, w, a.alpha, clamp_t=clamp_t, **step_options(a, o)
        )
        outputs.append(h)
    return torch.stack(outputs), PlasticState(h, hebb, elig)


def step_options(a, o: dict[str, object]) -> dict[str, object]:
    """:func:`plastic_rnn_step`'s keywords from the checked arguments ``a`` and the rule and
    variants in ``o`` (the op's keywords; shared with the plastic_step reference)."""
    return dict(
        rule=o["rule"], eta=a.eta, mod_w=a.mod_w, mod_b=a.mod_b, fanout_w=a.fanout_w,
        fanout_b=a.fanout_b, clip=a.clip, activation=o["activation"], mod_squash=o["mod_squash"],
        soft_clip=o["soft_clip"], n_modulated=o["n_modulated"],
    )  # fmt: skip
