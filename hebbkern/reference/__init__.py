"""Eager PyTorch references: the oracle every fused kernel is tested against.

Written for clarity, the way the papers' code writes them (``bmm``, outer products, ``clamp``), and
with the same signatures as the public ops.
"""

from .fop import fop_step
from .hebbian import hebbian_update
from .lifetime import lifetime
from .plastic_linear import plastic_linear
from .plastic_lstm import plastic_lstm, plastic_lstm_step
from .plastic_rnn import plastic_rnn, plastic_rnn_step
from .plastic_step import plastic_step
from .trace_update import trace_update

__all__ = [
    "fop_step",
    "hebbian_update",
    "lifetime",
    "plastic_linear",
    "plastic_lstm",
    "plastic_lstm_step",
    "plastic_rnn",
    "plastic_rnn_step",
    "plastic_step",
    "trace_update",
]
