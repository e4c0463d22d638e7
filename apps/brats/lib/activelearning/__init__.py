"""Active-learning strategies."""

from .pseudo_uncertainty import PseudoUncertainty

__all__ = ["PseudoUncertainty"]
