"""The weight-layout option of the plastic ops and modules (``layout=``).

``"pre_post"`` (the default) stores ``w``, a per-connection ``alpha`` and the Hebbian traces
``[.., pre, post]``; ``"post_pre"`` stores them ``[.., post, pre]``, as ``nn.Linear`` and
Backpropamine's batched maze code do. The math does not change: a ``"post_pre"`` call equals the
``"pre_post"`` call on the transposed tensors, returning transposed traces.
"""

from __future__ import annotations

from torch import Tensor

LAYOUTS = ("pre_post", "post_pre")


def check_layout(layout: object) -> str:
    """``layout`` itself, or ``ValueError`` naming the argument."""
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def swap(x: Tensor | None) -> Tensor | None:
    """``x`` with its last two dimensions swapped (a view), for a backend that has no native
    ``"post_pre"`` kernel; vectors and scalars (per-neuron or shared values) as they are."""
    return None if x is None or x.dim() < 2 else x.transpose(-1, -2)


def swap_square(x: Tensor | None) -> Tensor | None:
    """:func:`swap` for the recurrent families, where only ``[.., N, N]`` tensors are weights or
    traces (a per-neuron ``[1, 1, N]`` alpha stays as it is)."""
    if x is None or x.dim() < 2 or x.shape[-1] != x.shape[-2]:
        return x
    return x.transpose(-1, -2)
