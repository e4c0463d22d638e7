"""Scoring methods."""

from .pseudo_confidence import PseudoConfidence

__all__ = ["PseudoConfidence"]
