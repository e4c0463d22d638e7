"""The one builder of the clinician/pseudo loss pair, used by the BraTS trainer and the CIFAR classifier."""

from __future__ import annotations

import pytest
import torch

from robustlabel.engine.config import TrainConfig
from robustlabel.engine.trainer import build_source_aware_loss
from robustlabel.losses import BetaCrossEntropyLoss, CrossEntropyLoss, GeneralizedCrossEntropyLoss, get_loss
from robustlabel.losses.source_aware import source_aware_loss


def test_source_aware_loss_routes_losses():
    loss = source_aware_loss("bce", {"beta": 5.0})
    assert isinstance(loss.clinician, CrossEntropyLoss)
    assert isinstance(loss.pseudo, BetaCrossEntropyLoss) and loss.pseudo.beta == 5.0
    logits, target = torch.randn(4, 10), torch.tensor([1, 2, 3, 4])
    flags = torch.tensor([False, False, True, True])
    expected = (get_loss("ce", reduction="sum")(logits[:2], target[:2])
                + get_loss("bce", beta=5.0, reduction="sum")(logits[2:], target[2:])) / 4
    assert loss(logits, target, flags).item() == pytest.approx(expected.item(), rel=1e-5)


def test_builder_weight_mode_and_errors():
    loss = source_aware_loss("gce", {"q": 0.5}, pseudo_weight=0.25, mode="per_source")
    assert isinstance(loss.pseudo, GeneralizedCrossEntropyLoss) and loss.pseudo.q == 0.5
    assert loss.pseudo_weight == 0.25 and loss.mode == "per_source"
    assert source_aware_loss("ce").mode == "union"
    with pytest.raises(ValueError, match="unknown loss"):
        source_aware_loss("nope")
    with pytest.raises(ValueError, match="does not take"):
        source_aware_loss("gce", {"beta": 1.0})


def test_trainer_builds_its_loss_with_the_same_builder():
    config = TrainConfig(pseudo_loss="bce", pseudo_params={"beta": 0.5}, pseudo_weight=0.5, mode="robust_all")
    built = build_source_aware_loss(config)
    same = source_aware_loss("bce", config.resolved_pseudo_params, pseudo_weight=0.5, mode="robust_all")
    assert isinstance(built.clinician, CrossEntropyLoss) and isinstance(built.pseudo, BetaCrossEntropyLoss)
    assert built.pseudo.beta == same.pseudo.beta == 0.5
    assert (built.pseudo_weight, built.mode) == (same.pseudo_weight, same.mode) == (0.5, "robust_all")
