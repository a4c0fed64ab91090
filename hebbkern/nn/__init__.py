"""torch.nn modules built on hebbkern's fused ops."""

from .plastic_rnn import PlasticRNN

__all__ = ["PlasticRNN"]
