"""Robust and PU losses for classification and 3-D segmentation.

Build them by name with :func:`get_loss`; mix clinician and pseudo-labels in one batch
with :class:`SourceAwareLoss`.
"""

from .base import PixelwiseLoss, reduce_loss
from .factory import LOSSES, PAPER_HPARAMS, get_loss
from .pu import (
    ClassDependentSigmoidLoss,
    ClassDependentSoftmaxLoss,
    HardBootstrapLoss,
    ParametrisedSigmoidLoss,
    WeightedCrossEntropyLoss,
    inverse_frequency_weights,
)
from .robust import (
    DEFAULT_A,
    BetaCrossEntropyLoss,
    CrossEntropyLoss,
    GeneralizedCrossEntropyLoss,
    ReverseCrossEntropyLoss,
    SymmetricCrossEntropyLoss,
)
from .source_aware import SourceAwareLoss

__all__ = [
    "DEFAULT_A",
    "LOSSES",
    "PAPER_HPARAMS",
    "BetaCrossEntropyLoss",
    "ClassDependentSigmoidLoss",
    "ClassDependentSoftmaxLoss",
    "CrossEntropyLoss",
    "GeneralizedCrossEntropyLoss",
    "HardBootstrapLoss",
    "ParametrisedSigmoidLoss",
    "PixelwiseLoss",
    "ReverseCrossEntropyLoss",
    "SourceAwareLoss",
    "SymmetricCrossEntropyLoss",
    "WeightedCrossEntropyLoss",
    "get_loss",
    "inverse_frequency_weights",
    "reduce_loss",
]
