"""Argument checks of every op family, shared by the references, the fused ops and the modules.

Every public entry point validates here, before any kernel runs, so a bad input raises a
``TypeError`` (wrong type or dtype) or ``ValueError`` (wrong shape, value or device) that names
the argument and what was expected, instead of failing (or reading out of bounds) in a kernel.

The checks every family makes (a tensor, dtype/device/shape like a reference tensor, a scalar, the
rule name, the plasticity-rule scalars, the eligibility trace, the clamp mask) are written once at
the top; each family's ``check_<family>_args`` below composes them in its own argument order.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import torch
from torch import Tensor

RULES = ("hebb", "oja", "clip", "neuromod", "retro", "gated")
MODULATED_RULES = ("neuromod", "retro", "gated")
ETA_RULES = ("hebb", "oja", "clip", "retro")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
TRACE_RULES = ("hebb", "oja", "add", "clip")
HEBBIAN_RULES = ("hebb", "instar", "oja")


# ---------------------------------------------------------------------------------------------
# Shared checks
# ---------------------------------------------------------------------------------------------


def check_tensor(name: str, x: object, *, optional: bool = False) -> Tensor | None:
    if x is None:
        if optional:
            return None
        raise TypeError(f"{name} must be a torch.Tensor, got None")
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_positive_ints(**sizes: object) -> None:
    """Each keyword an int ``>= 1`` (not a bool): a module's sizes, a count."""
    for name, val in sizes.items():
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name} must be a positive int, got {val!r}")


def check_floating(name: str, x: object) -> Tensor:
    x = check_tensor(name, x)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
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


def check_same(name: str, x: Tensor, ref: Tensor, ref_name: str) -> None:
    """dtype and device of ``ref``, any shape (checked by the caller)."""
    check_like(name, x, ref, ref_name, tuple(x.shape))


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
        # No new view for a 0-dim tensor (1 us a call, once per step for the modulator's bias).
        return x if x.dim() == 0 else x.reshape(())
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


def shape_in(x: Tensor, shapes: tuple[tuple[int, ...], ...]) -> bool:
    """Whether ``x``'s shape is one of ``shapes``, compared size by size: under
    ``torch.compile`` with dynamic shapes, torch 2.11's dynamo evaluates the tuple containment
    ``tuple(x.shape) in shapes`` wrongly (a [4, 4] ``w`` was refused as not [N, N]). Outside
    torch.compile and torch.export the containment is exact and ten times cheaper (0.15 us
    against 1.4 us a call; the single-step ops check a few shapes per step)."""
    if not torch.compiler.is_compiling():
        return x.shape in shapes
    return any(
        x.dim() == len(s) and all(a == b for a, b in zip(x.shape, s, strict=True)) for s in shapes
    )


def check_rule(rule: object, rules: tuple[str, ...] = RULES) -> str:
    if not isinstance(rule, str) or rule not in rules:
        raise ValueError(f"rule must be one of {', '.join(map(repr, rules))}, got {rule!r}")
    return rule


def paper_alpha(alpha: Tensor, N: int) -> Tensor:
    """The papers' alpha shapes as views of the canonical ones: ``[1]`` -> ``[]`` (one alpha
    shared by every connection) and ``[1, 1, N]`` -> ``[N]`` (per post-synaptic neuron, the
    plastic LSTM's). Any other shape is returned unchanged, for the caller's check."""
    if shape_in(alpha, ((1,),)):
        return alpha.view(())
    if shape_in(alpha, ((1, 1, N),)):
        return alpha.view(N)
    return alpha


def linear_vector(
    name: str, x: Tensor, u: Tensor, N: int, linear_shape: tuple[int, int], linear_name: str
) -> Tensor:
    """A per-neuron vector ``[N]``, or the same numbers as an ``nn.Linear`` weight of shape
    ``linear_shape`` (``[1, N]`` for the modulator, ``[N, 1]`` for the fan-out), returned as a
    view ``[N]``."""
    if shape_in(x, (linear_shape,)):
        check_same(name, x, u, "u")
        return x.view(N)
    if not shape_in(x, ((N,),)):
        raise ValueError(
            f"{name} must have shape [{N}] ([N], or {list(linear_shape)}, the shape of "
            f"{linear_name}), got {list(x.shape)}"
        )
    check_same(name, x, u, "u")
    return x


def check_trace(name: str, x: object, u: Tensor, B: int, N: int) -> Tensor | None:
    """An optional trace ``[B, N, N]``, or unbatched ``[N, N]`` (the differentiable-plasticity
    code keeps one trace for its single sample) returned as a view expanded to ``[B, N, N]``: the
    batch starts from the same trace, and autograd sums the gradient back to ``[N, N]``."""
    if x is None:
        return None
    x = check_tensor(name, x)
    if shape_in(x, ((N, N),)):
        check_same(name, x, u, "u")
        return x.expand(B, N, N)
    if not shape_in(x, ((B, N, N),)):
        raise ValueError(
            f"{name} must have shape {[B, N, N]} ([B, N, N], or unbatched [N, N] = {[N, N]}, "
            f"broadcast to the batch), got {list(x.shape)}"
        )
    check_same(name, x, u, "u")
    return x


def check_alpha(alpha: object, u: Tensor, N: int, *, batch: int | None = None) -> Tensor:
    """``alpha`` [N, N], [N] or []; with ``batch`` also [B, N, N] (one per sample).

    The papers' shapes are accepted too and returned as views of the canonical ones: ``[1]`` (one
    shared alpha, the "homo"/"yoked"/"single" alpha) as ``[]``, and the plastic LSTM's per-neuron
    ``[1, 1, N]`` as ``[N]``; the view carries the gradient back to the caller's shape."""
    alpha = check_tensor("alpha", alpha)
    alpha = paper_alpha(alpha, N)
    if batch is None:
        if not shape_in(alpha, ((N, N), (N,), ())):
            raise ValueError(
                f"alpha must have shape [N, N] (per connection), [N] or [1, 1, N] (per "
                f"post-synaptic neuron) or [] or [1] (scalar) with N={N}, got {list(alpha.shape)}"
            )
    elif not shape_in(alpha, ((N, N), (N,), (), (batch, N, N))):
        raise ValueError(
            f"alpha must have shape [N, N] (per connection), [N] or [1, 1, N] (per post-synaptic "
            f"neuron), [] or [1] (scalar) or [B, N, N] (per sample) with B={batch}, N={N}, "
            f"got {list(alpha.shape)}"
        )
    check_same("alpha", alpha, u, "u")
    return alpha


def population_alpha(alpha: object, u: Tensor, B: int, N: int) -> Tensor:
    """``alpha`` of a population (``w`` per sample, SPEC.md section 1): ``[B, N, N]``, ``[B, N]``
    (per post-synaptic neuron), ``[B]`` (one per sample) or one shared scalar, returned in the
    kernels' canonical form (views): ``[B, N, N]``, ``[B, 1, N]``, ``[B, 1, 1]`` or ``[]``. A shared
    ``[N, N]`` or ``[N]`` alpha is refused: its shape reads as ``[B, N]`` or ``[B]`` when B == N."""
    alpha = check_tensor("alpha", alpha)
    if shape_in(alpha, ((B, N, N),)):
        canonical = alpha
    elif shape_in(alpha, ((B, N),)):
        canonical = alpha.unsqueeze(1)
    elif shape_in(alpha, ((B,),)):
        canonical = alpha[:, None, None]
    elif shape_in(alpha, ((), (1,))):
        canonical = alpha.reshape(())
    elif shape_in(alpha, ((N, N), (N,), (1, 1, N))):
        raise ValueError(
            f"alpha must be per sample ([B, N, N], [B, N] or [B]) or one scalar when w is per "
            f"sample ([B, N, N]); a shared alpha of shape {list(alpha.shape)} is ambiguous: "
            f"expand it, e.g. alpha.expand({B}, *alpha.shape)"
        )
    else:
        raise ValueError(
            f"alpha must have shape [B, N, N] (per sample and connection), [B, N] (per sample and "
            f"post-synaptic neuron), [B] (one per sample) or [] or [1] (shared) with per-sample w, "
            f"B={B}, N={N}, got {list(alpha.shape)}"
        )
    check_same("alpha", alpha, u, "u")
    return canonical


def eta_arg(eta: object, u: Tensor, batch: int | None) -> Tensor:
    """:func:`scalar_arg` for ``eta``, or with ``batch`` (the families that take per-sample
    parameters) also a ``[B]`` tensor, one rate per sample (a population). At B = 1 a
    one-element eta is the shared one."""
    if batch is None or not isinstance(eta, Tensor) or eta.numel() == 1 or batch == 1:
        return scalar_arg("eta", eta, u)
    if not shape_in(eta, ((batch,),)):
        raise ValueError(
            f"eta must be a 0-dim tensor (or shape [1]) or [B] = [{batch}] (one per sample), "
            f"got shape {list(eta.shape)}"
        )
    check_same("eta", eta, u, "u")
    return eta


def check_rule_scalars(
    rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip, u: Tensor, N: int, eta_batch=None
):
    """The per-rule arguments of the plastic families (SPEC.md section 1): ``eta`` for the
    eta rules (with ``eta_batch`` also one per sample, ``[B]``), the neuromodulator (``mod_w``,
    ``mod_b``, ``fanout_*``) for the modulated ones, and nothing a rule does not use. Returns the
    fields of ``RuleArgs``, normalised (``clip`` checked by the caller, in its argument order)."""
    if rule in ETA_RULES:
        if eta is None:
            raise ValueError(f"rule {rule!r} needs eta (a float or 0-dim tensor)")
        eta = eta_arg(eta, u, eta_batch)
    elif eta is not None:
        raise ValueError(f"eta is not used by rule {rule!r}; pass eta=None")

    if rule in MODULATED_RULES:
        mod_w = check_tensor("mod_w", mod_w, optional=True)
        if mod_w is None:
            raise ValueError(f"rule {rule!r} needs mod_w, the neuromodulator weights of shape [N]")
        mod_w = linear_vector("mod_w", mod_w, u, N, (1, N), "nn.Linear(N, 1).weight")
        mod_b = scalar_arg("mod_b", 0.0 if mod_b is None else mod_b, u)
        if (fanout_w is None) != (fanout_b is None):
            raise ValueError("fanout_w and fanout_b must be given together (or neither)")
        if fanout_w is not None:
            fanout_w = check_tensor("fanout_w", fanout_w)
            fanout_w = linear_vector("fanout_w", fanout_w, u, N, (N, 1), "nn.Linear(1, N).weight")
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
    return dict(
        rule=rule, eta=eta, mod_w=mod_w, mod_b=mod_b, fanout_w=fanout_w, fanout_b=fanout_b,
        clip=clip,
    )  # fmt: skip


def check_plasticity(
    alpha, rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip, u, N, batch=None, population=False,
    eta_batch=None,
):  # fmt: skip
    """``alpha``, ``clip`` and the per-rule scalars, in that order: ``(alpha, RuleArgs fields)``.
    ``batch``: alpha may also be ``[B, N, N]``; ``population`` (``w`` per sample): alpha in
    :func:`population_alpha`'s forms; ``eta_batch``: eta may be ``[B]``."""
    if population:
        alpha = population_alpha(alpha, u, batch, N)
    else:
        alpha = check_alpha(alpha, u, N, batch=batch)
    clip = check_clip(clip)
    scalars = check_rule_scalars(rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip, u, N, eta_batch)
    return alpha, scalars


def check_state(name: str, x: object, u: Tensor, shape: tuple[int, ...]) -> None:
    """An optional state tensor: ``None``, or ``shape`` with ``u``'s dtype and device."""
    if x is not None:
        check_like(name, check_tensor(name, x), u, "u", shape)


def check_elig(
    name: str, elig: object, rule: str, u: Tensor, shape: tuple[int, ...] | None
) -> None:
    """The eligibility trace exists only for rule 'retro' (its shape checked here unless
    ``shape`` is None: then by the caller, with ``check_trace``)."""
    if elig is not None and rule != "retro":
        raise ValueError(f"{name} only applies to rule 'retro', not {rule!r}")
    if shape is not None:
        check_state(name, elig, u, shape)


def clamp_mask_bool(clamp_mask: Tensor) -> Tensor:
    """A checked ``clamp_mask`` as bool. A floating mask must hold exactly 0 and 1: ``mask != 0``
    would count NaN and 0.5 as clamped, and a mask that requires grad would lose its gradient
    (the clamp is a hard selection, with no gradient to give)."""
    if clamp_mask.dtype == torch.bool:
        return clamp_mask
    if clamp_mask.requires_grad:
        raise ValueError(
            "clamp_mask must not require grad: the clamp is a hard selection with no gradient; "
            "pass a bool mask (or a detached 0/1 one)"
        )
    if clamp_mask.device.type != "meta" and clamp_mask.numel():
        binary = ((clamp_mask == 0) | (clamp_mask == 1)).all()
        msg = "clamp_mask must hold only 0 and 1 (or be a bool tensor)"
        if torch.compiler.is_compiling():
            torch._assert_async(binary, msg)  # a Python branch on the values would break graphs
        elif not binary:
            raise ValueError(msg + ", got other values (NaN or a fraction)")
    return clamp_mask != 0


def check_clamp_mask(
    clamp_mask: object, u: Tensor, shape: tuple[int, ...], dims: str
) -> Tensor | None:
    """A bool (or 0/1 floating) mask of ``shape`` (named ``dims``), returned as bool."""
    if clamp_mask is None:
        return None
    clamp_mask = check_tensor("clamp_mask", clamp_mask)
    if clamp_mask.dtype != torch.bool and not clamp_mask.is_floating_point():
        raise TypeError(
            f"clamp_mask must be a bool (or 0/1 floating) tensor, got {clamp_mask.dtype}"
        )
    if clamp_mask.device != u.device:
        raise ValueError(
            f"clamp_mask must be on {u.device} (the device of u), got {clamp_mask.device}"
        )
    if tuple(clamp_mask.shape) != shape:
        raise ValueError(
            f"clamp_mask must have shape {dims} = {list(shape)}, got {list(clamp_mask.shape)}"
        )
    return clamp_mask_bool(clamp_mask)


def check_recurrent(alpha, scalars, states: dict, hebb0, elig0, u, B: int, N: int, **plasticity):
    """What the sequence families (plastic_rnn, plastic_lstm) check after their weights, in this
    order: alpha and the rule's arguments (``scalars``: rule, eta, mod_w, mod_b, fanout_w,
    fanout_b, clip; ``plasticity``: :func:`check_plasticity`'s options), the initial activities
    ``states`` (name -> tensor, each ``[B, N]``), the initial trace and eligibility trace.
    Returns ``(alpha, RuleArgs fields, hebb0, elig0)``, normalised."""
    alpha, rule_args = check_plasticity(alpha, *scalars, u, N, **plasticity)
    for name, val in states.items():
        check_state(name, val, u, (B, N))
    hebb0 = check_trace("hebb0", hebb0, u, B, N)
    check_elig("elig0", elig0, scalars[0], u, None)
    elig0 = check_trace("elig0", elig0, u, B, N)
    return alpha, rule_args, hebb0, elig0


@dataclass
class RuleArgs:
    """The normalised per-rule arguments the plastic families share (``check_rule_scalars``)."""

    rule: str
    eta: Tensor | None
    mod_w: Tensor | None
    mod_b: Tensor | None
    fanout_w: Tensor | None
    fanout_b: Tensor | None
    clip: float


# ---------------------------------------------------------------------------------------------
# plastic_rnn (SPEC.md section 1)
# ---------------------------------------------------------------------------------------------


@dataclass
class PlasticRNNArgs(RuleArgs):
    """The normalised arguments of ``plastic_rnn``: scalars as 0-dim tensors, masks as bool."""

    u: Tensor
    w: Tensor
    alpha: Tensor
    h0: Tensor | None
    hebb0: Tensor | None
    elig0: Tensor | None
    clamp_mask: Tensor | None

    @property
    def shape(self) -> tuple[int, int, int]:
        T, B, N = self.u.shape
        return T, B, N

    @property
    def eta_batch(self) -> int:
        """eta may be given per sample, ``[B]`` (:func:`eta_arg`)."""
        return self.u.shape[1]


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
    rule = check_rule(rule)
    w = check_tensor("w", w)
    check_same("w", w, u, "u")
    if not shape_in(w, ((N, N), (B, N, N))):
        raise ValueError(
            f"w must have shape {[N, N]} (shared) or {[B, N, N]} ([B, N, N]: one network per "
            f"sample, a population), got {list(w.shape)}"
        )
    scalars = (rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip)
    alpha, rule_args, hebb0, elig0 = check_recurrent(
        alpha, scalars, {"h0": h0}, hebb0, elig0, u, B, N,
        batch=B, population=w.dim() == 3, eta_batch=B,
    )  # fmt: skip
    clamp_mask = check_clamp_mask(clamp_mask, u, (T, B, N), "[T, B, N]")
    return PlasticRNNArgs(
        u=u, w=w, alpha=alpha, h0=h0, hebb0=hebb0, elig0=elig0, clamp_mask=clamp_mask, **rule_args
    )


# ---------------------------------------------------------------------------------------------
# plastic_lstm (SPEC.md section 2)
# ---------------------------------------------------------------------------------------------


@dataclass
class PlasticLSTMArgs(RuleArgs):
    """The normalised arguments of ``plastic_lstm``: scalars as 0-dim tensors."""

    u: Tensor
    wh: Tensor
    alpha: Tensor
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
    # u holds the four gates ([T, B, 4 * N]), so its checks and messages are the LSTM's own; what
    # the recurrent families share is check_recurrent below.
    u = check_floating("u", u)
    if u.dim() != 3 or u.shape[2] % 4 != 0:
        raise ValueError(
            f"u must have shape [T, B, 4 * N] (the gate inputs i, f, g, o), got {list(u.shape)}"
        )
    T, B, G = u.shape
    N = G // 4
    if T < 1 or N < 1:
        raise ValueError(f"u must have at least one step and one neuron, got {list(u.shape)}")
    rule = check_rule(rule)
    wh = check_tensor("wh", wh)
    check_like("wh", wh, u, "u", (N, 4 * N))
    scalars = (rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip)
    alpha, rule_args, hebb0, elig0 = check_recurrent(
        alpha, scalars, {"h0": h0, "c0": c0}, hebb0, elig0, u, B, N
    )
    return PlasticLSTMArgs(
        u=u, wh=wh, alpha=alpha, h0=h0, c0=c0, hebb0=hebb0, elig0=elig0, **rule_args
    )


# ---------------------------------------------------------------------------------------------
# The single-step families: plastic_step, plastic_linear, trace_update
# ---------------------------------------------------------------------------------------------


# Each family's Args names its own kernel's tensors, so the dataclasses look alike but differ.
@dataclass
class PlasticStepArgs(RuleArgs):
    """Normalised arguments of ``plastic_step``: scalars as 0-dim tensors, the mask as bool."""

    u: Tensor
    h: Tensor
    hebb: Tensor
    w: Tensor
    alpha: Tensor
    elig: Tensor | None
    clamp_mask: Tensor | None


def check_plastic_step_args(
    u, h, hebb, w, alpha, *, rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip, elig, clamp_mask
) -> PlasticStepArgs:
    u = check_floating("u", u)
    if u.dim() != 2 or u.shape[1] < 1:
        raise ValueError(f"u must have shape [B, N] with N >= 1, got shape {list(u.shape)}")
    B, N = u.shape
    rule = check_rule(rule)
    check_like("h", check_tensor("h", h), u, "u", (B, N))
    hebb = check_trace("hebb", check_tensor("hebb", hebb), u, B, N)
    w = check_tensor("w", w)
    if not shape_in(w, ((N, N), (B, N, N))):
        raise ValueError(
            f"w must have shape [N, N] (shared) or [B, N, N] (per sample) with B={B}, N={N}, "
            f"got {list(w.shape)}"
        )
    check_same("w", w, u, "u")
    scalars = (rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip)
    alpha, rule_args = check_plasticity(alpha, *scalars, u, N, batch=B)
    check_elig("elig", elig, rule, u, None)
    elig = check_trace("elig", elig, u, B, N)
    clamp_mask = check_clamp_mask(clamp_mask, u, (B, N), "[B, N]")
    return PlasticStepArgs(
        u=u, h=h, hebb=hebb, w=w, alpha=alpha, elig=elig, clamp_mask=clamp_mask, **rule_args
    )


def check_plastic_linear_args(x, w, alpha, hebb) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``x`` [B, M]; ``w`` [M, K]; ``alpha`` [M, K], [K] or 0-dim; ``hebb`` [M, K] or [B, M, K]."""
    x = check_floating("x", x)
    if x.dim() != 2:
        raise ValueError(f"x must have shape [B, M] (2 dims), got shape {list(x.shape)}")
    B, M = x.shape
    w = check_tensor("w", w)
    if w.dim() != 2 or w.shape[0] != M:
        raise ValueError(f"w must have shape [M, K] with M={M} (x.shape[1]), got {list(w.shape)}")
    check_same("w", w, x, "x")
    K = w.shape[1]
    alpha = check_tensor("alpha", alpha)
    if shape_in(alpha, ((1,),)):  # the Omniglot read-out's shared ("yoked") alpha
        alpha = alpha.view(())
    if not shape_in(alpha, ((M, K), (K,), ())):
        raise ValueError(
            f"alpha must have shape [M, K] = {[M, K]}, [K] = {[K]} or [] or [1] (scalar), "
            f"got {list(alpha.shape)}"
        )
    check_same("alpha", alpha, x, "x")
    hebb = check_tensor("hebb", hebb)
    if not shape_in(hebb, ((M, K), (B, M, K))):
        raise ValueError(
            f"hebb must have shape [M, K] = {[M, K]} (shared) or [B, M, K] = {[B, M, K]} "
            f"(per sample), got {list(hebb.shape)}"
        )
    check_same("hebb", hebb, x, "x")
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
    trace = check_floating("trace", trace)
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
    if not shape_in(trace, shapes):
        raise ValueError(
            f"trace must have shape [M, K] = {[M, K]} (shared) or [B, M, K] = {[B, M, K]} "
            f"(per sample) for pre [B, M] and post [B, K], got {list(trace.shape)}"
        )
    check_same("pre", pre, trace, "trace")
    check_same("post", post, trace, "trace")
    rule = check_rule(rule, TRACE_RULES)

    if isinstance(eta, Tensor) and eta.dim() >= 1 and tuple(eta.shape) != (1,):
        if not shape_in(eta, ((B,), (B, K))):
            raise ValueError(
                f"eta must be a float, a 0-dim tensor, [B] = {[B]} (per sample) or [B, K] = "
                f"{[B, K]} (per sample and post neuron), got shape {list(eta.shape)}"
            )
        check_same("eta", eta, trace, "trace")
        if trace.dim() == 2 and rule == "hebb":
            raise ValueError(
                "a shared trace with rule 'hebb' needs a scalar eta (the decay applies once to the "
                "shared trace); use rule 'add' or 'oja' for a per-sample modulation"
            )
    elif eta is None:
        raise ValueError("eta is required: a float, a 0-dim tensor, [B] or [B, K]")
    else:
        if isinstance(eta, Tensor):
            check_same("eta", eta, trace, "trace")
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


# ---------------------------------------------------------------------------------------------
# hebbian (hebbian_update, hebbian_loss, the layers)
# ---------------------------------------------------------------------------------------------


def check_hebbian_rule(rule: object) -> str:
    return check_rule(rule, HEBBIAN_RULES)


def pair(name: str, v: object, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each ``>= minimum``, as a pair (height, width)."""

    def one(e: object) -> int:
        if isinstance(e, bool) or not isinstance(e, Integral):
            raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
        if e < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
        return int(e)

    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
        return one(v[0]), one(v[1])
    e = one(v)
    return e, e


def conv_out_size(size: int, k: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


@dataclass
class HebbianArgs:
    """Normalised arguments of ``hebbian_update`` (conv parameters as pairs)."""

    rule: str
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @property
    def is_default_conv(self) -> bool:
        return (self.stride, self.padding, self.dilation, self.groups) == (
            (1, 1),
            (0, 0),
            (1, 1),
            1,
        )


def check_hebbian_args(w, x, y, *, rule, stride, padding, dilation, groups) -> HebbianArgs:
    rule = check_hebbian_rule(rule)
    w = check_tensor("w", w)
    x = check_tensor("x", x)
    y = check_tensor("y", y)
    if not w.is_floating_point():
        raise TypeError(f"w must be a floating-point tensor, got {w.dtype}")
    check_same("x", x, w, "w")
    check_same("y", y, w, "w")
    a = HebbianArgs(
        rule,
        pair("stride", stride, 1),
        pair("padding", padding, 0),
        pair("dilation", dilation, 1),
        groups,
    )
    if isinstance(groups, bool) or not isinstance(groups, Integral):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    a.groups = int(groups)

    if w.dim() == 2:
        if not a.is_default_conv:
            raise ValueError(
                "stride, padding, dilation and groups only apply to a conv2d weight (4 dims); "
                f"w has shape {list(w.shape)} (a linear weight [N_out, D])"
            )
        N, D = w.shape
        if N < 1 or D < 1:
            raise ValueError(f"w must have at least one row and column, got {list(w.shape)}")
        if x.dim() != 2 or x.shape[1] != D or x.shape[0] < 1:
            raise ValueError(
                f"x must have shape [B, D] with D={D} (w's second dim) and B >= 1 for a linear "
                f"weight, got {list(x.shape)}"
            )
        B = x.shape[0]
        if tuple(y.shape) != (B, N):
            raise ValueError(f"y must have shape [B, N_out] = {[B, N]}, got {list(y.shape)}")
        return a

    if w.dim() != 4:
        raise ValueError(
            "w must be a linear weight [N_out, D] or a conv2d weight [C_out, C_in/groups, kh, kw], "
            f"got shape {list(w.shape)}"
        )
    C_out, C_in_g, kh, kw = w.shape
    if min(w.shape) < 1:
        raise ValueError(f"w must have no empty dimension, got {list(w.shape)}")
    if C_out % a.groups:
        raise ValueError(f"w's C_out={C_out} must be divisible by groups={a.groups}")
    C_in = C_in_g * a.groups
    if x.dim() != 4 or x.shape[1] != C_in or x.shape[0] < 1:
        raise ValueError(
            f"x must have shape [B, C_in, H, W] with C_in={C_in} (w.shape[1] * groups) and B >= 1, "
            f"got {list(x.shape)}"
        )
    B, _, H, W = x.shape
    Ho = conv_out_size(H, kh, a.stride[0], a.padding[0], a.dilation[0])
    Wo = conv_out_size(W, kw, a.stride[1], a.padding[1], a.dilation[1])
    if Ho < 1 or Wo < 1:
        raise ValueError(
            f"the convolution of x {list(x.shape)} with a {kh}x{kw} kernel (stride {a.stride}, "
            f"padding {a.padding}, dilation {a.dilation}) has no output position"
        )
    if tuple(y.shape) != (B, C_out, Ho, Wo):
        raise ValueError(
            f"y must have shape [B, C_out, H_out, W_out] = {[B, C_out, Ho, Wo]} (the conv output "
            f"for x {list(x.shape)}), got {list(y.shape)}"
        )
    return a


def check_hebbian_loss_args(u, y, w, rule) -> None:
    check_hebbian_rule(rule)
    u = check_tensor("u", u)
    y = check_tensor("y", y)
    w = check_tensor("w", w)
    if not u.is_floating_point():
        raise TypeError(f"u must be a floating-point tensor, got {u.dtype}")
    if w.dim() not in (2, 4):
        raise ValueError(
            f"w must be a linear weight (2 dims) or a conv2d weight (4 dims), got {list(w.shape)}"
        )
    expected = 2 if w.dim() == 2 else 4
    if u.dim() != expected or u.shape[1] != w.shape[0]:
        raise ValueError(
            f"u must have {expected} dims with w.shape[0]={w.shape[0]} channels in dim 1, "
            f"got {list(u.shape)}"
        )
    if tuple(y.shape) != tuple(u.shape):
        raise ValueError(f"y must have u's shape {list(u.shape)}, got {list(y.shape)}")
    if y.device != u.device or w.device != u.device:
        raise ValueError("u, y and w must be on one device")
    if not y.is_floating_point() and y.dtype != torch.bool:
        raise TypeError(f"y must be a floating-point or bool tensor, got {y.dtype}")
