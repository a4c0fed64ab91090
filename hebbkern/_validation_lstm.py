"""Argument checks of ``plastic_lstm`` (SPEC.md section 2), shared by the reference and the op."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ._validation import (
    ETA_RULES,
    MODULATED_RULES,
    RULES,
    check_clip,
    check_like,
    check_tensor,
    scalar_arg,
)


@dataclass
class PlasticLSTMArgs:
    """The normalised arguments of ``plastic_lstm``: scalars as 0-dim tensors."""

    u: Tensor
    wh: Tensor
    alpha: Tensor
    rule: str
    eta: Tensor | None
    mod_w: Tensor | None
    mod_b: Tensor | None
    fanout_w: Tensor | None
    fanout_b: Tensor | None
    clip: float
    h0: Tensor | None
    c0: Tensor | None
    hebb0: Tensor | None
    elig0: Tensor | None

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(T, B, N)``: steps, batch, hidden size."""
        T, B, G = self.u.shape
        return T, B, G // 4


def check_plastic_lstm_args(
    u, wh, alpha, *, rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip, h0, c0, hebb0, elig0
) -> PlasticLSTMArgs:
    u = check_tensor("u", u)
    if not u.is_floating_point():
        raise TypeError(f"u must be a floating-point tensor, got {u.dtype}")
    if u.dim() != 3 or u.shape[2] % 4 != 0:
        raise ValueError(
            f"u must have shape [T, B, 4 * N] (the gate inputs i, f, g, o), got {list(u.shape)}"
        )
    T, B, G = u.shape
    N = G // 4
    if T < 1 or N < 1:
        raise ValueError(f"u must have at least one step and one neuron, got {list(u.shape)}")
    if not isinstance(rule, str) or rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(map(repr, RULES))}, got {rule!r}")

    wh = check_tensor("wh", wh)
    check_like("wh", wh, u, "u", (N, 4 * N))
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

    for name, val, shape in (("h0", h0, (B, N)), ("c0", c0, (B, N)), ("hebb0", hebb0, (B, N, N))):
        if val is not None:
            check_like(name, check_tensor(name, val), u, "u", shape)
    if elig0 is not None:
        if rule != "retro":
            raise ValueError(f"elig0 only applies to rule 'retro', not {rule!r}")
        check_like("elig0", check_tensor("elig0", elig0), u, "u", (B, N, N))

    return PlasticLSTMArgs(
        u, wh, alpha, rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip, h0, c0, hebb0, elig0
    )
