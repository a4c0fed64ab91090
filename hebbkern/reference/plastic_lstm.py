"""Eager reference of the plastic LSTM (SPEC.md section 2, the Backpropamine language model)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_plastic_lstm_args
from .._variants import check_lstm_variants
from ..types import PlasticLSTMState
from ._plastic_rule import initial, modulation, trace_step


# Its keywords are plastic_rnn_step's (the shared plastic options), written out: the tensors differ
# (c, wh) and the rule math they share is in _plastic_rule.py, not here.
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
    clip_mode: str = "update",
    post: str = "candidate",
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """One step ``(h, c, H, E)_{t-1} -> (h, c, H, E)_t``. Arguments already validated; the
    variants of SPEC.md section 2.1 default to section 2."""
    N = h.shape[1]
    hw = h @ wh
    gi, gf, gg, go = (u_t + hw).split(N, dim=1)  # gate order i, f, g, o as torch.nn.LSTM
    # Only the candidate path is plastic: h_{t-1} (alpha * H_{t-1}) joins its pre-activation.
    read = torch.clamp(hebb, -clip, clip) if clip_mode == "read" else hebb
    plastic = torch.bmm(h.unsqueeze(1), alpha * read).squeeze(1)
    i, f, o = torch.sigmoid(gi), torch.sigmoid(gf), torch.sigmoid(go)
    g = torch.tanh(gg + plastic)
    c_new = f * c + i * g
    h_new = o * torch.tanh(c_new)
    m = modulation(h_new, rule, mod_w, mod_b, fanout_w, fanout_b)  # from the step's new output
    y = {"candidate": g, "cell": c_new, "hidden": h_new}.get(post)
    if y is None:  # "drive": the recurrent candidate drive, before the input and the tanh
        y = hw[:, 2 * N : 3 * N] + plastic
    # clip_mode "read": the clipped rules' update without its clamp (an infinite bound).
    bound = float("inf") if clip_mode == "read" else clip
    hebb, elig = trace_step(hebb, elig, h, y, m, rule=rule, eta=eta, clip=bound)
    return h_new, c_new, hebb, elig


# The public op's signature written out (as plastic_rnn's): the oracle takes the same keywords.
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
    clip_mode: str = "update",
    post: str = "candidate",
) -> tuple[Tensor, PlasticLSTMState]:
    """Eager oracle of :func:`hebbkern.plastic_lstm` (same signature; ``backend`` is ignored)."""
    a = check_plastic_lstm_args(
        u, wh, alpha, rule=rule, eta=eta, mod_w=mod_w, mod_b=mod_b, fanout_w=fanout_w,
        fanout_b=fanout_b, clip=clip, h0=h0, c0=c0, hebb0=hebb0, elig0=elig0,
    )  # fmt: skip
    clip_mode, post = check_lstm_variants(rule, clip_mode, post)
    T, B, N = a.shape
    h, c, hebb = initial(a.h0, u, B, N), initial(a.c0, u, B, N), initial(a.hebb0, u, B, N, N)
    elig = initial(a.elig0, u, B, N, N) if rule == "retro" else None
    outputs = []
    for t in range(T):
        h, c, hebb, elig = plastic_lstm_step(
            u[t], h, c, hebb, elig, wh, a.alpha, rule=rule, eta=a.eta, mod_w=a.mod_w,
            mod_b=a.mod_b, fanout_w=a.fanout_w, fanout_b=a.fanout_b, clip=a.clip,
            clip_mode=clip_mode, post=post,
        )  # fmt: skip
        outputs.append(h)
    return torch.stack(outputs), PlasticLSTMState(h, c, hebb, elig)
