"""BraTS label conventions and conversions.

Stored labels (NIfTI files, the datastore, pseudo-labels) always use the **BraTS values**
``{0, 1, 2, 4}`` of BraTS 2018–2021:

====  ===============================================
 0    background
 1    necrotic / non-enhancing tumour core (NCR/NET)
 2    peritumoral oedema (ED)
 4    GD-enhancing tumour (ET)
====  ===============================================

Networks predict the **contiguous training classes** ``{0, 1, 2, 3}`` (4 → 3), as the
official TransBTS does.  Other conventions are converted at import, never silently:

* MSD Task01 (BrainTumour): 1 oedema → 2, 2 non-enhancing → 1, 3 enhancing → 4;
* BraTS 2023: 3 (enhancing) → 4.

Evaluation regions (reported in the order :data:`REGIONS` = WT, TC, ET)::

    WT = {1, 2, 4}      TC = {1, 4}      ET = {4}

so ``ET ⊆ TC ⊆ WT`` voxel-wise for every label map.

Every conversion works on numpy arrays and torch tensors (MONAI ``MetaTensor`` keeps its
meta data), preserves the dtype and raises :class:`LabelValueError` when the input holds a
value that the source convention does not define.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import ConvertToMultiChannelBasedOnBratsClasses, MapTransform

#: modality channel order of every 4-D image (the TransBTS order)
MODALITIES: tuple[str, ...] = ("flair", "t1ce", "t1", "t2")
#: label values of a stored BraTS label map
BRATS_LABELS: tuple[int, ...] = (0, 1, 2, 4)
#: contiguous classes the networks predict (index = class, value = BraTS label)
TRAIN_LABELS: tuple[int, ...] = (0, 1, 2, 3)
#: evaluation regions, in the order of every report
REGIONS: tuple[str, ...] = ("WT", "TC", "ET")
#: BraTS label values that make up each region
REGION_LABELS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}

#: value maps {source value: target value}; unlisted allowed values are kept
MSD_TO_BRATS: dict[int, int] = {0: 0, 1: 2, 2: 1, 3: 4}
BRATS2023_TO_BRATS: dict[int, int] = {0: 0, 1: 1, 2: 2, 3: 4}
BRATS_TO_TRAIN: dict[int, int] = {0: 0, 1: 1, 2: 2, 4: 3}
TRAIN_TO_BRATS: dict[int, int] = {v: k for k, v in BRATS_TO_TRAIN.items()}
#: label convention name -> map to BraTS values (used by the readers)
CONVENTIONS: dict[str, dict[int, int]] = {
    "brats": {v: v for v in BRATS_LABELS},
    "msd": MSD_TO_BRATS,
    "brats2023": BRATS2023_TO_BRATS,
}

# MONAI's converter gives TC, WT, ET; this permutation puts them in REGIONS order.
_MONAI_TO_REGIONS = (1, 0, 2)

Label = TypeVar("Label", np.ndarray, torch.Tensor)


class LabelValueError(ValueError):
    """A label map holds a value outside its convention."""


def label_values(label: np.ndarray | torch.Tensor) -> list[int | float]:
    """Sorted distinct values of ``label`` (python numbers)."""
    values = torch.unique(label).tolist() if torch.is_tensor(label) else np.unique(label).tolist()
    return sorted(values)


def check_label_values(label: np.ndarray | torch.Tensor, allowed: tuple[int, ...], name: str = "label") -> None:
    """Raise :class:`LabelValueError` unless every voxel of ``label`` is one of ``allowed``."""
    if torch.is_tensor(label):
        ok = bool(torch.isin(label.as_subclass(torch.Tensor), torch.tensor(allowed, device=label.device)).all())
    else:
        ok = bool(np.isin(np.asarray(label), allowed).all())
    if not ok:
        found = [v for v in label_values(label) if v not in allowed]
        raise LabelValueError(f"{name}: unexpected label values {found}; allowed values are {list(allowed)}")


def remap_labels(label: Label, mapping: Mapping[int, int], name: str = "label") -> Label:
    """Return a copy of ``label`` with every value ``k`` replaced by ``mapping[k]``.

    The keys of ``mapping`` are the only allowed input values (checked first).  The mapping
    is applied simultaneously (``{1: 2, 2: 1}`` swaps 1 and 2); dtype and, for a
    ``MetaTensor``, the meta data are kept.
    """
    check_label_values(label, tuple(mapping), name)
    out = label.clone() if torch.is_tensor(label) else np.array(label, copy=True)
    for src, dst in mapping.items():
        if src != dst:
            out[label == src] = dst
    return out


def brats_to_train(label: Label) -> Label:
    """BraTS values {0, 1, 2, 4} → training classes {0, 1, 2, 3} (4 → 3)."""
    return remap_labels(label, BRATS_TO_TRAIN, "BraTS label")


def train_to_brats(label: Label) -> Label:
    """Training classes {0, 1, 2, 3} → BraTS values {0, 1, 2, 4} (3 → 4)."""
    return remap_labels(label, TRAIN_TO_BRATS, "training-class label")


def msd_to_brats(label: Label) -> Label:
    """MSD Task01 values (1 oedema, 2 non-enhancing, 3 enhancing) → BraTS values (2, 1, 4)."""
    return remap_labels(label, MSD_TO_BRATS, "MSD Task01 label")


def brats2023_to_brats(label: Label) -> Label:
    """BraTS 2023 values (3 = enhancing) → BraTS 2018–2021 values (4 = enhancing)."""
    return remap_labels(label, BRATS2023_TO_BRATS, "BraTS 2023 label")


def brats_regions(label: Label) -> Label:
    """Boolean region masks ``(3, *S)`` in :data:`REGIONS` order (WT, TC, ET).

    ``label`` holds BraTS values and has shape ``(*S)`` or ``(1, *S)``.  The masks come from
    MONAI's :class:`~monai.transforms.ConvertToMultiChannelBasedOnBratsClasses` (which
    orders them TC, WT, ET) and are re-ordered here.
    """
    check_label_values(label, BRATS_LABELS, "BraTS label")
    channels = ConvertToMultiChannelBasedOnBratsClasses()(label)
    return channels[list(_MONAI_TO_REGIONS)]


class RemapLabelsd(MapTransform):
    """Dictionary transform: apply :func:`remap_labels` with a fixed ``mapping`` to ``keys``."""

    def __init__(self, keys: KeysCollection, mapping: Mapping[int, int], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mapping = dict(mapping)

    def __call__(self, data: Mapping[Hashable, Label]) -> dict[Hashable, Label]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = remap_labels(d[key], self.mapping, f"{key!r}")
        return d


class BratsToTrainLabelsd(RemapLabelsd):
    """Dictionary transform: BraTS values {0, 1, 2, 4} → training classes {0, 1, 2, 3}."""

    def __init__(self, keys: KeysCollection = "label", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, BRATS_TO_TRAIN, allow_missing_keys)


class TrainToBratsLabelsd(RemapLabelsd):
    """Dictionary transform: training classes {0, 1, 2, 3} → BraTS values {0, 1, 2, 4}."""

    def __init__(self, keys: KeysCollection = "pred", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, TRAIN_TO_BRATS, allow_missing_keys)
