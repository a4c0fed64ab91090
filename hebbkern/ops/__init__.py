"""Public functional ops (argument checks, custom-op registration, autograd, backend dispatch)."""

from .plastic_lstm import plastic_lstm
from .plastic_rnn import plastic_rnn

__all__ = ["plastic_lstm", "plastic_rnn"]
