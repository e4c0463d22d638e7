"""FCN segmentation scores against confusion matrices computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustlabel.metrics.segmentation import SEGMENTATION_SCORES, confusion_matrix, segmentation_scores


def test_confusion_matrix_counts_pixels_and_ignores_void():
    target = np.array([[0, 0, 1, 255], [1, 1, 2, 255]])
    prediction = np.array([[0, 1, 1, 2], [1, 0, 2, 0]])
    expected = np.array([[1, 1, 0],   # true 0: one right, one called 1
                         [1, 2, 0],   # true 1: two right, one called 0
                         [0, 0, 1]])  # true 2: right; the two void pixels are not counted
    np.testing.assert_array_equal(confusion_matrix(target, prediction, 3), expected)
    np.testing.assert_array_equal(confusion_matrix(torch.as_tensor(target), torch.as_tensor(prediction), 3), expected)


def test_scores_of_a_hand_computed_two_class_matrix():
    # rows = truth, columns = prediction: background 50 right / 10 wrong, foreground 30 right / 10 wrong
    hist = np.array([[50, 10], [10, 30]])
    scores = segmentation_scores(hist)
    iu_bg, iu_fg = 50 / (60 + 60 - 50), 30 / (40 + 40 - 30)
    assert scores["overall_acc"] == pytest.approx(80 / 100)
    assert scores["mean_recall"] == pytest.approx((50 / 60 + 30 / 40) / 2)
    assert scores["mean_iu"] == pytest.approx((iu_bg + iu_fg) / 2)
    assert scores["fw_iu"] == pytest.approx(0.6 * iu_bg + 0.4 * iu_fg)
    assert tuple(scores) == SEGMENTATION_SCORES


def test_absent_classes_are_left_out_of_the_means_like_nanmean():
    # class 2 neither present nor predicted: left out; class 1 predicted but absent: recall undefined, IU 0
    hist = np.array([[8, 2, 0], [0, 0, 0], [0, 0, 0]])
    scores = segmentation_scores(hist)
    assert scores["mean_recall"] == pytest.approx(0.8)  # only class 0 has pixels
    assert scores["mean_iu"] == pytest.approx((8 / 10 + 0.0) / 2)
    assert scores["fw_iu"] == pytest.approx(0.8)
    assert segmentation_scores(np.eye(4, dtype=int) * 5) == {"overall_acc": 1.0, "mean_recall": 1.0, "fw_iu": 1.0,
                                                             "mean_iu": 1.0}


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="empty"):
        segmentation_scores(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="square"):
        segmentation_scores(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="predictions must lie"):
        confusion_matrix(np.zeros(4), np.full(4, 3), 2)
    with pytest.raises(ValueError, match="differ in size"):
        confusion_matrix(np.zeros(4), np.zeros(3), 2)
