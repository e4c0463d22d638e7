"""Per-case BraTS evaluation: Dice and HD95 of the regions WT, TC, ET (computed with MONAI).

For a prediction ``P`` and a reference ``G`` (BraTS label values {0, 1, 2, 4}) each region
``R ∈ {WT = {1, 2, 4}, TC = {1, 4}, ET = {4}}`` gives binary masks ``P_R``, ``G_R``
(:func:`robustlabel.data.labels.brats_regions`) and

* **Dice** ``= 2 |P_R ∩ G_R| / (|P_R| + |G_R|)``, from ``monai.metrics.DiceMetric(
  include_background=True, reduction="none", ignore_empty=False)``: both masks empty → 1.0,
  exactly one empty → 0.0;
* **HD95** = the symmetric 95th-percentile Hausdorff distance between the mask surfaces, from
  ``monai.metrics.compute_hausdorff_distance(percentile=95)``: the 95th percentile of the pooled
  surface-to-surface distances of both directions, in mm when ``spacing`` is given (else in
  voxels).  Conventions for empty masks (MONAI itself returns NaN for both cases):
  both empty → **0.0** (perfect agreement), exactly one empty → **NaN** (undefined; the BraTS
  2021+ challenge scripts substitute 373.13 mm instead: pass ``one_empty_hd95=373.13`` for
  that).

:func:`summarise` reduces per-case rows to mean ± std per metric, ignoring NaN values and
reporting how many finite values went in (``n``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from monai.metrics import DiceMetric, compute_hausdorff_distance

from robustlabel.data.labels import REGIONS, brats_regions

METRICS: tuple[str, ...] = ("dice", "hd95")
#: keys of a :func:`brats_metrics` row, e.g. ``"dice_WT"``
METRIC_KEYS: tuple[str, ...] = tuple(f"{m}_{r}" for m in METRICS for r in REGIONS)
HD_PERCENTILE = 95.0


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
    one_empty_hd95: float = float("nan"),
) -> dict[str, float]:
    """Dice and HD95 per region for one case.

    ``pred`` and ``target`` hold BraTS values, shape ``(X, Y, Z)`` or ``(1, X, Y, Z)`` (equal
    spatial shapes).  Returns ``{"dice_WT", "dice_TC", "dice_ET", "hd95_WT", "hd95_TC",
    "hd95_ET"}`` as floats (conventions in the module docstring).
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


def summarise(rows: Iterable[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """``{key: {"mean", "std", "n"}}`` over ``rows`` for each key of :data:`METRIC_KEYS` present.

    ``std`` is the sample standard deviation (ddof = 1, as in the paper tables and
    :mod:`robustlabel.reporting`); NaN values are left out and ``n`` counts the finite values
    used (``mean`` is NaN when ``n == 0``, ``std`` when ``n < 2``).  Other keys of the
    rows (e.g. ``"case"``) are ignored.
    """
    rows = list(rows)
    summary: dict[str, dict[str, float]] = {}
    for key in METRIC_KEYS:
        if not any(key in row for row in rows):
            continue
        values = np.array([float(row[key]) for row in rows if key in row], dtype=np.float64)
        finite = values[~np.isnan(values)]
        n = int(finite.size)
        summary[key] = {
            "mean": float(finite.mean()) if n else math.nan,
            "std": float(finite.std(ddof=1)) if n > 1 else math.nan,
            "n": n,
        }
    return summary


def format_summary(summary: Mapping[str, Mapping[str, float]]) -> str:
    """One line per metric: ``dice_WT  0.8512 ± 0.0312  (n=57)``."""
    return "\n".join(f"{k:<8} {format_mean_std(v)}  (n={int(v['n'])})" for k, v in summary.items())


def format_mean_std(stats: Mapping[str, float] | None, decimals: int = 4) -> str:
    """``"0.8512 ± 0.0312"``; only the mean when there is no std (n < 2); ``"n/a"`` without values."""
    if not stats or not math.isfinite(stats["mean"]):
        return "n/a"
    if not math.isfinite(stats.get("std", math.nan)):
        return f"{stats['mean']:.{decimals}f}"
    return f"{stats['mean']:.{decimals}f} ± {stats['std']:.{decimals}f}"
