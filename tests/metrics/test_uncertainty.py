"""The case uncertainty (mean normalised entropy over the predicted tumour, 1 when none) against
values computed independently with numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustlabel.metrics.uncertainty import (
    EMPTY_TUMOUR_UNCERTAINTY,
    rank_by_uncertainty,
    region_confidence,
    summarise_prediction,
    tumour_uncertainty,
    voxel_entropy,
)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _case() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """A 4-class softmax on 2x2x1 voxels: background, two tumour voxels (classes 1 and 3), and a
    background voxel outside the brain."""
    p = np.array([
        [0.9, 0.05, 0.05, 0.0],   # background, confident (a zero probability: 0 ln 0 = 0)
        [0.2, 0.5, 0.2, 0.1],     # class 1 (BraTS 1)
        [0.1, 0.2, 0.3, 0.4],     # class 3 (BraTS 4)
        [0.6, 0.2, 0.1, 0.1],     # background, outside the brain
    ], dtype=np.float32)
    probs = torch.from_numpy(p.T.reshape(4, 2, 2, 1).copy())
    image = torch.ones(4, 2, 2, 1)
    image[:, 1, 1, 0] = 0  # voxel 3: every modality zero
    return probs, image, p


def test_summary_matches_the_formula():
    probs, image, p = _case()
    label, confidence, stats = summarise_prediction(probs, image)
    assert label.dtype == np.uint8 and label.reshape(-1).tolist() == [0, 1, 4, 0]
    np.testing.assert_allclose(confidence.reshape(-1), p.max(1))
    entropies = [_entropy(row) for row in p]
    expected = (entropies[1] + entropies[2]) / 2 / math.log(4)
    assert stats["uncertainty"] == pytest.approx(expected, rel=1e-6) and stats["uncertainty_region"] == "tumour"
    assert stats["max_entropy"] == pytest.approx(math.log(4))
    assert stats["voxel_counts"] == {"0": 2, "1": 1, "2": 0, "4": 1}
    brain = stats["confidence"]["brain"]
    assert brain["voxels"] == 3 and brain["mean_entropy"] == pytest.approx(np.mean(entropies[:3]), rel=1e-6)
    assert brain["mean_max_prob"] == pytest.approx((0.9 + 0.5 + 0.4) / 3, rel=1e-6)
    torch.testing.assert_close(voxel_entropy(probs).reshape(-1), torch.tensor(entropies, dtype=torch.float32))


def test_no_predicted_tumour_is_maximally_uncertain():
    probs = torch.zeros(4, 3, 3, 3)
    probs[0] = 0.99
    probs[1:] = 0.01 / 3
    _, _, stats = summarise_prediction(probs, torch.ones(4, 3, 3, 3))
    assert stats["uncertainty"] == EMPTY_TUMOUR_UNCERTAINTY == 1.0 and stats["uncertainty_region"] == "empty"
    assert stats["confidence"]["tumour"] == {"voxels": 0, "mean_max_prob": None, "mean_entropy": None}
    assert stats["confidence"]["brain"]["mean_entropy"] < 0.1  # the whole-brain mean would rank it last


def test_uniform_tumour_reaches_one_and_bad_class_counts_fail():
    assert tumour_uncertainty(math.log(5), 5) == pytest.approx(1.0)
    assert tumour_uncertainty(0.0, 4) == 0.0
    with pytest.raises(ValueError, match="at least 2 classes, got 1"):
        tumour_uncertainty(0.0, 1)
    mask = torch.tensor([True, False, True])
    stats = region_confidence(torch.tensor([0.5, 0.9, 0.7]), torch.tensor([1.0, 0.0, 0.5]), mask)
    assert stats == {"voxels": 2, "mean_max_prob": pytest.approx(0.6), "mean_entropy": pytest.approx(0.75)}


def test_ranking_puts_the_most_uncertain_first_and_breaks_ties_by_case():
    infos = {"b": {"uncertainty": 0.4}, "c": {"uncertainty": 1.0}, "a": {"uncertainty": 0.4}, "d": {"uncertainty": 0.1}}
    assert rank_by_uncertainty(infos) == [("c", 1.0), ("a", 0.4), ("b", 0.4), ("d", 0.1)]
    assert rank_by_uncertainty({}) == []
