"""How uncertain a teacher is about one case, and the order in which cases go to the clinician.

Per case the teacher's softmax ``p_v`` (``C`` classes, float32) over the voxels ``v`` gives

* the label ``ŷ_v = argmax_k p_{v,k}`` (stored in BraTS values {0, 1, 2, 4});
* the voxel confidence ``c_v = max_k p_{v,k}`` and entropy
  ``H_v = −Σ_k p_{v,k} ln p_{v,k}`` (nats, ``0 ≤ H_v ≤ ln C``), averaged over the predicted tumour
  ``T = {v : ŷ_v ≠ 0}`` and over the brain ``B = {v : x_v ≠ 0 for some modality}`` (the z-scored
  modalities keep the zero background);
* the case **uncertainty**, the mean normalised entropy over the predicted tumour:

  .. math:: u = \\begin{cases} \\frac{1}{|T|}\\sum_{v∈T} H_v / \\ln C ∈ [0, 1], & T ≠ ∅ \\\\
                                1 \\;(\\text{maximally uncertain}), & T = ∅ \\end{cases}

An empty predicted tumour counts as maximally uncertain: a BraTS case always has a tumour, so a
teacher that finds none has failed on it, and that case needs the clinician most.  (The mean
entropy over the whole brain would rank such a complete miss *last*: the brain is mostly
confidently predicted background, about 0.1 against about 0.8 for an honestly uncertain
tumour.)  ``uncertainty_region`` says which case applied (``"tumour"`` or ``"empty"``).
Cases are offered most uncertain first (:func:`rank_by_uncertainty`).

MONAI has no such score; MONAI Label's ``EpistemicScoring`` averages the entropy of several
dropout samples over the *whole* volume, which is the brain-wide mean ruled out above, and needs
several forward passes per case.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from robustlabel.data.labels import BRATS_LABELS, train_to_brats

#: the uncertainty of a case whose predicted tumour is empty (module docstring)
EMPTY_TUMOUR_UNCERTAINTY = 1.0
#: ``uncertainty_region`` values: where the uncertainty was measured
TUMOUR_REGION, EMPTY_REGION = "tumour", "empty"


def voxel_entropy(probs: torch.Tensor) -> torch.Tensor:
    """``H_v = −Σ_k p_{v,k} ln p_{v,k}`` in nats (``0 · ln 0 = 0``) of a softmax ``(C, *S)``; shape ``S``."""
    return torch.special.entr(probs).sum(dim=0)


def region_confidence(max_prob: torch.Tensor, entropy: torch.Tensor, mask: torch.Tensor) -> dict[str, float | int | None]:
    """``{"voxels": |M|, "mean_max_prob": mean of c_v over M, "mean_entropy": mean of H_v over M}``
    for the voxels of ``mask`` ``M``; both means are ``None`` when ``M`` is empty."""
    count = int(mask.sum())
    if count == 0:
        return {"voxels": 0, "mean_max_prob": None, "mean_entropy": None}
    weights = mask.to(max_prob.dtype)
    return {
        "voxels": count,
        "mean_max_prob": float((max_prob * weights).sum() / count),
        "mean_entropy": float((entropy * weights).sum() / count),
    }


def tumour_uncertainty(mean_tumour_entropy: float | None, n_classes: int) -> float:
    """``u``: the mean tumour entropy divided by ``ln C``, or :data:`EMPTY_TUMOUR_UNCERTAINTY`
    when there is no predicted tumour (``None``).

    Raises:
        ValueError: for ``n_classes < 2`` (``ln C`` would not be positive).
    """
    if n_classes < 2:
        raise ValueError(f"the uncertainty needs at least 2 classes, got {n_classes}")
    if mean_tumour_entropy is None:
        return EMPTY_TUMOUR_UNCERTAINTY
    return mean_tumour_entropy / math.log(n_classes)


def summarise_prediction(probs: torch.Tensor, image: torch.Tensor) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One case: ``probs`` ``(C, *S)`` softmax, ``image`` ``(M, *S)`` z-scored modalities.

    Returns:
        ``(label in BraTS values (uint8, *S), voxel confidence c_v (float32, *S), stats)`` with
        ``stats`` = voxel counts per BraTS value, confidence over tumour and brain
        (:func:`region_confidence`), ``max_entropy = ln C``, the ``uncertainty`` ``u``
        (:func:`tumour_uncertainty`) and ``uncertainty_region``.
    """
    n_classes = probs.shape[0]
    max_prob, classes = probs.max(dim=0)
    entropy = voxel_entropy(probs)
    tumour = classes != 0
    brain = (image != 0).any(dim=0)
    counts = torch.bincount(classes.flatten(), minlength=n_classes).tolist()
    confidence = {"tumour": region_confidence(max_prob, entropy, tumour), "brain": region_confidence(max_prob, entropy, brain)}
    tumour_entropy = confidence["tumour"]["mean_entropy"]
    stats = {
        "voxel_counts": {str(value): int(counts[i]) for i, value in enumerate(BRATS_LABELS[:n_classes])},
        "confidence": confidence,
        "entropy_unit": "nats",
        "max_entropy": math.log(n_classes),
        "uncertainty": tumour_uncertainty(tumour_entropy, n_classes),
        "uncertainty_region": EMPTY_REGION if tumour_entropy is None else TUMOUR_REGION,
    }
    label = train_to_brats(classes.to(torch.uint8).cpu().numpy())
    return label, max_prob.float().cpu().numpy(), stats


def rank_by_uncertainty(infos: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, float]]:
    """``[(case, u), …]`` from ``{case: stats with "uncertainty"}`` (e.g. pseudo-label sidecars),
    most uncertain first; equal ``u`` in case order."""
    return sorted(((c, float(i["uncertainty"])) for c, i in infos.items()), key=lambda t: (-t[1], t[0]))
