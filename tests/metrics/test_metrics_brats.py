"""BraTS Dice/HD95 per region against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustlabel.metrics import METRIC_KEYS, brats_metrics, format_mean_std, format_summary, spacing_from_affine, summarise
from robustlabel.metrics.brats import BRATS_WORST_HD95
from scipy import ndimage


def _hand_dice(pred: np.ndarray, target: np.ndarray, values: tuple[int, ...]) -> float:
    p, g = np.isin(pred, values), np.isin(target, values)
    if not p.any() and not g.any():
        return 1.0
    return 2.0 * np.logical_and(p, g).sum() / (p.sum() + g.sum())


def _pair():
    rng = np.random.default_rng(0)
    target = np.zeros((20, 18, 16), np.uint8)
    target[3:15, 4:14, 3:13] = 2
    target[6:12, 6:12, 5:11] = 4
    target[8:10, 8:10, 7:9] = 1
    pred = target.copy()
    noise = rng.random(target.shape) < 0.1
    pred[noise] = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=int(noise.sum()))
    return pred, target


def test_dice_matches_hand_computation():
    pred, target = _pair()
    row = brats_metrics(pred, target)
    assert set(row) == set(METRIC_KEYS)
    for region, values in (("WT", (1, 2, 4)), ("TC", (1, 4)), ("ET", (4,))):
        assert row[f"dice_{region}"] == pytest.approx(_hand_dice(pred, target, values), abs=1e-6)
    assert 0.5 < row["dice_WT"] < 1.0


def test_torch_and_channel_inputs_agree():
    pred, target = _pair()
    a = brats_metrics(pred, target)
    b = brats_metrics(torch.from_numpy(pred)[None], torch.from_numpy(target).long())
    assert a == pytest.approx(b, nan_ok=True)


def test_hd95_of_a_shift_scales_with_spacing():
    target = np.zeros((24, 24, 24), np.uint8)
    target[6:16, 6:16, 6:16] = 4
    pred = np.roll(target, 2, axis=0)  # shifted 2 voxels along x
    row = brats_metrics(pred, target)
    assert row["hd95_ET"] == pytest.approx(2.0) and row["hd95_WT"] == pytest.approx(2.0)
    assert row["dice_ET"] == pytest.approx(2 * 8 * 100 / 2000)
    row = brats_metrics(pred, target, spacing=(1.5, 1.0, 3.0))
    assert row["hd95_ET"] == pytest.approx(3.0)
    assert spacing_from_affine(np.diag([-1.5, -1.0, 3.0, 1.0])) == (1.5, 1.0, 3.0)


def test_empty_conventions():
    target = np.zeros((12, 12, 12), np.uint8)
    target[3:8, 3:8, 3:8] = 2  # oedema only: TC and ET empty in the reference
    row = brats_metrics(target.copy(), target)
    assert row["dice_WT"] == 1.0 and row["hd95_WT"] == 0.0
    assert row["dice_TC"] == 1.0 and row["hd95_TC"] == 0.0  # both empty: Dice 1, HD95 0
    pred = target.copy()
    pred[5, 5, 5] = 4  # a false-positive ET voxel
    row = brats_metrics(pred, target)
    # one side empty: Dice 0 and, by default, the BraTS worst-case HD95 (not NaN, which the mean would drop)
    assert row["dice_ET"] == 0.0 and row["hd95_ET"] == BRATS_WORST_HD95 == 373.13
    assert math.isnan(brats_metrics(pred, target, one_empty_hd95=float("nan"))["hd95_ET"])
    missed = brats_metrics(np.zeros_like(target), target)  # the prediction misses the whole tumour
    assert missed["dice_WT"] == 0.0 and missed["hd95_WT"] == 373.13


def test_a_missed_case_counts_in_the_mean_hd95_with_its_n():
    target = np.zeros((16, 16, 16), np.uint8)
    target[4:10, 4:10, 4:10] = 2
    rows = [{"case": "hit", **brats_metrics(target.copy(), target)},
            {"case": "miss", **brats_metrics(np.zeros_like(target), target)}]
    summary = summarise(rows)
    assert summary["hd95_WT"]["n"] == 2 and summary["hd95_WT"]["mean"] == pytest.approx(373.13 / 2)
    assert format_mean_std(summary["hd95_WT"], with_n=True).endswith("(n=2)")
    assert format_mean_std(summary["dice_WT"], decimals=2, with_n=True) == "0.50 ± 0.71 (n=2)"


def _directed_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance from every surface voxel of ``a`` to the surface of ``b`` (surface = mask minus its erosion)."""
    surface_a = a ^ ndimage.binary_erosion(a)
    surface_b = b ^ ndimage.binary_erosion(b)
    return ndimage.distance_transform_edt(~surface_b)[surface_a]


def test_hd95_is_the_larger_directed_percentile_not_the_pooled_one():
    target = np.zeros((40, 24, 24), np.uint8)
    target[4:14, 6:16, 6:16] = 2
    pred = target.copy()
    pred[30:33, 10:13, 10:13] = 2  # a small false-positive blob far from the tumour
    forward = _directed_distances(pred > 0, target > 0)
    backward = _directed_distances(target > 0, pred > 0)
    directed_max = max(np.quantile(forward, 0.95), np.quantile(backward, 0.95))
    pooled = np.quantile(np.concatenate([forward, backward]), 0.95)
    assert abs(directed_max - pooled) > 1.0  # the two definitions differ on this pair
    assert brats_metrics(pred, target)["hd95_WT"] == pytest.approx(directed_max, abs=1e-3)  # float32 quantile


def test_summarise_ignores_nan_and_reports_n():
    rows = [
        {"case": "a", "dice_WT": 0.8, "hd95_WT": 2.0},
        {"case": "b", "dice_WT": 0.6, "hd95_WT": float("nan")},
    ]
    summary = summarise(rows)
    assert set(summary) == {"dice_WT", "hd95_WT"}
    # sample std (ddof = 1): sqrt(((0.8-0.7)^2 + (0.6-0.7)^2) / 1)
    assert summary["dice_WT"] == {"mean": pytest.approx(0.7), "std": pytest.approx(0.1 * math.sqrt(2)), "n": 2}
    assert summary["hd95_WT"]["mean"] == 2.0 and summary["hd95_WT"]["n"] == 1
    assert math.isnan(summary["hd95_WT"]["std"])  # no spread from a single value
    assert math.isnan(summarise([{"hd95_ET": float("nan")}])["hd95_ET"]["mean"])
    text = format_summary(summary)
    assert "dice_WT  0.7000 ± 0.1414  (n=2)" in text and "hd95_WT  2.0000  (n=1)" in text


def test_bad_inputs():
    with pytest.raises(ValueError, match="shapes differ"):
        brats_metrics(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"unexpected label values \[3\]"):
        brats_metrics(np.full((4, 4, 4), 3, np.uint8), np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="spacing"):
        brats_metrics(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), spacing=(1.0, 1.0))
    with pytest.raises(TypeError):
        brats_metrics([[0]], np.zeros((1, 1), np.uint8))
