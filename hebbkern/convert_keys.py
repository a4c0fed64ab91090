"""State-dict helpers of :mod:`hebbkern.convert`: keys, shapes and the papers' kinds of alpha.

Every error names the key (``state_dict['alpha']``) and the shapes expected, so that a wrong
checkpoint is refused before any module is built.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn


def get(sd: Mapping[str, Tensor], key: str, network: str) -> Tensor:
    """``sd[key]`` detached, or ``KeyError`` listing the keys present."""
    if key not in sd:
        raise KeyError(f"the {network!r} state_dict has no {key!r} (keys present: {sorted(sd)})")
    x = sd[key]
    if not isinstance(x, Tensor):
        raise TypeError(f"state_dict[{key!r}] must be a torch.Tensor, got {type(x).__name__}")
    return x.detach()


def shape(key: str, x: Tensor, want: tuple[int, ...]) -> Tensor:
    if tuple(x.shape) != want:
        raise ValueError(f"state_dict[{key!r}] must have shape {list(want)}, got {list(x.shape)}")
    return x


def alpha_kind(key: str, alpha: Tensor, rows: int, cols: int) -> tuple[str, Tensor]:
    """hebbkern's kind of alpha and its value for a papers' alpha: ``[rows, cols]`` per
    connection, ``[1]`` shared ("homo", "yoked", "single"), ``[1, 1, cols]`` per post neuron."""
    s = tuple(alpha.shape)
    if s == (rows, cols):
        return "per_connection", alpha
    if s in ((1,), ()):
        return "scalar", alpha.reshape(())
    if s in ((1, 1, cols), (cols,)):
        return "per_neuron", alpha.reshape(cols)
    raise ValueError(
        f"state_dict[{key!r}] must have shape {[rows, cols]} (per connection), [1] (shared) or "
        f"{[1, 1, cols]} (per neuron), got {list(s)}"
    )


def scalar(key: str, x: Tensor) -> Tensor:
    if x.numel() != 1:
        raise ValueError(
            f"state_dict[{key!r}] must hold one value (shape [1]), got {list(x.shape)}"
        )
    return x.reshape(())


def sub(sd: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries under ``prefix`` (e.g. ``"rnns.0."``), with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def modulator(sd, name: str, N: int, network: str) -> tuple[Tensor, Tensor]:
    """``nn.Linear(N, 1)`` ``name`` (weight ``[1, N]``, bias ``[1]``) as ``mod_w`` ``[N]``,
    ``mod_b`` ``[]``."""
    w = shape(f"{name}.weight", get(sd, f"{name}.weight", network), (1, N))
    return w.reshape(N), scalar(f"{name}.bias", get(sd, f"{name}.bias", network))


def fanout(sd, N: int, network: str) -> tuple[Tensor, Tensor]:
    """``modfanout``, an ``nn.Linear(1, N)`` (weight ``[N, 1]``), as ``fanout_w``, ``fanout_b``
    ``[N]``."""
    w = shape("modfanout.weight", get(sd, "modfanout.weight", network), (N, 1))
    return w.reshape(N), shape("modfanout.bias", get(sd, "modfanout.bias", network), (N,))


def linear(sd, name: str, network: str) -> nn.Linear:
    """An ``nn.Linear`` holding ``{name}.weight`` and ``{name}.bias``."""
    w, b = get(sd, f"{name}.weight", network), get(sd, f"{name}.bias", network)
    lin = nn.Linear(w.shape[1], w.shape[0], dtype=w.dtype, device=w.device)
    lin.load_state_dict({"weight": w, "bias": shape(f"{name}.bias", b, (w.shape[0],))})
    return lin


def heads(sd, network: str, names=("h2o", "h2v")) -> dict[str, nn.Linear]:
    """The output heads present in ``sd``, as ``nn.Linear`` layers."""
    return {name: linear(sd, name, network) for name in names if f"{name}.weight" in sd}


def choice(name: str, value: object, choices) -> object:
    """``choices[value]`` (a dict maps the papers' value to hebbkern's) or ``value`` itself (a
    tuple of accepted values), else ``ValueError`` naming the argument."""
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return choices[value] if isinstance(choices, dict) else value
