"""Eager reference of one step of the plastic recurrent layer (SPEC.md section 1)."""

from __future__ import annotations

from torch import Tensor

from .._validation import check_plastic_step_args
from .._variants import check_with_variants
from ..types import PlasticState
from ._signature import op_keywords
from .plastic_rnn import plastic_rnn_step, step_options


def plastic_step(
    u: Tensor, h: Tensor, hebb: Tensor, w: Tensor, alpha: Tensor, **options
) -> PlasticState:
    """Eager oracle of :func:`hebbkern.plastic_step`: the op's arguments and defaults, ``layout``
    aside (``options`` are checked against the op's signature; ``backend`` is ignored).

    The step is the one ``plastic_rnn``'s reference loops over; per-sample ``w`` and ``alpha``
    ``[B, N, N]`` broadcast through the same expressions.
    """
    o = op_keywords("plastic_step", options, drop=("layout",), ignore=("backend",))
    a, _ = check_with_variants(check_plastic_step_args, u, h, hebb, w, alpha, **o)
    hebb, elig = a.hebb, a.elig  # the papers' shapes as views of the canonical ones
    if o["rule"] == "retro" and elig is None:
        elig = hebb.new_zeros(hebb.shape)
    h_new, hebb_new, elig_new = plastic_rnn_step(
        u, h, hebb, elig, w, a.alpha, clamp_t=a.clamp_mask, **step_options(a, o)
    )
    return PlasticState(h_new, hebb_new, elig_new)
