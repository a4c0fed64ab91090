"""The papers' variants of the plastic step (SPEC.md sections 1.1 and 2.1): their checks and the
one integer that carries them to the kernels.

The kernels take the variants as one ``int variant`` argument (an extra schema argument with a
default, so that the default call is unchanged):

    variant = activation code + 8 * modulator-squash code + 32 * soft_clip + 256 * (N - n_modulated)

with the codes the positions in ``ACTIVATIONS`` and ``MOD_SQUASHES`` (csrc/include/hebbkern/
plastic_rules.h decodes the same bits). ``0`` is section 1 exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

from torch import Tensor

from ._validation import eta_arg

ACTIVATIONS = ("tanh", "relu", "selu", "sigmoid", "identity")
MOD_SQUASHES = ("tanh", "sigmoid", "identity")
SOFT_CLIP_RULES = ("clip", "neuromod", "retro")
LSTM_CLIP_MODES = ("update", "read")
LSTM_POSTS = ("candidate", "drive", "cell", "hidden")


@dataclass(frozen=True)
class Variants:
    """Checked variant options; ``n_unmodulated`` is ``N - n_modulated`` (0: all modulated)."""

    activation: str = "tanh"
    mod_squash: str = "tanh"
    soft_clip: bool = False
    n_unmodulated: int = 0

    @property
    def code(self) -> int:
        return (
            ACTIVATIONS.index(self.activation)
            + 8 * MOD_SQUASHES.index(self.mod_squash)
            + 32 * int(self.soft_clip)
            + 256 * self.n_unmodulated
        )

    @property
    def is_default(self) -> bool:
        return self.code == 0


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_variants(
    rule: str,
    N: int,
    *,
    activation: object = "tanh",
    mod_squash: object = "tanh",
    soft_clip: object = False,
    n_modulated: object = None,
) -> Variants:
    """Checks the options of SPEC.md section 1.1 for ``rule`` (already checked) and ``N``."""
    activation = _choice("activation", activation, ACTIVATIONS)
    mod_squash = _choice("mod_squash", mod_squash, MOD_SQUASHES)
    if not isinstance(soft_clip, bool):
        raise TypeError(f"soft_clip must be a bool, got {type(soft_clip).__name__}")
    if soft_clip and rule not in SOFT_CLIP_RULES:
        raise ValueError(
            f"soft_clip applies to the clipped rules ({', '.join(SOFT_CLIP_RULES)}), not {rule!r}"
        )
    n_unmod = 0
    if n_modulated is not None:
        if isinstance(n_modulated, bool) or not isinstance(n_modulated, Integral):
            raise TypeError(f"n_modulated must be an int or None, got {type(n_modulated).__name__}")
        if rule != "neuromod":
            raise ValueError(f"n_modulated applies to rule 'neuromod' only, not {rule!r}")
        if not 0 <= int(n_modulated) <= N:
            raise ValueError(f"n_modulated must lie in [0, N] = [0, {N}], got {n_modulated}")
        n_unmod = N - int(n_modulated)
    return Variants(activation, mod_squash, soft_clip, n_unmod)


def eta_for_check(rule: str, eta: object, n_modulated: object) -> object:
    """The ``eta`` to hand to the rule checks: ``neuromod`` with ``n_modulated`` takes an ``eta``
    (for the unmodulated neurons) that those checks would refuse; :func:`partial_eta` checks it."""
    return None if rule == "neuromod" and n_modulated is not None else eta


def partial_eta(
    v: Variants, eta: object, checked: Tensor | None, u: Tensor, batch: int | None = None
) -> Tensor | None:
    """The rate of the unmodulated neurons when there are some, else ``checked`` (the rule's);
    with ``batch`` it may be one per sample (:func:`eta_arg`)."""
    if v.n_unmodulated == 0:
        return checked
    if eta is None:
        raise ValueError("rule 'neuromod' with n_modulated < N needs eta (the unmodulated rate)")
    return eta_arg(eta, u, batch)


def uses_eta(rule: str, variant: int) -> bool:
    """Whether the kernels return a gradient for ``eta`` (the fake kernels' output shapes)."""
    return rule not in ("neuromod", "gated") or variant >= 256


def check_lstm_variants(rule: str, clip_mode: object, post: object) -> tuple[str, str]:
    """The plastic LSTM's options of SPEC.md section 2.1."""
    clip_mode = _choice("clip_mode", clip_mode, LSTM_CLIP_MODES)
    post = _choice("post", post, LSTM_POSTS)
    if clip_mode == "read" and rule not in SOFT_CLIP_RULES:
        raise ValueError(
            f"clip_mode='read' applies to the clipped rules ({', '.join(SOFT_CLIP_RULES)}), "
            f"not {rule!r}"
        )
    return clip_mode, post


def check_with_variants(
    check, *tensors, rule, eta, activation, mod_squash, soft_clip, n_modulated, **keywords
) -> tuple:
    """``check(*tensors, rule=, eta=, **keywords)`` (plastic_rnn's or plastic_step's argument
    checks, op and reference alike), then the variants: returns the checked arguments, their
    ``eta`` the one the variants use (:func:`partial_eta`), and the :class:`Variants`."""
    a = check(*tensors, rule=rule, eta=eta_for_check(rule, eta, n_modulated), **keywords)
    u = tensors[0]
    v = check_variants(
        rule, u.shape[-1], activation=activation, mod_squash=mod_squash, soft_clip=soft_clip,
        n_modulated=n_modulated,
    )  # fmt: skip
    a.eta = partial_eta(v, eta, a.eta, u, getattr(a, "eta_batch", None))
    return a, v
