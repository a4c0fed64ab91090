"""Eager PyTorch references: the oracle every fused kernel is tested against.

Written for clarity, the way the papers' code writes them (``bmm``, outer products, ``clamp``), and
with the same signatures as the public ops.
"""

from .plastic_rnn import plastic_rnn, plastic_rnn_step

__all__ = ["plastic_rnn", "plastic_rnn_step"]

from .plastic_step import plastic_step  # noqa: E402

__all__ += ["plastic_step"]

from .plastic_linear import plastic_linear  # noqa: E402

__all__ += ["plastic_linear"]

from .trace_update import trace_update  # noqa: E402

__all__ += ["trace_update"]
