"""Small public types shared by ops and modules."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class PlasticState(NamedTuple):
    """Recurrent state of a plastic layer after the last step.

    h:    final activity ``[B, N]``
    hebb: final Hebbian trace ``[B, N, N]`` (indexed ``[b, pre, post]``)
    elig: final eligibility trace ``[B, N, N]`` for rule ``"retro"``, else ``None``
    """

    h: Tensor
    hebb: Tensor
    elig: Tensor | None = None


class PlasticLSTMState(NamedTuple):
    """Recurrent state of a plastic LSTM layer after the last step.

    h:    final output ``[B, N]``
    c:    final cell state ``[B, N]``
    hebb: final Hebbian trace ``[B, N, N]`` (indexed ``[b, pre, post]``)
    elig: final eligibility trace ``[B, N, N]`` for rule ``"retro"``, else ``None``
    """

    h: Tensor
    c: Tensor
    hebb: Tensor
    elig: Tensor | None = None


def _register_for_export() -> None:
    """Named tuples are pytree nodes already, but ``torch.export.save`` can serialise a graph whose
    outputs hold them only when they are registered with a serialised type name."""
    from torch.utils import _pytree as pytree

    for cls in (PlasticState, PlasticLSTMState):
        name = f"{cls.__module__}.{cls.__qualname__}"
        if cls not in pytree.SUPPORTED_NODES:
            pytree._register_namedtuple(cls, serialized_type_name=name)


_register_for_export()
