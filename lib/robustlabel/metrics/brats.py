"""Per-case BraTS evaluation: Dice and HD95 of the regions WT, TC, ET (computed with MONAI).

For a prediction ``P`` and a reference ``G`` (BraTS label values {0, 1, 2, 4}) each region
``R ∈ {WT = {1, 2, 4}, TC = {1, 4}, ET = {4}}`` gives binary masks ``P_R``, ``G_R``
(:func:`robustlabel.data.labels.brats_regions`) and

* **Dice** ``= 2 |P_R ∩ G_R| / (|P_R| + |G_R|)``, from ``monai.metrics.DiceMetric(
  include_background=True, reduction="none", ignore_empty=False)``: both masks empty → 1.0,
  exactly one empty → 0.0;
* **HD95**, from ``monai.metrics.compute_hausdorff_distance(percentile=95, directed=False)``
  (MONAI 1.4): the surface voxels ``∂P``, ``∂G`` of each mask (``get_mask_edges``: the mask
  minus its binary erosion), the Euclidean distance (mm when ``spacing`` is given, else voxels)
  from every voxel of one surface to the nearest voxel of the other, and

  .. math:: HD95 = \\max\\big(q_{95}\\{d(a, ∂G) : a ∈ ∂P\\},\\; q_{95}\\{d(b, ∂P) : b ∈ ∂G\\}\\big)

  the larger of the two *directed* 95th percentiles (``torch.quantile``, linear
  interpolation), not a percentile of the pooled distances of both directions.
  Empty masks (MONAI returns NaN for them): both empty → **0.0** (perfect agreement); exactly
  one empty → **373.13 mm** (:data:`BRATS_WORST_HD95`, the BraTS challenge's worst-case
  distance, the diagonal of the 240 × 240 × 155 mm³ BraTS volume), so a missed or hallucinated
  region is counted as the worst case instead of being dropped from the mean.

:func:`robustlabel.metrics.statistics.summarise` reduces per-case rows to mean ± std per metric
and reports how many values went in (``n``); :func:`format_summary` and
``format_mean_std(..., with_n=True)`` print ``n`` beside every mean.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.metrics import DiceMetric, compute_hausdorff_distance

from robustlabel.data.labels import REGIONS, brats_regions

from .statistics import format_mean_std

METRICS: tuple[str, ...] = ("dice", "hd95")
#: keys of a :func:`brats_metrics` row, e.g. ``"dice_WT"``
METRIC_KEYS: tuple[str, ...] = tuple(f"{m}_{r}" for m in METRICS for r in REGIONS)
HD_PERCENTILE = 95.0
#: HD95 (mm) of a region present in exactly one of prediction and reference (BraTS convention:
#: sqrt(240² + 240² + 155²) = 373.13 mm, the diagonal of the BraTS volume)
BRATS_WORST_HD95 = 373.13


def _as_tensor(label: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    if torch.is_tensor(label):
        return label.detach().as_subclass(torch.Tensor)
    if isinstance(label, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(label))
    raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(label).__name__}")


def spacing_from_affine(affine: np.ndarray | torch.Tensor) -> tuple[float, float, float]:
    """Voxel spacing (mm) of a 4×4 affine: the norms of its first three columns."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got shape {a.shape}")
    return tuple(float(v) for v in np.linalg.norm(a[:3, :3], axis=0))  # type: ignore[return-value]


def brats_metrics(
    pred: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    spacing: Sequence[float] | None = None,
    one_empty_hd95: float = BRATS_WORST_HD95,
) -> dict[str, float]:
    """Dice and HD95 per region for one case.

    ``pred`` and ``target`` hold BraTS values, shape ``(X, Y, Z)`` or ``(1, X, Y, Z)`` (equal
    spatial shapes).  Returns ``{"dice_WT", "dice_TC", "dice_ET", "hd95_WT", "hd95_TC",
    "hd95_ET"}`` as floats (conventions in the module docstring).

    Args:
        pred, target: the label maps.
        spacing: voxel spacing in mm (``None``: distances in voxels).
        one_empty_hd95: HD95 when exactly one of the two masks of a region is empty (default the
            BraTS worst case :data:`BRATS_WORST_HD95`; ``float("nan")`` leaves such cases out of
            :func:`~robustlabel.metrics.statistics.summarise`'s mean, which hides them).

    Raises:
        ValueError: shapes differ or ``spacing`` has the wrong length.
    """
    p, g = _as_tensor(pred, "pred"), _as_tensor(target, "target")
    if p.dim() == 4 and p.shape[0] == 1:
        p = p[0]
    if g.dim() == 4 and g.shape[0] == 1:
        g = g[0]
    if p.shape != g.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(p.shape)} vs {tuple(g.shape)}")
    if spacing is not None and len(spacing) != p.dim():
        raise ValueError(f"spacing must have {p.dim()} entries, got {spacing!r}")
    p_regions = brats_regions(p)[None].float()  # (1, 3, *S)
    g_regions = brats_regions(g)[None].float()
    dice = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(p_regions, g_regions)[0]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*may result in nan/inf distance")
        hd = compute_hausdorff_distance(
            p_regions, g_regions, include_background=True, percentile=HD_PERCENTILE,
            spacing=None if spacing is None else [float(s) for s in spacing],
        )[0]
    p_any = p_regions[0].flatten(1).any(dim=1)
    g_any = g_regions[0].flatten(1).any(dim=1)
    row: dict[str, float] = {}
    for i, region in enumerate(REGIONS):
        row[f"dice_{region}"] = float(dice[i])
    for i, region in enumerate(REGIONS):
        if not p_any[i] and not g_any[i]:
            value = 0.0
        elif not (p_any[i] and g_any[i]):
            value = float(one_empty_hd95)
        else:
            value = float(hd[i])
        row[f"hd95_{region}"] = value
    return row


def format_summary(summary: Mapping[str, Mapping[str, float]]) -> str:
    """One line per metric of a :func:`~robustlabel.metrics.statistics.summarise` result:
    ``dice_WT  0.8512 ± 0.0312  (n=57)``."""
    return "\n".join(f"{k:<8} {format_mean_std(v)}  (n={int(v['n'])})" for k, v in summary.items())
