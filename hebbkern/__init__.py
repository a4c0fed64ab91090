"""hebbkern: fused CPU, CUDA and Triton kernels for synaptic plasticity in PyTorch."""

from . import nn, optim, reference
from ._extension import available as extension_available
from .backends import BACKENDS, use_backend
from .ops import (
    hebbian_loss,
    hebbian_update,
    plastic_linear,
    plastic_rnn,
    plastic_step,
    trace_update,
)
from .types import PlasticState

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "PlasticState",
    "extension_available",
    "hebbian_loss",
    "hebbian_update",
    "nn",
    "optim",
    "plastic_linear",
    "plastic_rnn",
    "plastic_step",
    "reference",
    "trace_update",
    "use_backend",
]
