"""Eager reference of one step of the plastic recurrent layer (SPEC.md section 1)."""

from __future__ import annotations

from torch import Tensor

from .._validation import check_plastic_step_args
from .._variants import check_variants, eta_for_check, partial_eta
from ..types import PlasticState
from .plastic_rnn import plastic_rnn_step


def plastic_step(
    u: Tensor,
    h: Tensor,
    hebb: Tensor,
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
    elig: Tensor | None = None,
    clamp_mask: Tensor | None = None,
    backend: str | None = None,
    activation: str = "tanh",
    mod_squash: str = "tanh",
    soft_clip: bool = False,
    n_modulated: int | None = None,
) -> PlasticState:
    """Eager oracle of :func:`hebbkern.plastic_step` (same signature; ``backend`` is ignored).

    The step is the one ``plastic_rnn``'s reference loops over; per-sample ``w`` and ``alpha``
    ``[B, N, N]`` broadcast through the same expressions.
    """
    a = check_plastic_step_args(
        u, h, hebb, w, alpha, rule=rule, eta=eta_for_check(rule, eta, n_modulated), mod_w=mod_w,
        mod_b=mod_b, fanout_w=fanout_w, fanout_b=fanout_b, clip=clip, elig=elig,
        clamp_mask=clamp_mask,
    )  # fmt: skip
    v = check_variants(
        rule, u.shape[1], activation=activation, mod_squash=mod_squash, soft_clip=soft_clip,
        n_modulated=n_modulated,
    )  # fmt: skip
    a.eta = partial_eta(v, eta, a.eta, u)
    hebb, elig = a.hebb, a.elig  # the papers' shapes as views of the canonical ones
    if rule == "retro" and elig is None:
        elig = hebb.new_zeros(hebb.shape)
    h_new, hebb_new, elig_new = plastic_rnn_step(
        u, h, hebb, elig, w, a.alpha, rule=rule, eta=a.eta, mod_w=a.mod_w, mod_b=a.mod_b,
        fanout_w=a.fanout_w, fanout_b=a.fanout_b, clip=a.clip, clamp_t=a.clamp_mask,
        activation=activation, mod_squash=mod_squash, soft_clip=soft_clip, n_modulated=n_modulated,
    )  # fmt: skip
    return PlasticState(h_new, hebb_new, elig_new)
