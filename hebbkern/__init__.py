"""hebbkern: fused CPU, CUDA and Triton kernels for synaptic plasticity in PyTorch."""

from . import consolidation, nn, reference
from ._extension import available as extension_available
from .backends import BACKENDS, use_backend
from .ops import plastic_lstm, plastic_rnn
from .types import PlasticLSTMState, PlasticState

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "PlasticLSTMState",
    "PlasticState",
    "consolidation",
    "extension_available",
    "nn",
    "plastic_lstm",
    "plastic_rnn",
    "reference",
    "use_backend",
]
