"""Eager PyTorch references: the oracle every fused kernel is tested against.

Written for clarity, the way the papers' code writes them (``bmm``, outer products, ``clamp``), and
with the same signatures as the public ops.
"""

from .fop import fop_step
from .hebbian import hebbian_update
from .plastic_rnn import plastic_rnn, plastic_rnn_step

__all__ = ["fop_step", "hebbian_update", "plastic_rnn", "plastic_rnn_step"]
