"""Argument checks of the single-step families: ``plastic_step``, ``trace_update``,
``plastic_linear``.

Same contract as ``_validation.py`` (whose helpers these reuse): a bad input raises a ``TypeError``
(wrong type or dtype) or ``ValueError`` (wrong shape, value or device) naming the argument and what
was expected, before any kernel runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._validation import (
    ETA_RULES,
    MODULATED_RULES,
    RULES,
    check_clip,
    check_like,
    check_tensor,
    clamp_mask_bool,
    scalar_arg,
)

TRACE_RULES = ("hebb", "oja", "add", "clip")


def _floating(name: str, x: object) -> Tensor:
    x = check_tensor(name, x)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x


def _same(name: str, x: Tensor, ref: Tensor, ref_name: str) -> None:
    """dtype and device of ``ref``, any shape (checked by the caller)."""
    check_like(name, x, ref, ref_name, tuple(x.shape))


@dataclass
class PlasticStepArgs:
    """Normalised arguments of ``plastic_step``: scalars as 0-dim tensors, the mask as bool."""

    u: Tensor
    h: Tensor
    hebb: Tensor
    w: Tensor
    alpha: Tensor
    rule: str
    eta: Tensor | None
    mod_w: Tensor | None
    mod_b: Tensor | None
    fanout_w: Tensor | None
    fanout_b: Tensor | None
    clip: float
    elig: Tensor | None
    clamp_mask: Tensor | None


def check_plastic_step_args(
    u, h, hebb, w, alpha, *, rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip, elig, clamp_mask
) -> PlasticStepArgs:
    u = _floating("u", u)
    if u.dim() != 2 or u.shape[1] < 1:
        raise ValueError(f"u must have shape [B, N] with N >= 1, got shape {list(u.shape)}")
    B, N = u.shape
    if not isinstance(rule, str) or rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(map(repr, RULES))}, got {rule!r}")
    check_like("h", check_tensor("h", h), u, "u", (B, N))
    check_like("hebb", check_tensor("hebb", hebb), u, "u", (B, N, N))
    w = check_tensor("w", w)
    if tuple(w.shape) not in ((N, N), (B, N, N)):
        raise ValueError(
            f"w must have shape [N, N] (shared) or [B, N, N] (per sample) with B={B}, N={N}, "
            f"got {list(w.shape)}"
        )
    _same("w", w, u, "u")
    alpha = check_tensor("alpha", alpha)
    if tuple(alpha.shape) not in ((N, N), (N,), (), (B, N, N)):
        raise ValueError(
            f"alpha must have shape [N, N] (per connection), [N] (per post-synaptic neuron), [] "
            f"(scalar) or [B, N, N] (per sample) with B={B}, N={N}, got {list(alpha.shape)}"
        )
    _same("alpha", alpha, u, "u")
    clip = check_clip(clip)

    if rule in ETA_RULES:
        if eta is None:
            raise ValueError(f"rule {rule!r} needs eta (a float or 0-dim tensor)")
        eta = scalar_arg("eta", eta, u)
    elif eta is not None:
        raise ValueError(f"eta is not used by rule {rule!r}; pass eta=None")

    if rule in MODULATED_RULES:
        mod_w = check_tensor("mod_w", mod_w, optional=True)
        if mod_w is None:
            raise ValueError(f"rule {rule!r} needs mod_w, the neuromodulator weights of shape [N]")
        check_like("mod_w", mod_w, u, "u", (N,))
        mod_b = scalar_arg("mod_b", 0.0 if mod_b is None else mod_b, u)
        if (fanout_w is None) != (fanout_b is None):
            raise ValueError("fanout_w and fanout_b must be given together (or neither)")
        if fanout_w is not None:
            check_like("fanout_w", check_tensor("fanout_w", fanout_w), u, "u", (N,))
            check_like("fanout_b", check_tensor("fanout_b", fanout_b), u, "u", (N,))
    else:
        for name, val in (
            ("mod_w", mod_w),
            ("mod_b", mod_b),
            ("fanout_w", fanout_w),
            ("fanout_b", fanout_b),
        ):
            if val is not None:
                raise ValueError(
                    f"{name} only applies to the modulated rules (neuromod, retro), not {rule!r}"
                )

    if elig is not None:
        if rule != "retro":
            raise ValueError(f"elig only applies to rule 'retro', not {rule!r}")
        check_like("elig", check_tensor("elig", elig), u, "u", (B, N, N))

    if clamp_mask is not None:
        clamp_mask = check_tensor("clamp_mask", clamp_mask)
        if clamp_mask.dtype != torch.bool and not clamp_mask.is_floating_point():
            raise TypeError(
                f"clamp_mask must be a bool (or 0/1 floating) tensor, got {clamp_mask.dtype}"
            )
        if clamp_mask.device != u.device:
            raise ValueError(
                f"clamp_mask must be on {u.device} (the device of u), got {clamp_mask.device}"
            )
        if tuple(clamp_mask.shape) != (B, N):
            raise ValueError(
                f"clamp_mask must have shape [B, N] = {[B, N]}, got {list(clamp_mask.shape)}"
            )
        clamp_mask = clamp_mask_bool(clamp_mask)

    return PlasticStepArgs(
        u, h, hebb, w, alpha, rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip, elig, clamp_mask
    )


def check_plastic_linear_args(x, w, alpha, hebb) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``x`` [B, M]; ``w`` [M, K]; ``alpha`` [M, K], [K] or 0-dim; ``hebb`` [M, K] or [B, M, K]."""
    x = _floating("x", x)
    if x.dim() != 2:
        raise ValueError(f"x must have shape [B, M] (2 dims), got shape {list(x.shape)}")
    B, M = x.shape
    w = check_tensor("w", w)
    if w.dim() != 2 or w.shape[0] != M:
        raise ValueError(f"w must have shape [M, K] with M={M} (x.shape[1]), got {list(w.shape)}")
    _same("w", w, x, "x")
    K = w.shape[1]
    alpha = check_tensor("alpha", alpha)
    if tuple(alpha.shape) not in ((M, K), (K,), ()):
        raise ValueError(
            f"alpha must have shape [M, K] = {[M, K]}, [K] = {[K]} or [] (scalar), "
            f"got {list(alpha.shape)}"
        )
    _same("alpha", alpha, x, "x")
    hebb = check_tensor("hebb", hebb)
    if tuple(hebb.shape) not in ((M, K), (B, M, K)):
        raise ValueError(
            f"hebb must have shape [M, K] = {[M, K]} (shared) or [B, M, K] = {[B, M, K]} "
            f"(per sample), got {list(hebb.shape)}"
        )
    _same("hebb", hebb, x, "x")
    return x, w, alpha, hebb


@dataclass
class TraceUpdateArgs:
    """Normalised arguments of ``trace_update``: ``eta`` a tensor (0-dim, [B] or [B, K]) and the
    clip bound a float (``inf`` for the rules without one)."""

    trace: Tensor
    pre: Tensor
    post: Tensor
    rule: str
    eta: Tensor
    clip: float


def check_trace_update_args(trace, pre, post, *, rule, eta, clip) -> TraceUpdateArgs:
    trace = _floating("trace", trace)
    if trace.dim() not in (2, 3):
        raise ValueError(
            f"trace must have shape [M, K] (shared) or [B, M, K] (per sample), "
            f"got shape {list(trace.shape)}"
        )
    pre = check_tensor("pre", pre)
    if pre.dim() != 2:
        raise ValueError(f"pre must have shape [B, M] (2 dims), got shape {list(pre.shape)}")
    B, M = pre.shape
    post = check_tensor("post", post)
    if post.dim() != 2 or post.shape[0] != B:
        raise ValueError(
            f"post must have shape [B, K] with B={B} (pre.shape[0]), got {list(post.shape)}"
        )
    K = post.shape[1]
    shapes = ((M, K), (B, M, K))
    if tuple(trace.shape) not in shapes:
        raise ValueError(
            f"trace must have shape [M, K] = {[M, K]} (shared) or [B, M, K] = {[B, M, K]} "
            f"(per sample) for pre [B, M] and post [B, K], got {list(trace.shape)}"
        )
    _same("pre", pre, trace, "trace")
    _same("post", post, trace, "trace")
    if not isinstance(rule, str) or rule not in TRACE_RULES:
        raise ValueError(f"rule must be one of {', '.join(map(repr, TRACE_RULES))}, got {rule!r}")

    if isinstance(eta, Tensor) and eta.dim() >= 1 and tuple(eta.shape) != (1,):
        if tuple(eta.shape) not in ((B,), (B, K)):
            raise ValueError(
                f"eta must be a float, a 0-dim tensor, [B] = {[B]} (per sample) or [B, K] = "
                f"{[B, K]} (per sample and post neuron), got shape {list(eta.shape)}"
            )
        _same("eta", eta, trace, "trace")
        if trace.dim() == 2 and rule == "hebb":
            raise ValueError(
                "a shared trace with rule 'hebb' needs a scalar eta (the decay applies once to the "
                "shared trace); use rule 'add' or 'oja' for a per-sample modulation"
            )
    elif eta is None:
        raise ValueError("eta is required: a float, a 0-dim tensor, [B] or [B, K]")
    else:
        if isinstance(eta, Tensor):
            _same("eta", eta, trace, "trace")
        eta = scalar_arg("eta", eta, trace)

    if rule == "clip":
        if clip is None:
            raise ValueError("rule 'clip' needs clip, the bound c > 0")
        clip = check_clip(clip)
    elif clip is not None:
        raise ValueError(f"clip only applies to rule 'clip', not {rule!r}; pass clip=None")
    else:
        clip = float("inf")
    return TraceUpdateArgs(trace, pre, post, rule, eta, clip)
