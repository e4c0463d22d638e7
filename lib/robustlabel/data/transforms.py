"""MONAI dictionary transforms for BraTS training, validation and inference.

Input items follow docs/CONTRACTS.md::

    {"image": <4-D modalities NIfTI (X, Y, Z, 4), channels MODALITIES>,
     "label": <3-D label NIfTI in BraTS values {0, 1, 2, 4}>,       # optional for val/infer
     "source": "final" | "pseudo", "case": <id>, ...}                 # passed through untouched

Every pipeline starts with

1. ``LoadImaged`` (nibabel) + ``EnsureChannelFirstd``: image ``(4, X, Y, Z)`` float32 and
   label ``(1, X, Y, Z)``, both ``MetaTensor`` carrying the source affine and shape (an image
   without 4 channels raises a ``ValueError`` naming the file);
2. :class:`~robustlabel.data.labels.BratsToTrainLabelsd`: label values {0, 1, 2, 4} → {0, 1, 2, 3};
3. ``NormalizeIntensityd(nonzero=True, channel_wise=True)``: for each modality ``c``,
   ``x_c ← (x_c − μ_c) / σ_c`` over the non-zero voxels of ``x_c`` (the brain mask); the zero
   background stays 0.

Training then adds the official TransBTS augmentations (Wenxuan-1119/TransBTS, ``data/BraTS.py``:
pad, random 128³ crop, random flips, random intensity change with factor 0.1):

4. ``SpatialPadd`` to at least ``roi_size`` (zeros), so volumes smaller than the crop work;
5. ``RandSpatialCropd(roi_size)``: a uniformly placed crop of exactly ``roi_size``;
6. ``RandFlipd`` on each spatial axis independently with p = 0.5;
7. per-modality intensity change, always applied: ``x_c ← x_c · (1 + s_c) + o_c`` with
   ``s_c, o_c ~ U[−0.1, 0.1]`` (``RandScaleIntensityd`` then ``RandShiftIntensityd``,
   ``channel_wise=True``; like the official code, background voxels are shifted too);
8. ``EnsureTyped``: image float32 tensor, label int64 tensor ``(1, *roi_size)``.

Validation and inference stop after step 3 (no crop); the MetaTensor meta data
(``affine``, ``original_affine``, ``spatial_shape``, ``filename_or_obj``) are kept so that
predictions can be written back in the source geometry (e.g. with ``SaveImaged`` or
:func:`robustlabel.data.nifti.write_nifti_atomic` and ``meta["affine"]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    Lambdad,
    LoadImaged,
    NormalizeIntensityd,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSpatialCropd,
    SpatialPadd,
    Transform,
)

from .labels import MODALITIES, BratsToTrainLabelsd

#: TransBTS training crop
DEFAULT_ROI: tuple[int, int, int] = (128, 128, 128)
#: TransBTS intensity change: scale by 1 ± 0.1, shift by ± 0.1 (per modality)
INTENSITY_FACTOR = 0.1
FLIP_PROB = 0.5


def _split_keys(keys: Sequence[str]) -> tuple[str, str | None]:
    if isinstance(keys, str) or not 1 <= len(keys) <= 2:
        raise ValueError(f"keys must be (image_key,) or (image_key, label_key), got {keys!r}")
    return keys[0], (keys[1] if len(keys) == 2 else None)


def load_and_normalise(keys: Sequence[str] = ("image", "label"), label_required: bool = True) -> list[Transform]:
    """Steps 1–3 above: load, channel-first, label → training classes, z-score per modality.

    With ``label_required=False`` a missing label key is allowed (unlabelled items).
    """
    image_key, label_key = _split_keys(keys)
    all_keys = [image_key] + ([label_key] if label_key else [])
    missing_ok = not label_required
    steps: list[Transform] = [
        LoadImaged(keys=all_keys, reader="NibabelReader", image_only=True, allow_missing_keys=missing_ok),
        EnsureChannelFirstd(keys=all_keys, allow_missing_keys=missing_ok),
        Lambdad(keys=image_key, func=require_modalities),
    ]
    if label_key:
        steps.append(BratsToTrainLabelsd(keys=label_key, allow_missing_keys=missing_ok))
    steps.append(NormalizeIntensityd(keys=image_key, nonzero=True, channel_wise=True))
    return steps


def require_modalities(image: torch.Tensor) -> torch.Tensor:
    """Pass ``image`` through if it has one channel per modality, else raise ``ValueError``
    naming the file (e.g. the 3-D display image given instead of ``modalities/<case>``)."""
    if image.shape[0] != len(MODALITIES):
        source = getattr(image, "meta", {}).get("filename_or_obj", "<array>")
        raise ValueError(
            f"{source}: expected a 4-D image with {len(MODALITIES)} channels {MODALITIES} "
            f"(X, Y, Z, 4 on disk), got channel-first shape {tuple(image.shape)}"
        )
    return image


def _ensure_types(image_key: str, label_key: str | None, allow_missing: bool) -> list[Transform]:
    steps: list[Transform] = [EnsureTyped(keys=image_key, dtype=torch.float32)]
    if label_key:
        steps.append(EnsureTyped(keys=label_key, dtype=torch.int64, allow_missing_keys=allow_missing))
    return steps


def train_transforms(
    roi_size: Sequence[int] = DEFAULT_ROI, keys: Sequence[str] = ("image", "label")
) -> Compose:
    """Training pipeline (steps 1–8): returns image ``(4, *roi_size)`` and label ``(1, *roi_size)``."""
    roi = tuple(int(r) for r in roi_size)
    if len(roi) != 3 or min(roi) < 1:
        raise ValueError(f"roi_size must be three positive ints, got {roi_size!r}")
    image_key, label_key = _split_keys(keys)
    if label_key is None:
        raise ValueError(f"train_transforms needs (image_key, label_key), got {keys!r}")
    both = [image_key, label_key]
    flips = [RandFlipd(keys=both, prob=FLIP_PROB, spatial_axis=axis) for axis in range(3)]
    return Compose(
        [
            *load_and_normalise(both, label_required=True),
            SpatialPadd(keys=both, spatial_size=roi, mode="constant"),
            RandSpatialCropd(keys=both, roi_size=roi, random_size=False),
            *flips,
            RandScaleIntensityd(keys=image_key, factors=INTENSITY_FACTOR, prob=1.0, channel_wise=True),
            RandShiftIntensityd(keys=image_key, offsets=INTENSITY_FACTOR, prob=1.0, channel_wise=True),
            *_ensure_types(image_key, label_key, allow_missing=False),
        ]
    )


def val_transforms(keys: Sequence[str] = ("image", "label")) -> Compose:
    """Validation pipeline (steps 1–3 + types), whole volume; the label key may be absent."""
    image_key, label_key = _split_keys(keys)
    return Compose(
        [*load_and_normalise(keys, label_required=False), *_ensure_types(image_key, label_key, allow_missing=True)]
    )


def infer_transforms(keys: Sequence[str] = ("image",)) -> Compose:
    """Inference pipeline: like :func:`val_transforms`, geometry and meta data kept."""
    return val_transforms(keys)


def original_affine(meta_tensor: torch.Tensor) -> np.ndarray:
    """The 4×4 source affine a loaded ``MetaTensor`` came from (to write outputs back)."""
    meta = getattr(meta_tensor, "meta", None)
    if not meta or "original_affine" not in meta:
        raise ValueError("expected a MetaTensor loaded by these transforms (no 'original_affine' in meta)")
    return np.asarray(meta["original_affine"], dtype=np.float64)
