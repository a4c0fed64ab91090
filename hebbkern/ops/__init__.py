"""Public functional ops (argument checks, custom-op registration, autograd, backend dispatch)."""

from .hebbian import hebbian_loss, hebbian_update
from .plastic_rnn import plastic_rnn

__all__ = ["hebbian_loss", "hebbian_update", "plastic_rnn"]
