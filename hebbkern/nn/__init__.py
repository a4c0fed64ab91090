"""torch.nn modules built on hebbkern's fused ops."""

from .dhp_softmax import DHPSoftmax
from .plastic_lstm import PlasticLSTM
from .plastic_rnn import PlasticRNN

__all__ = ["DHPSoftmax", "PlasticLSTM", "PlasticRNN"]
