"""Load the public papers' trained networks into hebbkern modules (guide: docs/porting.md).

Two entry points, one per code base, each taking the original network's ``state_dict`` (or, for
the differentiable-plasticity scripts that keep ``w``, ``alpha`` and ``eta`` as plain tensors
rather than parameters, a dict of those tensors under the same names):

- :func:`from_differentiable_plasticity`: ``network="pattern"`` (the simple pattern-completion
  network and the image-completion one) or ``"omniglot"`` (the conv encoder and its plastic
  read-out).
- :func:`from_backpropamine`: ``network="simple_maze"`` (the one-file maze agent),
  ``"maze"`` (the batched maze code: its ``rnn``, ``plastic``, ``modplast`` and retroactive
  ``modul`` networks) or ``"lstm"`` (the plastic LSTM of the language model).

What the conversion does: renames the keys, transposes the batched maze code's ``[post, pre]``
matrices to hebbkern's ``[pre, post]``, reshapes ``nn.Linear`` weights (``[1, N]``, ``[N, 1]``)
and ``[1]`` / ``[1, 1, N]`` parameters to hebbkern's parameter shapes, concatenates the plastic
LSTM's per-gate ``nn.Linear`` layers into ``nn.LSTM``'s ``weight_ih`` / ``weight_hh``, sets the
options the original code hard-wired (the clip bound, the fan-out, the input projection) and maps
the options it took on its command line (the maze code's ``type``, ``addpw``, ``da``, ``activ``,
``fm``; the LSTM's ``cliptype``, ``hebboutput``, ``modultype``) to hebbkern's (docs/SPEC.md
sections 1.1 and 2.1). The result computes the original step as the papers meant it; where the
code has a known bug (the plastic LSTM's fan-out at batch size 1, docs/SPEC.md section 9) the
converted module does not reproduce it. The traces are state, not parameters: a trace kept by
the batched maze code is ``[B, post, pre]`` and must be transposed (``hebb.transpose(1, 2)``)
before it is handed over, unless the network is converted with ``layout="post_pre"``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from . import convert_backpropamine as _bp
from .convert_keys import alpha_kind as _alpha
from .convert_keys import get as _get
from .convert_keys import scalar as _scalar
from .convert_keys import sub as _sub
from .nn import PlasticRNN
from .ops import plastic_linear, trace_update

__all__ = ["PlasticReadout", "from_backpropamine", "from_differentiable_plasticity"]


# ---------------------------------------------------------------------------------------------
# differentiable plasticity (Miconi et al., ICML 2018)
# ---------------------------------------------------------------------------------------------


class PlasticReadout(nn.Module):
    r"""The Omniglot network's plastic read-out: ``K`` outputs over ``M`` features.

    ``forward(x, hebb, drive=None) -> (y, hebb_new)``::

        y = softmax(x (w + alpha * hebb) + drive)        (plastic_linear)
        hebb_new = rule(hebb, pre = x, post = y)         (trace_update: "hebb" or "oja")

    ``x`` ``[B, M]``, ``hebb`` ``[M, K]`` (shared, the original's) or ``[B, M, K]``; ``drive``
    ``[B, K]`` is added before the softmax (the original adds ``1000 * label`` while a labelled
    sample is shown). Parameters ``w`` ``[M, K]``, ``alpha`` (``[M, K]`` or 0-dim) and ``eta``.
    """

    def __init__(self, w: Tensor, alpha: Tensor, eta: Tensor, rule: str) -> None:
        super().__init__()
        if rule not in ("hebb", "oja"):
            raise ValueError(f"rule must be 'hebb' or 'oja', got {rule!r}")
        self.rule = rule
        self.w = nn.Parameter(w.clone())
        self.alpha = nn.Parameter(alpha.clone())
        self.eta = nn.Parameter(eta.clone())

    def initial_trace(self) -> Tensor:
        return self.w.new_zeros(self.w.shape)

    def forward(
        self, x: Tensor, hebb: Tensor, drive: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        z = plastic_linear(x, self.w, self.alpha, hebb)
        if drive is not None:
            z = z + drive
        y = torch.softmax(z, dim=-1)
        return y, trace_update(hebb, x, y, rule=self.rule, eta=self.eta)

    def extra_repr(self) -> str:
        M, K = self.w.shape
        return f"{M}, {K}, rule={self.rule!r}, alpha={list(self.alpha.shape)}"


def from_differentiable_plasticity(
    state_dict: Mapping[str, Tensor],
    network: str = "pattern",
    *,
    rule: str = "hebb",
    activation: str = "tanh",
) -> nn.Module:
    """A hebbkern module computing a differentiable-plasticity network (Miconi et al. 2018).

    Args:
        state_dict: the original network's tensors under their names.
            ``"pattern"``: ``w`` ``[N, N]``, ``alpha`` ``[N, N]`` or ``[1]`` (the image task's
            homogeneous alpha), ``eta`` ``[1]``. ``"omniglot"``: ``cv1`` .. ``cv4`` (``.weight``,
            ``.bias``), ``w`` ``[M, K]``, ``alpha`` ``[M, K]`` ("free") or ``[1]`` ("yoked"),
            ``eta`` ``[1]``.
        network: ``"pattern"`` or ``"omniglot"``.
        rule: the Omniglot read-out's rule (``"hebb"`` or ``"oja"``; not in the state_dict).
        activation: the Omniglot encoder's nonlinearity (``"tanh"``, ``"relu"`` or ``"selu"``).

    Returns:
        ``"pattern"``: :class:`hebbkern.nn.PlasticRNN` ``(N, N, rule="hebb",
        input_projection=False)``: its input is the original's ``input`` added to the drive. For
        the image-completion variant, which clamps the neurons that receive input, call it with
        ``clamp_mask = x != 0`` (the original clamps where the input is nonzero, and the other
        neurons get no input, so the two drives agree). The original keeps one unbatched trace;
        the module runs a batch (B = 1 reproduces it).

        ``"omniglot"``: ``nn.ModuleDict`` with ``"encoder"`` (the four stride-2 3x3 convolutions
        and their nonlinearity, then a flatten to ``[B, M]``) and ``"readout"``
        (:class:`PlasticReadout`).
    """
    sd = dict(state_dict)
    if network == "pattern":
        w = _get(sd, "w", network)
        if w.dim() != 2 or w.shape[0] != w.shape[1]:
            raise ValueError(f"state_dict['w'] must have shape [N, N], got {list(w.shape)}")
        N = w.shape[0]
        kind, alpha = _alpha("alpha", _get(sd, "alpha", network), N, N)
        if kind == "per_neuron":
            raise ValueError("state_dict['alpha'] of the pattern network is [N, N] or [1]")
        eta = _scalar("eta", _get(sd, "eta", network))
        m = PlasticRNN(
            N, N, rule="hebb", alpha=kind, input_projection=False, dtype=w.dtype, device=w.device
        )
        m.load_state_dict({"w": w, "alpha": alpha, "eta": eta})
        return m
    if network == "omniglot":
        acts = {"tanh": nn.Tanh, "relu": nn.ReLU, "selu": nn.SELU}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        layers: list[nn.Module] = []
        for k in range(1, 5):
            cw, cb = _get(sd, f"cv{k}.weight", network), _get(sd, f"cv{k}.bias", network)
            conv = nn.Conv2d(
                cw.shape[1], cw.shape[0], tuple(cw.shape[2:]), stride=2, dtype=cw.dtype,
                device=cw.device,
            )  # fmt: skip
            conv.load_state_dict({"weight": cw, "bias": cb})
            layers += [conv, acts[activation]()]
        encoder = nn.Sequential(*layers, nn.Flatten())
        w = _get(sd, "w", network)
        M, K = w.shape
        if M != layers[-2].out_channels:
            raise ValueError(
                f"state_dict['w'] must have {layers[-2].out_channels} rows (cv4's channels), "
                f"got {list(w.shape)}"
            )
        kind, alpha = _alpha("alpha", _get(sd, "alpha", network), M, K)
        if kind == "per_neuron":
            raise ValueError("state_dict['alpha'] of the Omniglot read-out is [M, K] or [1]")
        eta = _scalar("eta", _get(sd, "eta", network))
        return nn.ModuleDict({"encoder": encoder, "readout": PlasticReadout(w, alpha, eta, rule)})
    raise ValueError(f"network must be 'pattern' or 'omniglot', got {network!r}")


# ---------------------------------------------------------------------------------------------
# Backpropamine (Miconi et al., ICLR 2019): the networks and options in convert_backpropamine.py
# ---------------------------------------------------------------------------------------------


def from_backpropamine(
    state_dict: Mapping[str, Tensor],
    network: str = "simple_maze",
    *,
    prefix: str = "",
    clip: float | None = None,
    layout: str = "pre_post",
    type: str | None = None,
    addpw: int = 3,
    da: str = "tanh",
    activ: str = "tanh",
    fm: int = 1,
    cliptype: str = "clip",
    hebboutput: str = "i2c",
    modultype: str | None = None,
) -> nn.Module:
    """A hebbkern module computing a Backpropamine network (Miconi et al. 2019).

    The options after ``layout`` are the original code's command-line options under their own
    names and values (they are not in its ``state_dict``: pass the ones it was trained with). The
    defaults are the original's. An option the chosen network does not have, or a value hebbkern
    cannot compute, raises ``ValueError`` naming the option (docs/porting.md lists each one).

    Args:
        state_dict: the original network's ``state_dict``.
        network:
            ``"simple_maze"``: the one-file maze agent (``i2h``, ``w``, ``alpha`` ``[N, N]``,
            ``[1, 1, N]`` or ``[1]``, ``h2mod``, ``modfanout``, ``h2o``, ``h2v``); clip 2.0.
            ``"maze"``: the batched maze code, whose ``w`` and ``alpha`` are ``[post, pre]``:
            ``rnn`` (no ``alpha``), ``plastic`` (``eta``), ``modplast`` (``h2DA``) or ``modul``
            (``h2DA`` and ``etaet``: the retroactive network, rule ``"retro"``); clip 1.0.
            ``"lstm"``: the plastic LSTM (``w``, ``alpha``, ``x2i``/``x2f``/``x2c``/``x2opt``,
            ``h2i``/``h2f``/``h2opt``, ``h2mod`` and ``modfanout`` or ``eta``); clip 2.0.
        prefix: the keys' prefix in a larger model's state_dict (e.g. ``"rnns.0."``).
        clip: the trace bound; ``None`` takes the original code's (above; the LSTM's
            ``clipval``).
        layout: the maze networks' ``nn.PlasticRNNCell`` layout: ``"pre_post"`` (hebbkern's;
            the batched maze code's matrices are transposed) or ``"post_pre"`` (the batched maze
            code's own: its matrices and traces carry over as they are).
        type: ``"maze"``: the network type (default: read from the keys); ``"modul2"`` is
            refused. ``"rnn"`` converts to a ``torch.nn.RNNCell``.
        addpw: ``"maze"``: the trace constraint: 3 hard clamp (rule ``clip``/``neuromod``/
            ``retro``), 2 soft clamp (``soft_clip=True``), 1 unclamped (``clip=inf``), 0 decay
            (``plastic``: rule ``"hebb"``; ``modplast``: rule ``"gated"``).
        da: ``"maze"``: the modulator's squashing ``"tanh"``, ``"sig"``, ``"lin"`` (``mod_squash``
            ``"tanh"``, ``"sigmoid"``, ``"identity"``).
        activ: ``"maze"``: the activation (``activation``: ``"tanh"``, ``"selu"``, and hebbkern's
            others).
        fm: ``"maze"``, type ``modplast``: 1 all neurons modulated, 0 the first half
            (``n_modulated = N // 2``; the others clip with the state_dict's ``eta``).
        cliptype: ``"lstm"``: ``"clip"`` (``clip_mode="update"``), ``"aditya"``
            (``clip_mode="read"``) or ``"decay"`` (rule ``"gated"``, or ``"hebb"`` unmodulated).
        hebboutput: ``"lstm"``: ``"i2c"``, ``"h2co"``, ``"cell"``, ``"hidden"`` (``post``
            ``"candidate"``, ``"drive"``, ``"cell"``, ``"hidden"``).
        modultype: ``"lstm"``: ``None`` reads it from the keys (``h2mod``: ``"modplasth2mod"``,
            ``eta``: ``"none"``); ``"modplastc2mod"`` is refused.

    Returns:
        ``"simple_maze"``, ``"maze"``: ``nn.ModuleDict`` with ``"cell"``
        (:class:`hebbkern.nn.PlasticRNNCell`; ``torch.nn.RNNCell`` for type ``rnn``) and the
        heads ``"h2o"``, ``"h2v"`` (``nn.Linear``) when present. ``"lstm"``:
        :class:`hebbkern.nn.PlasticLSTM` (one layer; fan-out shaped ``[B, 1, N]`` at every batch
        size, unlike the original at batch size 1).
    """
    sd = _sub(state_dict, prefix) if prefix else dict(state_dict)
    opts = dict(type=type, addpw=addpw, da=da, activ=activ, fm=fm, cliptype=cliptype,
                hebboutput=hebboutput, modultype=modultype)  # fmt: skip
    return _bp.convert(sd, network, clip, layout, opts)
