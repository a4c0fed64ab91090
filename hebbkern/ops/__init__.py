"""Public functional ops (argument checks, custom-op registration, autograd, backend dispatch)."""

from .plastic_rnn import plastic_rnn

__all__ = ["plastic_rnn"]
