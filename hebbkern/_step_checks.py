"""The per-call argument checks of ``plastic_step`` (so of ``nn.PlasticRNNCell``): a fast path.

An agent calls ``plastic_step`` once per environment step, so its checks run every step: 22 us of
a 175 us maze step before this file (benchmarks/NOTES.md P8), most of it in helpers written for
generality (``shape_in``'s generators, the papers' shapes, messages). Nearly every call passes
the canonical forms only. :func:`fast_plastic_step_args` recognises those forms in one pass and
returns exactly what the full checks would; for anything else (a paper shape, a float mask, an
``int`` subclass, a bad value) it returns ``None`` and the full checks run unchanged, so every error
is still raised by them, with the same message and in the same order. It never raises itself.

Nothing is cached per tensor: the only cache holds the variants' decisions, keyed by the exact
``str`` / ``int`` / ``bool`` values that decide them, so a hit implies the same checks passed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._guards import _is_expanded, check_materialisable
from ._validation import (
    ETA_RULES,
    FLOAT_DTYPES,
    MODULATED_RULES,
    PlasticStepArgs,
    check_plastic_step_args,
    check_rule,
)
from ._variants import Variants, check_variants, check_with_variants

_DTYPES = frozenset(FLOAT_DTYPES)
# Python numbers accepted without a second look: float() of a larger int could overflow, and the
# full checks should be the ones to say so.
_INT_LIMIT = 1 << 53
# (rule, N, activation, mod_squash, soft_clip, n_modulated) -> _RuleInfo; cleared when full (a
# loop uses one or two keys).
_INFO: dict[tuple, tuple] = {}
_MAX_INFO = 256


def _rule_info(rule, N, activation, mod_squash, soft_clip, n_modulated) -> tuple | None:
    """``(Variants, eta checked by the rule, modulated, retro, eta for unmodulated neurons)`` for
    valid options of exact types, else None (the full checks then raise)."""
    if not (
        type(rule) is str
        and type(activation) is str
        and type(mod_squash) is str
        and type(soft_clip) is bool
        and (n_modulated is None or type(n_modulated) is int)
    ):
        return None
    key = (rule, N, activation, mod_squash, soft_clip, n_modulated)
    info = _INFO.get(key)
    if info is None:
        try:
            check_rule(rule)
            v = check_variants(
                rule, N, activation=activation, mod_squash=mod_squash, soft_clip=soft_clip,
                n_modulated=n_modulated,
            )  # fmt: skip
        except (TypeError, ValueError):
            return None
        # eta_for_check: neuromod with n_modulated hands eta=None to the rule's checks.
        eta_by_rule = not (rule == "neuromod" and n_modulated is not None)
        info = (v, rule in ETA_RULES, rule in MODULATED_RULES, rule == "retro", eta_by_rule)
        if len(_INFO) >= _MAX_INFO:
            _INFO.clear()
        _INFO[key] = info
    return info


def _scalar(x, dtype, device):
    """:func:`~hebbkern._validation.scalar_arg`'s result for a float, a small int or a 0-dim
    tensor of ``dtype`` on ``device``; None for anything else."""
    t = type(x)
    if t is float or (t is int and -_INT_LIMIT <= x <= _INT_LIMIT):
        return torch.full((), float(x), dtype=dtype, device=device)
    if isinstance(x, Tensor) and x.dim() == 0 and x.dtype is dtype and x.device == device:
        return x
    return None


def _ok(x, dtype, device) -> bool:
    """A tensor of ``dtype`` on ``device`` that check_materialisable passes without a look
    (contiguous, or a view that is not expanded)."""
    return (
        isinstance(x, Tensor)
        and x.dtype is dtype
        and x.device == device
        and (x.is_contiguous() or not _is_expanded(x))
    )


def fast_plastic_step_args(
    u, h, hebb, w, alpha, rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip, elig, clamp_mask,
    activation, mod_squash, soft_clip, n_modulated,
) -> tuple[PlasticStepArgs, Variants] | None:  # fmt: skip
    """What ``check_with_variants(check_plastic_step_args, ...)`` returns, when every argument
    is in its canonical form and valid; else None."""
    if not isinstance(u, Tensor) or u.dim() != 2:
        return None
    dt, dev = u.dtype, u.device
    if dt not in _DTYPES or not _ok(u, dt, dev):
        return None
    B, N = u.shape
    if N < 1:
        return None
    info = _rule_info(rule, N, activation, mod_squash, soft_clip, n_modulated)
    if info is None:
        return None
    v, eta_rule, modulated, retro, eta_by_rule = info
    bn, bnn, nn = (B, N), (B, N, N), (N, N)
    if not (_ok(h, dt, dev) and h.shape == bn and _ok(hebb, dt, dev) and hebb.shape == bnn):
        return None
    if not (_ok(w, dt, dev) and (w.shape == nn or w.shape == bnn)):
        return None
    if not _ok(alpha, dt, dev):
        return None
    # Not the shapes paper_alpha rewrites: [1] (= [N] at N = 1) and [1, 1, N] (= [B, N, N] at
    # B = N = 1).
    nd = alpha.dim()
    if not (
        nd == 0
        or (nd == 2 and alpha.shape == nn)
        or (nd == 1 and N > 1 and alpha.shape[0] == N)
        or (nd == 3 and alpha.shape == bnn and (B > 1 or N > 1))
    ):
        return None
    tc = type(clip)
    if not (tc is float or (tc is int and 0 < clip <= _INT_LIMIT)):
        return None
    clip = float(clip)
    if not clip > 0:  # also NaN
        return None
    checked_eta = eta if eta_by_rule else None
    if eta_rule:
        checked_eta = _scalar(checked_eta, dt, dev)
        if checked_eta is None:
            return None
    elif checked_eta is not None:
        return None
    if modulated:
        if not (_ok(mod_w, dt, dev) and mod_w.shape == (N,)):
            return None
        mod_b = _scalar(0.0 if mod_b is None else mod_b, dt, dev)
        if mod_b is None:
            return None
        if fanout_w is not None or fanout_b is not None:
            if not (_ok(fanout_w, dt, dev) and fanout_w.shape == (N,)):
                return None
            if not (_ok(fanout_b, dt, dev) and fanout_b.shape == (N,)):
                return None
    elif mod_w is not None or mod_b is not None or fanout_w is not None or fanout_b is not None:
        return None
    if elig is not None and not (retro and _ok(elig, dt, dev) and elig.shape == bnn):
        return None
    if clamp_mask is not None and not (
        _ok(clamp_mask, torch.bool, dev) and clamp_mask.shape == bn
    ):  # a floating mask's values are checked by the full path
        return None
    if v.n_unmodulated:  # partial_eta: the unmodulated neurons' rate
        checked_eta = None if eta is None else _scalar(eta, dt, dev)
        if checked_eta is None:
            return None
    a = PlasticStepArgs(
        rule, checked_eta, mod_w, mod_b, fanout_w, fanout_b, clip, u, h, hebb, w, alpha, elig,
        clamp_mask,
    )  # fmt: skip
    return a, v


def check_plastic_step_call(
    u, h, hebb, w, alpha, rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip, elig, clamp_mask,
    activation, mod_squash, soft_clip, n_modulated,
) -> tuple[PlasticStepArgs, Variants]:  # fmt: skip
    """Every check ``plastic_step`` makes before a kernel runs (arguments, variants,
    materialisable inputs): the fast path, else the full checks (which raise on bad input)."""
    # torch.compile and functorch transforms trace the full checks, as before this file.
    if not torch.compiler.is_compiling() and not torch._C._are_functorch_transforms_active():
        fast = fast_plastic_step_args(
            u, h, hebb, w, alpha, rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip, elig,
            clamp_mask, activation, mod_squash, soft_clip, n_modulated,
        )  # fmt: skip
        if fast is not None:
            return fast
    a, v = check_with_variants(
        check_plastic_step_args, u, h, hebb, w, alpha, rule=rule, eta=eta, mod_w=mod_w,
        mod_b=mod_b, fanout_w=fanout_w, fanout_b=fanout_b, clip=clip, elig=elig,
        clamp_mask=clamp_mask, activation=activation, mod_squash=mod_squash, soft_clip=soft_clip,
        n_modulated=n_modulated,
    )  # fmt: skip
    check_materialisable(
        u=a.u, h=a.h, hebb=a.hebb, w=a.w, alpha=a.alpha, elig=a.elig, clamp_mask=a.clamp_mask
    )
    return a, v
