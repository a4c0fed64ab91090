"""Public functional ops (argument checks, custom-op registration, autograd, backend dispatch)."""

from ..reference._signature import publish
from .hebbian import hebbian_loss, hebbian_update
from .lifetime import lifetime
from .plastic_linear import plastic_linear
from .plastic_lstm import plastic_lstm
from .plastic_rnn import plastic_rnn
from .plastic_step import plastic_step
from .trace_update import trace_update

# The references of these ops take their keyword arguments from the signatures written here.
publish(hebbian_update, plastic_rnn, plastic_step, trace_update)

__all__ = [
    "hebbian_loss",
    "hebbian_update",
    "lifetime",
    "plastic_linear",
    "plastic_lstm",
    "plastic_rnn",
    "plastic_step",
    "trace_update",
]
