"""Eager reference of one step of the plastic recurrent layer (SPEC.md section 1)."""

from __future__ import annotations

from torch import Tensor

from .._validation import check_plastic_step_args
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
) -> PlasticState:
    """Eager oracle of :func:`hebbkern.plastic_step` (same signature; ``backend`` is ignored).

    The step is the one ``plastic_rnn``'s reference loops over; per-sample ``w`` and ``alpha``
    ``[B, N, N]`` broadcast through the same expressions.
    """
    a = check_plastic_step_args(
        u, h, hebb, w, alpha, rule=rule, eta=eta, mod_w=mod_w, mod_b=mod_b, fanout_w=fanout_w,
        fanout_b=fanout_b, clip=clip, elig=elig, clamp_mask=clamp_mask,
    )  # fmt: skip
    hebb, elig = a.hebb, a.elig  # the papers' shapes as views of the canonical ones
    if rule == "retro" and elig is None:
        elig = hebb.new_zeros(hebb.shape)
    h_new, hebb_new, elig_new = plastic_rnn_step(
        u, h, hebb, elig, w, a.alpha, rule=rule, eta=a.eta, mod_w=a.mod_w, mod_b=a.mod_b,
        fanout_w=a.fanout_w, fanout_b=a.fanout_b, clip=a.clip, clamp_t=a.clamp_mask,
    )  # fmt: skip
    return PlasticState(h_new, hebb_new, elig_new)
