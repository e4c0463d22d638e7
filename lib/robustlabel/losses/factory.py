"""``get_loss(name, **params)``: the public way to build a loss by name."""

from __future__ import annotations

import inspect
from typing import Any

from .base import PixelwiseLoss
from .hparams import PAPER_HPARAMS as PAPER_HPARAMS  # re-exported: robustlabel.losses.PAPER_HPARAMS
from .pu import (
    ClassDependentSigmoidLoss,
    ClassDependentSoftmaxLoss,
    HardBootstrapLoss,
    ParametrisedSigmoidLoss,
    WeightedCrossEntropyLoss,
)
from .robust import (
    BetaCrossEntropyLoss,
    CrossEntropyLoss,
    GeneralizedCrossEntropyLoss,
    ReverseCrossEntropyLoss,
    SymmetricCrossEntropyLoss,
)

LOSSES: dict[str, type[PixelwiseLoss]] = {
    "ce": CrossEntropyLoss,
    "gce": GeneralizedCrossEntropyLoss,
    "beta_ce": BetaCrossEntropyLoss,
    "bce": BetaCrossEntropyLoss,  # the seed paper's name for β-CE (not binary CE)
    "rce": ReverseCrossEntropyLoss,
    "sce": SymmetricCrossEntropyLoss,
    "weighted_ce": WeightedCrossEntropyLoss,
    "cd_sigmoid": ClassDependentSigmoidLoss,
    "cd_softmax": ClassDependentSoftmaxLoss,
    "hard_bootstrap": HardBootstrapLoss,
    "param_sigmoid": ParametrisedSigmoidLoss,
}

def get_loss(name: str, **params: Any) -> PixelwiseLoss:
    """Build the loss called ``name`` with its hyper-parameters.

    Every loss accepts ``reduction`` (``"mean"`` | ``"sum"`` | ``"none"``) and ``ignore_index``.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones), an unknown
            parameter, or a parameter outside its domain.
    """
    key = str(name).lower()
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(sorted(LOSSES))}")
    cls = LOSSES[key]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"loss {key!r} does not take parameter(s) {unknown}; it accepts {sorted(accepted)}")
    return cls(**params)
