"""torch.nn modules built on hebbkern's fused ops."""

from .dhp_softmax import DHPSoftmax
from .hebbian import HebbianConv2d, HebbianLinear
from .plastic_lstm import PlasticLSTM
from .plastic_rnn import PlasticRNN
from .plastic_rnn_cell import PlasticRNNCell

__all__ = [
    "DHPSoftmax",
    "HebbianConv2d",
    "HebbianLinear",
    "PlasticLSTM",
    "PlasticRNN",
    "PlasticRNNCell",
]
