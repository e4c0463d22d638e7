"""The four FCN segmentation scores (Long et al. 2015, Sec. 5) from a void-aware confusion matrix.

For a ``K``-class confusion matrix ``n`` with ``n_ij`` = number of pixels of true class ``i``
predicted as class ``j`` and ``t_i = Σ_j n_ij`` (pixels of class ``i``):

.. math::
    \\text{pixel accuracy} = \\frac{Σ_i n_{ii}}{Σ_i t_i}, \\qquad
    \\text{mean accuracy (mean recall)} = \\frac{1}{K'} Σ_i \\frac{n_{ii}}{t_i},

    \\text{mean IU} = \\frac{1}{K'} Σ_i \\frac{n_{ii}}{t_i + Σ_j n_{ji} - n_{ii}}, \\qquad
    \\text{f.w. IU} = \\frac{1}{Σ_k t_k} Σ_i t_i \\frac{n_{ii}}{t_i + Σ_j n_{ji} - n_{ii}},

where the means run over the ``K'`` classes whose ratio is defined (a class that is neither
present nor predicted is left out, as ``numpy.nanmean`` does in the FCN reference scorer).
Pixels whose true label is outside ``[0, K)`` — PASCAL VOC's void ``255`` — are not counted.

MONAI's ``ConfusionMatrixMetric`` / ``MeanIoU`` work on one-hot channels without a void label
and give per-class binary scores, not the FCN's pooled matrix; hence this small module.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

#: names of the four scores, in the order of the thesis' Table 2
SEGMENTATION_SCORES = ("overall_acc", "mean_recall", "fw_iu", "mean_iu")


def confusion_matrix(target: torch.Tensor | np.ndarray, prediction: torch.Tensor | np.ndarray,
                     n_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts, rows = true class, columns = predicted class.

    Args:
        target: integer labels of any shape; values outside ``[0, n_classes)`` (e.g. void 255)
            are ignored.
        prediction: integer predictions of the same shape, all in ``[0, n_classes)``.
        n_classes: ``K``.

    Raises:
        ValueError: for mismatched shapes, ``n_classes < 1`` or a prediction outside ``[0, K)``.
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    t = torch.as_tensor(target).reshape(-1).long()
    p = torch.as_tensor(prediction).reshape(-1).long().to(t.device)
    if t.shape != p.shape:
        raise ValueError(f"target and prediction differ in size: {tuple(torch.as_tensor(target).shape)} vs "
                         f"{tuple(torch.as_tensor(prediction).shape)}")
    keep = (t >= 0) & (t < n_classes)
    t, p = t[keep], p[keep]
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= n_classes):
        raise ValueError(f"predictions must lie in [0, {n_classes}), found [{int(p.min())}, {int(p.max())}]")
    counts = torch.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).cpu().numpy().astype(np.int64)


def segmentation_scores(confusion: np.ndarray) -> dict[str, float]:
    """The four FCN scores of a confusion matrix (see the module docstring).

    Raises:
        ValueError: for a non-square matrix or one without any counted pixel.
    """
    hist = np.asarray(confusion, dtype=np.float64)
    if hist.ndim != 2 or hist.shape[0] != hist.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {hist.shape}")
    total = hist.sum()
    if total <= 0:
        raise ValueError("confusion matrix is empty: no labelled (non-void) pixel was counted")
    diag = np.diag(hist)
    true = hist.sum(1)
    union = true + hist.sum(0) - diag
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(true > 0, diag / np.where(true > 0, true, 1), np.nan)
        iu = np.where(union > 0, diag / np.where(union > 0, union, 1), np.nan)
    freq = true / total
    present = freq > 0
    return {
        "overall_acc": float(diag.sum() / total),
        "mean_recall": float(np.nanmean(recall)),
        "fw_iu": float((freq[present] * iu[present]).sum()),
        "mean_iu": float(np.nanmean(iu)),
    }


def format_scores(scores: Mapping[str, float], decimals: int = 3) -> str:
    """``"overall_acc=0.901 mean_recall=0.850 ..."`` for logs and progress bars."""
    return " ".join(f"{k}={scores[k]:.{decimals}f}" for k in SEGMENTATION_SCORES if k in scores)
