"""Load the public papers' trained networks into hebbkern modules (guide: docs/porting.md).

Two entry points, one per code base, each taking the original network's ``state_dict`` (or, for
the differentiable-plasticity scripts that keep ``w``, ``alpha`` and ``eta`` as plain tensors
rather than parameters, a dict of those tensors under the same names):

- :func:`from_differentiable_plasticity`: ``network="pattern"`` (the simple pattern-completion
  network and the image-completion one) or ``"omniglot"`` (the conv encoder and its plastic
  read-out).
- :func:`from_backpropamine`: ``network="simple_maze"`` (the one-file maze agent),
  ``"maze"`` (the batched maze code: its ``plastic``, ``modplast`` and retroactive ``modul``
  networks) or ``"lstm"`` (the plastic LSTM of the language model).

What the conversion does: renames the keys, transposes the batched maze code's ``[post, pre]``
matrices to hebbkern's ``[pre, post]``, reshapes ``nn.Linear`` weights (``[1, N]``, ``[N, 1]``)
and ``[1]`` / ``[1, 1, N]`` parameters to hebbkern's parameter shapes, concatenates the plastic
LSTM's per-gate ``nn.Linear`` layers into ``nn.LSTM``'s ``weight_ih`` / ``weight_hh``, and sets the
options the original code hard-wired (the clip bound, the fan-out, the input projection). The
result computes the original step as the papers meant it; where the code has a known bug (the
plastic LSTM's fan-out at batch size 1, docs/SPEC.md section 9) the converted module does not
reproduce it. The traces are state, not parameters: a trace kept by the batched maze code is
``[B, post, pre]`` and must be transposed (``hebb.transpose(1, 2)``) before it is handed over.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .nn import PlasticLSTM, PlasticRNN, PlasticRNNCell
from .ops import plastic_linear, trace_update

__all__ = ["PlasticReadout", "from_backpropamine", "from_differentiable_plasticity"]


# ---------------------------------------------------------------------------------------------
# Small helpers: keys, shapes, alpha kinds
# ---------------------------------------------------------------------------------------------


def _get(sd: Mapping[str, Tensor], key: str, network: str) -> Tensor:
    if key not in sd:
        raise KeyError(f"the {network!r} state_dict has no {key!r} (keys present: {sorted(sd)})")
    x = sd[key]
    if not isinstance(x, Tensor):
        raise TypeError(f"state_dict[{key!r}] must be a torch.Tensor, got {type(x).__name__}")
    return x.detach()


def _shape(key: str, x: Tensor, shape: tuple[int, ...]) -> Tensor:
    if tuple(x.shape) != shape:
        raise ValueError(f"state_dict[{key!r}] must have shape {list(shape)}, got {list(x.shape)}")
    return x


def _alpha(key: str, alpha: Tensor, rows: int, cols: int) -> tuple[str, Tensor]:
    """hebbkern's kind of alpha and its value for a papers' alpha: ``[rows, cols]`` per
    connection, ``[1]`` shared ("homo", "yoked", "single"), ``[1, 1, cols]`` per post neuron."""
    shape = tuple(alpha.shape)
    if shape == (rows, cols):
        return "per_connection", alpha
    if shape in ((1,), ()):
        return "scalar", alpha.reshape(())
    if shape in ((1, 1, cols), (cols,)):
        return "per_neuron", alpha.reshape(cols)
    raise ValueError(
        f"state_dict[{key!r}] must have shape {[rows, cols]} (per connection), [1] (shared) or "
        f"{[1, 1, cols]} (per neuron), got {list(shape)}"
    )


def _scalar(key: str, x: Tensor) -> Tensor:
    if x.numel() != 1:
        raise ValueError(
            f"state_dict[{key!r}] must hold one value (shape [1]), got {list(x.shape)}"
        )
    return x.reshape(())


def _sub(sd: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries under ``prefix`` (e.g. ``"rnns.0."``), with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def _modulator(sd, name: str, N: int, network: str) -> tuple[Tensor, Tensor]:
    """``nn.Linear(N, 1)`` ``name`` (weight ``[1, N]``, bias ``[1]``) as ``mod_w`` ``[N]``,
    ``mod_b`` ``[]``."""
    w = _shape(f"{name}.weight", _get(sd, f"{name}.weight", network), (1, N))
    return w.reshape(N), _scalar(f"{name}.bias", _get(sd, f"{name}.bias", network))


def _fanout(sd, N: int, network: str) -> tuple[Tensor, Tensor]:
    """``modfanout``, an ``nn.Linear(1, N)`` (weight ``[N, 1]``), as ``fanout_w``, ``fanout_b``
    ``[N]``."""
    w = _shape("modfanout.weight", _get(sd, "modfanout.weight", network), (N, 1))
    return w.reshape(N), _shape("modfanout.bias", _get(sd, "modfanout.bias", network), (N,))


def _linear(sd, name: str, network: str) -> nn.Linear:
    """An ``nn.Linear`` holding ``{name}.weight`` and ``{name}.bias``."""
    w, b = _get(sd, f"{name}.weight", network), _get(sd, f"{name}.bias", network)
    lin = nn.Linear(w.shape[1], w.shape[0], dtype=w.dtype, device=w.device)
    lin.load_state_dict({"weight": w, "bias": _shape(f"{name}.bias", b, (w.shape[0],))})
    return lin


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
# Backpropamine (Miconi et al., ICLR 2019)
# ---------------------------------------------------------------------------------------------


def _cell(I, N, rule, kind, fanout, clip, ref: Tensor, params: dict) -> PlasticRNNCell:
    cell = PlasticRNNCell(
        I, N, rule=rule, alpha=kind, fanout=fanout, clip=clip, dtype=ref.dtype, device=ref.device
    )
    cell.load_state_dict(params)
    return cell


def _heads(sd, network: str, names=("h2o", "h2v")) -> dict[str, nn.Linear]:
    return {name: _linear(sd, name, network) for name in names if f"{name}.weight" in sd}


def _simple_maze(sd, clip: float) -> nn.ModuleDict:
    net = "simple_maze"
    wi = _get(sd, "i2h.weight", net)
    N, I = wi.shape
    w = _shape("w", _get(sd, "w", net), (N, N))  # [pre, post] already: h.bmm(w + alpha * hebb)
    kind, alpha = _alpha("alpha", _get(sd, "alpha", net), N, N)
    params = {"weight_ih": wi, "bias_ih": _get(sd, "i2h.bias", net), "w": w, "alpha": alpha}
    params["mod_w"], params["mod_b"] = _modulator(sd, "h2mod", N, net)
    params["fanout_w"], params["fanout_b"] = _fanout(sd, N, net)
    cell = _cell(I, N, "neuromod", kind, True, clip, wi, params)
    return nn.ModuleDict({"cell": cell, **_heads(sd, net)})


def _batched_maze(sd, clip: float, addpw: int) -> nn.ModuleDict:
    net = "maze"
    wi = _get(sd, "i2h.weight", net)
    N, I = wi.shape
    # The batched maze code computes (w + alpha * hebb) @ h: its matrices are [post, pre].
    w = _shape("w", _get(sd, "w", net), (N, N)).t()
    kind, alpha = _alpha("alpha", _get(sd, "alpha", net), N, N)
    if kind == "per_connection":
        alpha = alpha.t()
    elif kind == "per_neuron":  # [1, 1, N] on [post, pre] matrices would be per PRE neuron
        raise ValueError("state_dict['alpha'] of the 'maze' network is [N, N] or [1]")
    params = {"weight_ih": wi, "bias_ih": _get(sd, "i2h.bias", net), "w": w, "alpha": alpha}
    if "etaet" in sd:  # 'modul': the retroactive network (eligibility trace, then plastic weights)
        net_type, rule = "modul", "retro"
        params["eta"] = _scalar("etaet", _get(sd, "etaet", net))
    elif "h2DA.weight" in sd:  # 'modplast': simple neuromodulation
        net_type, rule = "modplast", "neuromod"
    elif "eta" in sd:  # 'plastic': no modulator
        net_type = "plastic"
        rule = {3: "clip", 0: "hebb"}.get(addpw)
        params["eta"] = _scalar("eta", _get(sd, "eta", net))
    else:
        raise KeyError(
            "the 'maze' state_dict has neither 'eta' (plastic), 'h2DA.weight' (modplast) nor "
            f"'etaet' (modul); keys present: {sorted(sd)}"
        )
    if net_type != "plastic":
        if addpw != 3:
            raise ValueError(
                f"addpw={addpw} of the {net_type!r} network is not expressible (the modulated "
                "rules are additive with a hard clamp: addpw=3)"
            )
        params["mod_w"], params["mod_b"] = _modulator(sd, "h2DA", N, net)
    elif rule is None:
        raise ValueError(
            f"addpw={addpw} of the 'plastic' network is not expressible (addpw=3: hard clamp, "
            "rule 'clip'; addpw=0: decay, rule 'hebb')"
        )
    cell = _cell(I, N, rule, kind, False, clip, wi, params)
    return nn.ModuleDict({"cell": cell, **_heads(sd, net)})


def _lstm(sd, clip: float) -> PlasticLSTM:
    net = "lstm"
    w = _get(sd, "w", net)
    N = w.shape[0]
    _shape("w", w, (N, N))
    x2 = {g: _get(sd, f"x2{g}.weight", net) for g in ("i", "f", "c", "opt")}
    I = x2["i"].shape[1]
    kind, alpha = _alpha("alpha", _get(sd, "alpha", net), N, N)
    modulated = "h2mod.weight" in sd
    fanout = "modfanout.weight" in sd
    if not modulated and "eta" not in sd:
        raise KeyError(f"the 'lstm' state_dict has neither 'h2mod.weight' nor 'eta': {sorted(sd)}")
    rule = "neuromod" if modulated else "clip"
    m = PlasticLSTM(
        I, N, rule=rule, alpha=kind, fanout=fanout, clip=clip, dtype=w.dtype, device=w.device
    )

    def hb(g):  # h2{g} is an nn.Linear(N, N): weight [post, pre], as nn.LSTM's weight_hh blocks
        return _get(sd, f"h2{g}.weight", net), _get(sd, f"h2{g}.bias", net)

    (whi, bhi), (whf, bhf), (who, bho) = hb("i"), hb("f"), hb("opt")
    # Gate order i, f, g, o (nn.LSTM's); the candidate's recurrent block is the plastic w [pre,
    # post], transposed into weight_hh's [post, pre] rows; it has no recurrent bias.
    params = {
        "weight_ih_l0": torch.cat([x2["i"], x2["f"], x2["c"], x2["opt"]]),
        "bias_ih_l0": torch.cat([_get(sd, f"x2{g}.bias", net) for g in ("i", "f", "c", "opt")]),
        "weight_hh_l0": torch.cat([whi, whf, w.t(), who]),
        "bias_hh_l0": torch.cat([bhi, bhf, torch.zeros_like(bhi), bho]),
        "alpha_l0": alpha,
    }
    if modulated:
        params["mod_w_l0"], params["mod_b_l0"] = _modulator(sd, "h2mod", N, net)
        if fanout:
            params["fanout_w_l0"], params["fanout_b_l0"] = _fanout(sd, N, net)
    else:
        params["eta_l0"] = _scalar("eta", _get(sd, "eta", net))
    m.load_state_dict(params)
    return m


def from_backpropamine(
    state_dict: Mapping[str, Tensor],
    network: str = "simple_maze",
    *,
    prefix: str = "",
    clip: float | None = None,
    addpw: int = 3,
) -> nn.Module:
    """A hebbkern module computing a Backpropamine network (Miconi et al. 2019).

    Args:
        state_dict: the original network's ``state_dict``.
        network:
            ``"simple_maze"``: the one-file maze agent (``i2h``, ``w``, ``alpha`` ``[N, N]``,
            ``[1, 1, N]`` or ``[1]``, ``h2mod``, ``modfanout``, ``h2o``, ``h2v``); clip 2.0.
            ``"maze"``: the batched maze code, whose ``w`` and ``alpha`` are ``[post, pre]``
            (transposed here): ``plastic`` (``eta``), ``modplast`` (``h2DA``) or ``modul``
            (``h2DA`` and ``etaet``: the retroactive network, rule ``"retro"``); clip 1.0.
            ``"lstm"``: the plastic LSTM (``w``, ``alpha``, ``x2i``/``x2f``/``x2c``/``x2opt``,
            ``h2i``/``h2f``/``h2opt``, ``h2mod``, ``modfanout``); clip 2.0.
        prefix: the keys' prefix in a larger model's state_dict (e.g. ``"rnns.0."``).
        clip: the trace bound; ``None`` takes the original code's (above).
        addpw: the batched maze code's trace constraint: 3 (hard clamp, the default) or, for the
            ``plastic`` network only, 0 (decay). The soft clamp (2) and the unconstrained sum (1)
            are variants hebbkern does not compute here.

    Returns:
        ``"simple_maze"``, ``"maze"``: ``nn.ModuleDict`` with ``"cell"``
        (:class:`hebbkern.nn.PlasticRNNCell`) and the heads ``"h2o"``, ``"h2v"`` (``nn.Linear``)
        when present. ``"lstm"``: :class:`hebbkern.nn.PlasticLSTM` (one layer; fan-out shaped
        ``[B, 1, N]`` at every batch size, unlike the original at batch size 1).
    """
    sd = _sub(state_dict, prefix) if prefix else dict(state_dict)
    if network == "simple_maze":
        return _simple_maze(sd, 2.0 if clip is None else clip)
    if network == "maze":
        return _batched_maze(sd, 1.0 if clip is None else clip, addpw)
    if network == "lstm":
        return _lstm(sd, 2.0 if clip is None else clip)
    raise ValueError(f"network must be 'simple_maze', 'maze' or 'lstm', got {network!r}")
