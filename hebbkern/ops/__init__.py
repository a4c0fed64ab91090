"""Public functional ops (argument checks, custom-op registration, autograd, backend dispatch)."""

from .plastic_rnn import plastic_rnn

__all__ = ["plastic_rnn"]

from .plastic_step import plastic_step  # noqa: E402

__all__ += ["plastic_step"]

from .plastic_linear import plastic_linear  # noqa: E402

__all__ += ["plastic_linear"]

from .trace_update import trace_update  # noqa: E402

__all__ += ["trace_update"]
