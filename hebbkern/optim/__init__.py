"""torch.optim optimisers with fused steps."""

from .fop import FOP

__all__ = ["FOP"]
