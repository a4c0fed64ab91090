"""torch.nn modules built on hebbkern's fused ops."""

from .hebbian import HebbianConv2d, HebbianLinear
from .plastic_rnn import PlasticRNN
from .plastic_rnn_cell import PlasticRNNCell

__all__ = ["HebbianConv2d", "HebbianLinear", "PlasticRNN", "PlasticRNNCell"]
