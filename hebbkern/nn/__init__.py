"""torch.nn modules built on hebbkern's fused ops."""

from .plastic_rnn import PlasticRNN
from .plastic_rnn_cell import PlasticRNNCell

__all__ = ["PlasticRNN", "PlasticRNNCell"]
