"""Argument checks shared by the reference, the fused ops and the modules.

Every public entry point validates here, before any kernel runs, so a bad input raises a
``TypeError`` (wrong type or dtype) or ``ValueError`` (wrong shape, value or device) that names
the argument and what was expected, instead of failing (or reading out of bounds) in a kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

import torch
from torch import Tensor

RULES = ("hebb", "oja", "clip", "neuromod", "retro")
MODULATED_RULES = ("neuromod", "retro")
ETA_RULES = ("hebb", "oja", "clip", "retro")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(name: str, x: object, *, optional: bool = False) -> Tensor | None:
    if x is None:
        if optional:
            return None
        raise TypeError(f"{name} must be a torch.Tensor, got None")
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_like(name: str, x: Tensor, ref: Tensor, ref_name: str, shape: tuple[int, ...]) -> None:
    """``x`` must have ``ref``'s dtype and device and exactly ``shape``."""
    if x.dtype != ref.dtype:
        raise TypeError(
            f"{name} must have dtype {ref.dtype} (the dtype of {ref_name}), got {x.dtype}"
        )
    if x.device != ref.device:
        raise ValueError(
            f"{name} must be on {ref.device} (the device of {ref_name}), got {x.device}"
        )
    if tuple(x.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(x.shape)}")


def scalar_arg(name: str, x: object, ref: Tensor) -> Tensor:
    """A Python number or a one-element tensor, returned as a 0-dim tensor like ``ref``.

    Shape [1] is accepted because the papers' code stores scalars as ``Parameter(torch.ones(1))``;
    the reshape keeps the gradient flowing back to the caller's tensor.
    """
    if isinstance(x, bool) or not isinstance(x, (Real, Tensor)):
        raise TypeError(f"{name} must be a float or a 0-dim tensor, got {type(x).__name__}")
    if isinstance(x, Tensor):
        if x.numel() != 1 or x.dim() > 1:
            raise ValueError(
                f"{name} must be a 0-dim tensor (or shape [1]), got shape {list(x.shape)}"
            )
        if x.dtype != ref.dtype:
            raise TypeError(f"{name} must have dtype {ref.dtype} (the dtype of u), got {x.dtype}")
        if x.device != ref.device:
            raise ValueError(f"{name} must be on {ref.device} (the device of u), got {x.device}")
        return x.reshape(())
    # A fill on the device, not torch.tensor(x, device=...): that copies from pageable host
    # memory, which synchronises and breaks CUDA-graph capture.
    return torch.full((), float(x), dtype=ref.dtype, device=ref.device)


def check_clip(clip: object) -> float:
    """The bound ``c`` of the clipped rules: a number > 0 (``inf`` disables clipping)."""
    if isinstance(clip, bool) or not isinstance(clip, Real):
        raise TypeError(f"clip must be a positive float, got {type(clip).__name__}")
    clip = float(clip)
    if not clip > 0:  # also rejects NaN, without math.isnan (which breaks symbolic tracing)
        raise ValueError(f"clip must be > 0, got {clip}")
    return clip


@dataclass
class PlasticRNNArgs:
    """The normalised arguments of ``plastic_rnn``: scalars as 0-dim tensors, masks as bool."""

    u: Tensor
    w: Tensor
    alpha: Tensor
    rule: str
    eta: Tensor | None
    mod_w: Tensor | None
    mod_b: Tensor | None
    fanout_w: Tensor | None
    fanout_b: Tensor | None
    clip: float
    h0: Tensor | None
    hebb0: Tensor | None
    elig0: Tensor | None
    clamp_mask: Tensor | None

    @property
    def shape(self) -> tuple[int, int, int]:
        T, B, N = self.u.shape
        return T, B, N


def check_plastic_rnn_args(
    u, w, alpha, *, rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip, h0, hebb0, elig0, clamp_mask
) -> PlasticRNNArgs:
    u = check_tensor("u", u)
    if u.dtype not in FLOAT_DTYPES:
        raise TypeError(f"u must be float16, bfloat16, float32 or float64, got {u.dtype}")
    if u.dim() != 3:
        raise ValueError(f"u must have shape [T, B, N] (3 dims), got shape {list(u.shape)}")
    T, B, N = u.shape
    if T < 1 or N < 1:
        raise ValueError(
            f"u must have at least one time step and one neuron, got shape {list(u.shape)}"
        )

    if not isinstance(rule, str) or rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(map(repr, RULES))}, got {rule!r}")
    modulated = rule in MODULATED_RULES

    w = check_tensor("w", w)
    check_like("w", w, u, "u", (N, N))
    alpha = check_tensor("alpha", alpha)
    if tuple(alpha.shape) not in ((N, N), (N,), ()):
        raise ValueError(
            f"alpha must have shape [N, N] (per connection), [N] (per post-synaptic neuron) or [] "
            f"(scalar) with N={N}, got {list(alpha.shape)}"
        )
    check_like("alpha", alpha, u, "u", tuple(alpha.shape))

    clip = check_clip(clip)

    if rule in ETA_RULES:
        if eta is None:
            raise ValueError(f"rule {rule!r} needs eta (a float or 0-dim tensor)")
        eta = scalar_arg("eta", eta, u)
    elif eta is not None:
        raise ValueError(f"eta is not used by rule {rule!r}; pass eta=None")

    if modulated:
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

    if h0 is not None:
        check_like("h0", check_tensor("h0", h0), u, "u", (B, N))
    if hebb0 is not None:
        check_like("hebb0", check_tensor("hebb0", hebb0), u, "u", (B, N, N))
    if elig0 is not None:
        if rule != "retro":
            raise ValueError(f"elig0 only applies to rule 'retro', not {rule!r}")
        check_like("elig0", check_tensor("elig0", elig0), u, "u", (B, N, N))

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
        if tuple(clamp_mask.shape) != (T, B, N):
            raise ValueError(
                f"clamp_mask must have shape [T, B, N] = {[T, B, N]}, got {list(clamp_mask.shape)}"
            )
        clamp_mask = clamp_mask if clamp_mask.dtype == torch.bool else clamp_mask != 0

    return PlasticRNNArgs(
        u, w, alpha, rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip, h0, hebb0, elig0, clamp_mask
    )
