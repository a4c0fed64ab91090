"""``PlasticRNN``: a plastic recurrent layer shaped like ``torch.nn.RNN``."""

from __future__ import annotations

from torch import Tensor

from .._layout import check_layout
from ..ops.plastic_rnn import plastic_rnn
from ..types import PlasticState
from ._checks import check_state_tuple
from ._plastic_params import (
    ALPHA_KINDS,
    PlasticRNNParams,
    check_sequence_input,
    set_variants,
    variant_kwargs,
)

__all__ = ["ALPHA_KINDS", "PlasticRNN"]


class PlasticRNN(PlasticRNNParams):
    r"""Plastic recurrent layer (differentiable plasticity, Backpropamine).

    ``u_t = x_t W_ih^T + b_ih`` (``u_t = x_t`` with ``input_projection=False``), then the
    recurrence of :func:`hebbkern.plastic_rnn` with learned
    ``w``, ``alpha``, ``eta`` and (for the modulated rules) the neuromodulator ``mod_w``, ``mod_b``
    and optional fan-out ``fanout_w``, ``fanout_b``.

    Initialisation follows the papers: differentiable plasticity (rules ``hebb``, ``oja``,
    ``clip``) draws ``w`` and ``alpha`` from ``0.01 * N(0, 1)``; Backpropamine (``neuromod``,
    ``retro``) draws them from ``0.001 * U[0, 1)`` and initialises the modulator and its fan-out
    like ``nn.Linear(hidden_size, 1)`` and ``nn.Linear(1, hidden_size)``. ``eta`` starts at 0.01.

    Args:
        input_size: features of the input ``x``.
        hidden_size: number of plastic neurons ``N``.
        rule: trace rule, one of ``hebb``, ``oja``, ``clip``, ``neuromod``, ``retro``.
        alpha: ``"per_connection"`` ``[N, N]``, ``"per_neuron"`` ``[N]`` or ``"scalar"``.
        fanout: per-neuron fan-out of the neuromodulator (modulated rules only).
        clip: bound of the clipped rules. **The default 1.0 is the Backpropamine maze agents'
            clip; its simple maze and plastic LSTM clip at 2.0: pass** ``clip=2.0`` **to match
            them** (a silent difference otherwise).
        batch_first: input and output are ``[B, T, *]`` instead of ``[T, B, *]``.
        bias: whether the input projection has a bias.
        input_projection: ``False`` adds the input to the drive directly (``u_t = x_t``, as the
            differentiable-plasticity pattern-completion network does): ``input_size`` must equal
            ``hidden_size``, and there is no ``weight_ih`` / ``bias_ih`` (``bias`` is ignored).
        layout: ``"pre_post"`` (default) or ``"post_pre"``: ``w``, a per-connection ``alpha``
            and the traces of ``state`` stored ``[pre, post]`` or ``[post, pre]`` (as
            Backpropamine's batched code); see :func:`hebbkern.plastic_rnn`. The parameters keep
            their names and shapes; a ``state_dict`` moves between layouts by transposing ``w``
            and ``alpha``.
        activation, mod_squash, soft_clip, n_modulated: the papers' variants (SPEC.md section
            1.1), as in :func:`hebbkern.plastic_rnn`; rule ``"gated"`` (``H = (1 - m) H + m P``)
            is a rule of its own. With ``n_modulated`` below N, rule ``neuromod`` also learns
            ``eta`` (the unmodulated neurons' rate).

    Shapes: ``forward(x, state=None, clamp_mask=None) -> (output, state)`` with ``x`` ``[T, B,
    input_size]`` (or ``[B, T, input_size]`` with ``batch_first``, or unbatched ``[T,
    input_size]``), ``output`` ``[T, B, N]`` and ``state`` a :class:`~hebbkern.PlasticState`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        rule: str = "hebb",
        alpha: str = "per_connection",
        fanout: bool = False,
        clip: float = 1.0,
        batch_first: bool = False,
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
        self.batch_first = batch_first
        set_variants(self, activation, mod_squash, soft_clip, n_modulated)

    def forward(
        self,
        x: Tensor,
        state: PlasticState | tuple | None = None,
        clamp_mask: Tensor | None = None,
    ) -> tuple[Tensor, PlasticState]:
        check_sequence_input(x, self.input_size, self.w)
        if clamp_mask is not None and not isinstance(clamp_mask, Tensor):
            raise TypeError(f"clamp_mask must be a torch.Tensor, got {type(clamp_mask).__name__}")
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1)
            clamp_mask = None if clamp_mask is None else clamp_mask.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
            clamp_mask = None if clamp_mask is None else clamp_mask.transpose(0, 1)
        u = self.input_drive(x)
        h0 = hebb0 = elig0 = None
        if state is not None:
            h0, hebb0, elig0 = check_state_tuple(state, ("h", "hebb", "elig"), optional=1)
            if unbatched:
                h0, hebb0 = h0.unsqueeze(0), hebb0.unsqueeze(0)
                elig0 = None if elig0 is None else elig0.unsqueeze(0)
        out, new = plastic_rnn(
            u, self.w, self.alpha, rule=self.rule, eta=self.eta, mod_w=self.mod_w,
            mod_b=self.mod_b, fanout_w=self.fanout_w, fanout_b=self.fanout_b, clip=self.clip,
            h0=h0, hebb0=hebb0, elig0=elig0, clamp_mask=clamp_mask, layout=self.layout,
            **variant_kwargs(self),
        )  # fmt: skip
        if unbatched:
            out = out.squeeze(1)
            new = PlasticState(*(None if s is None else s.squeeze(0) for s in new))
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, new
