"""``PlasticRNNCell``: one step of :class:`~hebbkern.nn.PlasticRNN`, like ``torch.nn.RNNCell``."""

from __future__ import annotations

from torch import Tensor

from .._layout import check_layout
from ..ops.plastic_step import plastic_step
from ..types import PlasticState
from ._checks import check_input, check_state_tuple
from ._plastic_params import PlasticRNNParams, set_variants, variant_kwargs


class PlasticRNNCell(PlasticRNNParams):
    r"""The step form of :class:`~hebbkern.nn.PlasticRNN`, for loops that step the network once per
    call (an agent acting in an environment).

    ``u = x W_ih^T + b_ih`` (``u = x`` with ``input_projection=False``), then one step of
    :func:`hebbkern.plastic_step`. The parameters have
    ``PlasticRNN``'s names, shapes and initialisation (``weight_ih``, ``bias_ih``, ``w``,
    ``alpha``, ``eta``, ``mod_w``, ``mod_b``, ``fanout_w``, ``fanout_b``), so the ``state_dict``
    of a trained ``PlasticRNN`` loads into the cell (and back), and stepping the cell over a
    sequence gives the layer's output and gradients.

    Args: as :class:`~hebbkern.nn.PlasticRNN` (without ``batch_first``). Note ``clip``: its
    default 1.0 is the maze agents'; Backpropamine's simple maze clips at 2.0 (pass
    ``clip=2.0``).

    Shapes: ``forward(x, state=None, clamp_mask=None) -> state`` with ``x`` ``[B, input_size]`` (or
    unbatched ``[input_size]``), ``state`` a :class:`~hebbkern.PlasticState` ``(h [B, N], hebb
    [B, N, N], elig)`` (zeros when ``None``); ``clamp_mask`` ``[B, N]``. The new activity is
    ``state.h``.
    """

    # PlasticRNN's signature without batch_first, written out (as torch.nn does) for help().
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
        *,
        input_projection: bool = True,
        layout: str = "pre_post",
        activation: str = "tanh",
        mod_squash: str = "tanh",
        soft_clip: bool = False,
        n_modulated: int | None = None,
    ) -> None:
        super().__init__(
            input_size, hidden_size, rule, alpha, fanout, clip, bias, device, dtype,
            input_projection,
        )  # fmt: skip
        self.layout = check_layout(layout)
        set_variants(self, activation, mod_squash, soft_clip, n_modulated)

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
        check_input("x", x, self.w)
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
        u = self.input_drive(x)
        new = plastic_step(
            u, h, hebb, self.w, self.alpha, rule=self.rule, eta=self.eta, mod_w=self.mod_w,
            mod_b=self.mod_b, fanout_w=self.fanout_w, fanout_b=self.fanout_b, clip=self.clip,
            elig=elig, clamp_mask=clamp_mask, layout=self.layout, **variant_kwargs(self),
        )  # fmt: skip
        if unbatched:
            new = PlasticState(*(None if s is None else s.squeeze(0) for s in new))
        return new
