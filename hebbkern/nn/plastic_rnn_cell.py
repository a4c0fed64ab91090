"""``PlasticRNNCell``: one step of :class:`~hebbkern.nn.PlasticRNN`, like ``torch.nn.RNNCell``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validation import ETA_RULES, MODULATED_RULES, RULES, check_clip
from ..ops.plastic_step import plastic_step
from ..types import PlasticState
from ._checks import check_factory_dtype, check_input, check_state_tuple
from .plastic_rnn import ALPHA_KINDS, PlasticRNN


class PlasticRNNCell(nn.Module):
    r"""The step form of :class:`~hebbkern.nn.PlasticRNN`, for loops that step the network once per
    call (an agent acting in an environment).

    ``u = x W_ih^T + b_ih``, then one step of :func:`hebbkern.plastic_step`. The parameters have
    ``PlasticRNN``'s names, shapes and initialisation (``weight_ih``, ``bias_ih``, ``w``,
    ``alpha``, ``eta``, ``mod_w``, ``mod_b``, ``fanout_w``, ``fanout_b``), so the ``state_dict``
    of a trained ``PlasticRNN`` loads into the cell (and back), and stepping the cell over a
    sequence gives the layer's output and gradients.

    Args: as :class:`~hebbkern.nn.PlasticRNN` (without ``batch_first``).

    Shapes: ``forward(x, state=None, clamp_mask=None) -> state`` with ``x`` ``[B, input_size]`` (or
    unbatched ``[input_size]``), ``state`` a :class:`~hebbkern.PlasticState` ``(h [B, N], hebb
    [B, N, N], elig)`` (zeros when ``None``); ``clamp_mask`` ``[B, N]``. The new activity is
    ``state.h``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        rule: str = "hebb",
        alpha: str = "per_connection",
        fanout: bool = False,
        clip: float = 1.0,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        for name, val in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(map(repr, RULES))}, got {rule!r}")
        if alpha not in ALPHA_KINDS:
            raise ValueError(
                f"alpha must be one of {', '.join(map(repr, ALPHA_KINDS))}, got {alpha!r}"
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
        N = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(N, input_size, **factory))
        self.bias_ih = nn.Parameter(torch.empty(N, **factory)) if bias else None
        self.w = nn.Parameter(torch.empty(N, N, **factory))
        alpha_shape = {"per_connection": (N, N), "per_neuron": (N,), "scalar": ()}[alpha]
        self.alpha = nn.Parameter(torch.empty(alpha_shape, **factory))
        self.eta = nn.Parameter(torch.empty((), **factory)) if rule in ETA_RULES else None
        modulated = rule in MODULATED_RULES
        self.mod_w = nn.Parameter(torch.empty(N, **factory)) if modulated else None
        self.mod_b = nn.Parameter(torch.empty((), **factory)) if modulated else None
        self.fanout_w = nn.Parameter(torch.empty(N, **factory)) if self.fanout else None
        self.fanout_b = nn.Parameter(torch.empty(N, **factory)) if self.fanout else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # PlasticRNN's initialisation reads only attributes the cell shares (same names), so the
        # two modules are initialised by one piece of code.
        PlasticRNN.reset_parameters(self)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, rule={self.rule!r}, alpha={self.alpha_kind!r}"
        if self.fanout:
            s += ", fanout=True"
        if self.rule in ("clip", "neuromod", "retro"):
            s += f", clip={self.clip}"
        if self.bias_ih is None:
            s += ", bias=False"
        return s

    def initial_state(self, batch_size: int) -> PlasticState:
        """Zero activity and traces for ``batch_size`` samples, on the parameters' device/dtype."""
        N, w = self.hidden_size, self.w
        elig = w.new_zeros(batch_size, N, N) if self.rule == "retro" else None
        return PlasticState(w.new_zeros(batch_size, N), w.new_zeros(batch_size, N, N), elig)

    def forward(
        self,
        x: Tensor,
        state: PlasticState | tuple | None = None,
        clamp_mask: Tensor | None = None,
    ) -> PlasticState:
        check_input("x", x, self.weight_ih)
        if clamp_mask is not None and not isinstance(clamp_mask, Tensor):
            raise TypeError(f"clamp_mask must be a torch.Tensor, got {type(clamp_mask).__name__}")
        if state is not None:
            state = check_state_tuple(state, ("h", "hebb", "elig"), optional=1)
        if x.dim() not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(
                f"x must have shape [B, {self.input_size}] (or unbatched [{self.input_size}]), "
                f"got {list(x.shape)}"
            )
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
            clamp_mask = None if clamp_mask is None else clamp_mask.unsqueeze(0)
            if state is not None:
                state = tuple(None if s is None else s.unsqueeze(0) for s in state)
        if state is None:
            state = self.initial_state(x.shape[0])
        h, hebb, elig = state
        u = nn.functional.linear(x, self.weight_ih, self.bias_ih)
        new = plastic_step(
            u, h, hebb, self.w, self.alpha, rule=self.rule, eta=self.eta, mod_w=self.mod_w,
            mod_b=self.mod_b, fanout_w=self.fanout_w, fanout_b=self.fanout_b, clip=self.clip,
            elig=elig, clamp_mask=clamp_mask,
        )  # fmt: skip
        if unbatched:
            new = PlasticState(*(None if s is None else s.squeeze(0) for s in new))
        return new
