"""The plastic parameters of the recurrent modules (``PlasticRNN``, ``PlasticRNNCell``,
``PlasticLSTM``): the constructor checks, the parameters a rule needs, and their initialisation.

One copy for every module, so that the modules' ``state_dict`` names, shapes and initial values
cannot drift apart (a trained ``PlasticRNN``'s state_dict loads into a ``PlasticRNNCell``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._validation import ETA_RULES, MODULATED_RULES, RULES, check_clip, check_positive_ints
from ._checks import check_factory_dtype, check_input

ALPHA_KINDS = ("per_connection", "per_neuron", "scalar")
# The plastic parameters in their registration (and initialisation) order.
PLASTIC_NAMES = ("alpha", "eta", "mod_w", "mod_b", "fanout_w", "fanout_b")


def check_config(sizes: dict[str, object], rule: object, alpha: object) -> None:
    """Positive int sizes, a known rule and a known kind of alpha."""
    check_positive_ints(**sizes)
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(map(repr, RULES))}, got {rule!r}")
    if alpha not in ALPHA_KINDS:
        raise ValueError(f"alpha must be one of {', '.join(map(repr, ALPHA_KINDS))}, got {alpha!r}")


def plastic_parameters(
    N: int, rule: str, alpha: str, fanout: bool, factory: dict
) -> dict[str, nn.Parameter | None]:
    """Uninitialised ``alpha``, ``eta``, ``mod_w``, ``mod_b``, ``fanout_w``, ``fanout_b`` for
    ``N`` neurons (``None`` for those the rule does not use), in ``PLASTIC_NAMES`` order."""

    def param(*shape):
        return nn.Parameter(torch.empty(shape, **factory))

    alpha_shape = {"per_connection": (N, N), "per_neuron": (N,), "scalar": ()}[alpha]
    modulated = rule in MODULATED_RULES
    return {
        "alpha": param(*alpha_shape),
        "eta": param() if rule in ETA_RULES else None,
        "mod_w": param(N) if modulated else None,
        "mod_b": param() if modulated else None,
        "fanout_w": param(N) if fanout else None,
        "fanout_b": param(N) if fanout else None,
    }


@torch.no_grad()
def reset_plastic_(N: int, p: dict[str, Tensor | None], *, alpha_normal: bool) -> None:
    """The papers' initialisation: ``alpha`` ``0.01 * N(0, 1)`` (differentiable plasticity,
    ``alpha_normal``) or ``0.001 * U[0, 1)`` (Backpropamine), ``eta`` 0.01, the modulator and its
    fan-out as ``nn.Linear(N, 1)`` and ``nn.Linear(1, N)``."""
    if alpha_normal:
        p["alpha"].normal_(0, 0.01)
    else:
        p["alpha"].uniform_(0, 0.001)
    if p["eta"] is not None:
        p["eta"].fill_(0.01)
    if p["mod_w"] is not None:  # as nn.Linear(N, 1)
        b = 1.0 / math.sqrt(N)
        p["mod_w"].uniform_(-b, b)
        p["mod_b"].uniform_(-b, b)
    if p["fanout_w"] is not None:  # as nn.Linear(1, N): fan-in 1
        p["fanout_w"].uniform_(-1.0, 1.0)
        p["fanout_b"].uniform_(-1.0, 1.0)


class PlasticRNNParams(nn.Module):
    """The parameters of ``PlasticRNN`` and ``PlasticRNNCell`` (same names, shapes and
    initialisation): the input projection ``weight_ih``, ``bias_ih`` (``None`` without
    ``input_projection``), the recurrent ``w`` and the plastic parameters; ``__init__`` checks
    the constructor arguments."""

    def __init__(
        self, input_size, hidden_size, rule, alpha, fanout, clip, bias, device, dtype,
        input_projection=True,
    ):  # fmt: skip
        super().__init__()
        check_config({"input_size": input_size, "hidden_size": hidden_size}, rule, alpha)
        if not isinstance(input_projection, bool):
            raise TypeError(f"input_projection must be a bool, got {input_projection!r}")
        if not input_projection and input_size != hidden_size:
            raise ValueError(
                "input_projection=False adds the input to the drive directly, so input_size must "
                f"equal hidden_size, got input_size={input_size}, hidden_size={hidden_size}"
            )
        if fanout and rule not in MODULATED_RULES:
            raise ValueError(
                f"fanout only applies to the modulated rules (neuromod, retro), not {rule!r}"
            )
        check_factory_dtype(dtype)
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size = input_size, hidden_size
        self.rule, self.alpha_kind, self.fanout = rule, alpha, bool(fanout)
        self.clip = check_clip(clip)
        self.input_projection = input_projection
        N = hidden_size
        if input_projection:
            self.weight_ih = nn.Parameter(torch.empty(N, input_size, **factory))
            self.bias_ih = nn.Parameter(torch.empty(N, **factory)) if bias else None
        else:  # registered as absent: not in the state_dict, nothing to initialise
            self.register_parameter("weight_ih", None)
            self.register_parameter("bias_ih", None)
        self.w = nn.Parameter(torch.empty(N, N, **factory))
        for name, prm in plastic_parameters(N, rule, alpha, self.fanout, factory).items():
            setattr(self, name, prm)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Input projection as nn.Linear does it.
        bound = 1.0 / math.sqrt(self.input_size)
        if self.weight_ih is not None:
            nn.init.uniform_(self.weight_ih, -bound, bound)
        if self.bias_ih is not None:
            nn.init.uniform_(self.bias_ih, -bound, bound)
        backpropamine = self.rule in MODULATED_RULES
        with torch.no_grad():
            if backpropamine:
                self.w.uniform_(0, 0.001)
            else:  # differentiable plasticity
                self.w.normal_(0, 0.01)
        plastic = {name: getattr(self, name) for name in PLASTIC_NAMES}
        reset_plastic_(self.hidden_size, plastic, alpha_normal=not backpropamine)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, rule={self.rule!r}, alpha={self.alpha_kind!r}"
        if self.fanout:
            s += ", fanout=True"
        if self.rule in ("clip", "neuromod", "retro"):
            s += f", clip={self.clip}"
        if getattr(self, "layout", "pre_post") != "pre_post":
            s += f", layout={self.layout!r}"
        if hasattr(self, "variants"):
            s += variant_repr(self)
        if getattr(self, "batch_first", False):
            s += ", batch_first=True"
        if not self.input_projection:
            s += ", input_projection=False"
        elif self.bias_ih is None:
            s += ", bias=False"
        return s

    def input_drive(self, x: Tensor) -> Tensor:
        """``u = x W_ih^T + b_ih``, or ``x`` itself without an input projection."""
        if not self.input_projection:
            return x
        return nn.functional.linear(x, self.weight_ih, self.bias_ih)


def check_sequence_input(x: object, input_size: int, param: Tensor) -> None:
    """``x`` of a sequence module: ``[T, B, in]``, ``[B, T, in]`` or unbatched ``[T, in]``, with
    the dtype and device of the module's parameter ``param``."""
    check_input("x", x, param)
    if x.dim() not in (2, 3) or x.shape[-1] != input_size:
        raise ValueError(
            f"x must have shape [T, B, {input_size}] (or [B, T, {input_size}] with "
            f"batch_first, or unbatched [T, {input_size}]), got {list(x.shape)}"
        )


def set_variants(
    module: nn.Module, activation: str, mod_squash: str, soft_clip: bool, n_modulated: int | None
) -> None:
    """Checks and stores the variants of SPEC.md section 1.1 on a ``PlasticRNNParams`` module;
    with ``n_modulated`` below N, rule ``neuromod`` also learns ``eta`` (the unmodulated neurons'
    rate, initialised to 0.01 as the papers' ``eta``)."""
    from .._variants import check_variants

    v = check_variants(
        module.rule, module.hidden_size, activation=activation, mod_squash=mod_squash,
        soft_clip=soft_clip, n_modulated=n_modulated,
    )  # fmt: skip
    module.variants = v
    module.n_modulated = n_modulated
    if v.n_unmodulated and module.eta is None:
        w = module.w
        module.eta = nn.Parameter(torch.full((), 0.01, dtype=w.dtype, device=w.device))


def variant_kwargs(module: nn.Module) -> dict:
    """The op keywords of the variants stored by :func:`set_variants`."""
    v = module.variants
    return {
        "activation": v.activation, "mod_squash": v.mod_squash, "soft_clip": v.soft_clip,
        "n_modulated": module.n_modulated,
    }  # fmt: skip


def variant_repr(module: nn.Module) -> str:
    """The non-default variants for ``extra_repr``."""
    v, s = module.variants, ""
    if v.activation != "tanh":
        s += f", activation={v.activation!r}"
    if v.mod_squash != "tanh":
        s += f", mod_squash={v.mod_squash!r}"
    if v.soft_clip:
        s += ", soft_clip=True"
    if module.n_modulated is not None:
        s += f", n_modulated={module.n_modulated}"
    return s
