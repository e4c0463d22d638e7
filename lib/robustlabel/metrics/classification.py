"""Top-1 accuracy of classification logits.

Written by hand: a stateless one-liner on in-memory logits.  ignite's ``Accuracy`` keeps
engine state (``update`` / ``compute``), and MONAI's ``ConfusionMatrixMetric`` scores one-hot
multi-label outputs per class, neither of which the teacher–student tables need.
"""

from __future__ import annotations

import numpy as np
import torch


def accuracy(logits: torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Top-1 accuracy in percent: ``100 · mean_n [argmax_k z_nk = y_n]``.

    Args:
        logits: ``(N, C)`` scores (logits or probabilities: only the argmax counts).
        labels: ``(N,)`` integer classes.

    Raises:
        ValueError: ``N`` differs between the two, or is 0.
    """
    labels = torch.as_tensor(labels)
    if logits.shape[0] != labels.shape[0] or labels.numel() == 0:
        raise ValueError(f"need as many (>0) logits as labels, got {logits.shape[0]} and {labels.shape[0]}")
    return 100.0 * float((logits.argmax(1) == labels).float().mean())
