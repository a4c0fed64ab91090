"""hebbkern: fused CPU, CUDA and Triton kernels for synaptic plasticity in PyTorch."""

from . import (
    _torch_version,  # noqa: F401  (first: an unsupported torch fails clearly)
    consolidation,
    convert,
    nn,
    optim,
    reference,
)
from ._extension import available as extension_available
from .backends import BACKENDS, use_backend
from .ops import (
    hebbian_loss,
    hebbian_update,
    lifetime,
    plastic_linear,
    plastic_lstm,
    plastic_rnn,
    plastic_step,
    trace_update,
)
from .types import PlasticLSTMState, PlasticState

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "PlasticLSTMState",
    "PlasticState",
    "consolidation",
    "convert",
    "extension_available",
    "hebbian_loss",
    "hebbian_update",
    "lifetime",
    "nn",
    "optim",
    "plastic_linear",
    "plastic_lstm",
    "plastic_rnn",
    "plastic_step",
    "reference",
    "trace_update",
    "use_backend",
]
