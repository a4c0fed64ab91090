"""Eager PyTorch references: the oracle every fused kernel is tested against.

Written for clarity, the way the papers' code writes them (``bmm``, outer products, ``clamp``), and
with the same signatures as the public ops.
"""

from .plastic_lstm import plastic_lstm, plastic_lstm_step
from .plastic_rnn import plastic_rnn, plastic_rnn_step

__all__ = ["plastic_lstm", "plastic_lstm_step", "plastic_rnn", "plastic_rnn_step"]
