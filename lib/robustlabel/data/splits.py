"""Labelled / unlabelled / validation splits of an image training set, and the training set of
one teacher–student row (true labels and pseudo-labels, each sample flagged by its source).

For a training set of ``n`` images the split is three disjoint sorted index sets::

    V = order[:n_val]                     n_val = round(val_fraction · n)
    L = order[n_val : n_val + n_lab]      n_lab = round(labelled_fraction · (n − n_val))
    U = order[n_val + n_lab :]

with ``order`` a permutation drawn from ``numpy.random.default_rng(seed)``.  The rows of Cui et
al.'s Table 1 then train on ``L`` (teacher, lower bound), ``L`` + ``U`` with pseudo-labels
(students) or ``L`` + ``U`` with true labels (upper bound): :func:`make_training_set`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from .studies import FINAL, PSEUDO


@dataclass(frozen=True)
class DataSplit:
    """Disjoint index sets of a training set: labelled, unlabelled (for pseudo-labels), validation."""

    labelled: np.ndarray
    unlabelled: np.ndarray
    val: np.ndarray


def split_indices(n: int, labelled_fraction: float, val_fraction: float, seed: int) -> DataSplit:
    """Random split of ``range(n)``: ``round(val_fraction·n)`` validation samples, then
    ``round(labelled_fraction·(n − n_val))`` of the rest labelled, the others unlabelled.

    Deterministic in ``seed``; every part is sorted.

    Args:
        n: size of the training set.
        labelled_fraction: share ``p`` of the non-validation samples that keep their labels.
        val_fraction: share of all samples held out for validation.
        seed: seed of the permutation.

    Raises:
        ValueError: ``p`` outside ``(0, 1]``, ``val_fraction`` outside ``[0, 1)``, or a split
            that leaves no labelled sample.
    """
    if not 0 < labelled_fraction <= 1 or not 0 <= val_fraction < 1:
        raise ValueError(
            f"need 0 < labelled_fraction <= 1 and 0 <= val_fraction < 1, got {labelled_fraction}, {val_fraction}"
        )
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(val_fraction * n))
    n_lab = int(round(labelled_fraction * (n - n_val)))
    if n_lab < 1:
        raise ValueError(f"labelled_fraction={labelled_fraction} of {n - n_val} training samples leaves none labelled")
    return DataSplit(
        labelled=np.sort(order[n_val : n_val + n_lab]), unlabelled=np.sort(order[n_val + n_lab :]), val=np.sort(order[:n_val])
    )


@dataclass(frozen=True)
class TrainingSet:
    """Images ``(N, 3, H, W)`` uint8, labels ``(N,)`` int64 and the per-sample ``is_pseudo`` flag.

    Raises:
        ValueError: images that are not a 4-D uint8 tensor, labels or flags of another length,
            or flags that are not bool.
    """

    images: torch.Tensor
    labels: torch.Tensor
    is_pseudo: torch.Tensor

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be a uint8 tensor (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if tuple(self.labels.shape) != (n,) or tuple(self.is_pseudo.shape) != (n,):
            raise ValueError(
                f"{n} images need labels and is_pseudo of shape ({n},), got {tuple(self.labels.shape)} "
                f"and {tuple(self.is_pseudo.shape)}"
            )
        if self.is_pseudo.dtype != torch.bool:
            raise ValueError(f"is_pseudo must be a bool tensor, got {self.is_pseudo.dtype}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def make_training_set(
    images: np.ndarray | torch.Tensor,
    true_labels: np.ndarray | torch.Tensor,
    labelled: np.ndarray,
    unlabelled: np.ndarray | None = None,
    pseudo_labels: np.ndarray | torch.Tensor | None = None,
) -> TrainingSet:
    """The training set of one row of the teacher–student table.

    * teacher / lower bound: ``labelled`` only, true labels;
    * student: ``labelled`` with true labels + ``unlabelled`` with ``pseudo_labels`` (``is_pseudo``);
    * upper bound: ``labelled`` + ``unlabelled``, all with true labels (``pseudo_labels=None``).

    ``pseudo_labels[j]`` belongs to ``unlabelled[j]``.

    Raises:
        ValueError: as many pseudo-labels as unlabelled indices are needed.
    """
    images = torch.as_tensor(images)
    true_labels = torch.as_tensor(true_labels, dtype=torch.int64)
    labelled = torch.as_tensor(labelled, dtype=torch.int64)
    unlabelled = torch.as_tensor(np.asarray([] if unlabelled is None else unlabelled), dtype=torch.int64)
    if pseudo_labels is not None:
        pseudo_labels = torch.as_tensor(pseudo_labels, dtype=torch.int64)
        if pseudo_labels.shape != unlabelled.shape:
            raise ValueError(f"{unlabelled.numel()} unlabelled samples but {pseudo_labels.numel()} pseudo-labels")
        extra_labels, extra_flag = pseudo_labels, torch.ones_like(unlabelled, dtype=torch.bool)
    else:
        extra_labels, extra_flag = true_labels[unlabelled], torch.zeros_like(unlabelled, dtype=torch.bool)
    index = torch.cat([labelled, unlabelled])
    return TrainingSet(
        images=images[index],
        labels=torch.cat([true_labels[labelled], extra_labels]),
        is_pseudo=torch.cat([torch.zeros_like(labelled, dtype=torch.bool), extra_flag]),
    )


class AugmentedImageDataset(Dataset):
    """Items ``{"image": float (3, H, W), "label": int64, "source": "final" | "pseudo"}`` of a :class:`TrainingSet`.

    Args:
        data: the images, labels and source flags.
        transform: applied to each uint8 image (e.g. :func:`~robustlabel.data.cifar_transforms.image_transform`).
    """

    def __init__(self, data: TrainingSet, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.data = data
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.transform(self.data.images[i]), "label": self.data.labels[i],
                "source": PSEUDO if self.data.is_pseudo[i] else FINAL}
