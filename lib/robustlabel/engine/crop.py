"""Crop to the brain before the sliding window, paste the prediction back (nnU-Net style).

BraTS volumes are skull-stripped: outside the brain every modality is exactly 0 (and stays 0
after the z-scoring of :func:`robustlabel.data.transforms.infer_transforms`, which normalises
non-zero voxels only).  The brain's bounding box is typically under half of a 240×240×155
volume, so running the sliding window only on

.. math:: \\mathcal{B} = \\text{bbox}\\{v : x_{c,v} ≠ 0 \\text{ for some modality } c\\} ⊕ m

(the smallest box holding every non-zero voxel, grown by ``m`` voxels on each side and clipped to
the volume; MONAI's :func:`~monai.transforms.utils.generate_spatial_bounding_box`, the box of
``CropForeground``) cuts the windows, and with them the time, roughly in proportion (in steps of
whole windows: ``scripts/bench_crop.py`` counts them).  Outside
``𝓑`` the result is background with probability 1:

.. math:: p_{v} = \\begin{cases} \\text{predictor}(x_{𝓑})_{v} & v ∈ 𝓑 \\\\ e_0 & v ∉ 𝓑 \\end{cases}

Inside ``𝓑`` the windows are placed relative to the box, not to the volume, so the values differ
slightly from the uncropped sliding window (different window positions and Gaussian blending
weights); the margin keeps every foreground voxel at least ``m`` voxels inside the box.

A batch ``(B, C, *S)`` (the pool stacks volumes of equal shape) is cropped to the union of its
volumes' boxes, so it still runs as one batch.

**Aligned crop** (``windows=(roi_size, overlap)``, :func:`align_to_windows`): the box is grown so
that every window of the sliding window on the crop is also a window of the whole-volume sliding
window (starts on its grid of step ``s = ⌊r(1 − overlap)⌋``, last window on a grid point or on the
volume's end).  Then a voxel farther than ``r − s`` (the window overlap) from every box face that
is not a volume face is covered by exactly the same windows, with the same Gaussian weights, as
without the crop, and gets the same probabilities up to float rounding; with a margin ≥ ``r − s``
that holds for every non-zero voxel.  The price is a larger box (up to one step per side).

**A volume of zeros** (every voxel of every modality 0, for the whole batch) has an empty box:
the predictor is **not run** and the result is background everywhere.  That needs the number of
classes; without it (``num_classes=None``) the predictor runs once on the whole volume instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.transforms.utils import generate_spatial_bounding_box

#: voxels added on each side of the non-zero bounding box (TransBTS downsamples ×8; 8 voxels keep
#: at least one coarse cell of context around the brain)
DEFAULT_MARGIN = 8

Box = tuple[slice, ...]


def foreground_box(image: torch.Tensor, margin: int | Sequence[int] = DEFAULT_MARGIN) -> Box | None:
    """Spatial slices of the non-zero bounding box plus ``margin``, clipped to the volume.

    Args:
        image: a case ``(C, *S)``; a voxel is foreground when any channel is non-zero (for a
            batch ``(B, C, *S)`` pass ``images.reshape(-1, *S)``: the union of the volumes' boxes).
        margin: voxels added on each side (one value or one per spatial axis).

    Returns:
        one ``slice`` per spatial axis, or ``None`` when no voxel is non-zero.

    Raises:
        ValueError: ``image`` with fewer than 2 dimensions, or a negative margin.
    """
    if image.dim() < 2:
        raise ValueError(f"image must be (C, *spatial), got shape {tuple(image.shape)}")
    start, end = generate_spatial_bounding_box(
        image, select_fn=lambda x: x != 0, channel_indices=None, margin=margin, allow_smaller=True
    )
    if any(e <= s for s, e in zip(start, end)):
        return None
    return tuple(slice(int(s), int(e)) for s, e in zip(start, end))


def align_to_windows(
    box: Box, spatial_shape: Sequence[int], roi_size: Sequence[int], overlap: float
) -> Box:
    """Grow ``box`` to the window grid of MONAI's sliding window over the whole volume.

    Per axis of size ``n`` with window ``r`` and step ``s = max(⌊r(1 − overlap)⌋, 1)``: the start
    goes down to a multiple of ``s``; the end goes up to ``start + r + k s`` (the smallest such
    ``k ≥ 0``), or to ``n`` when that passes the volume (then the start goes down to a grid point
    at most ``n − r``); an axis with ``n ≤ r`` is kept whole.

    Raises:
        ValueError: lengths of ``box``, ``spatial_shape`` and ``roi_size`` differ.
    """
    if not len(box) == len(spatial_shape) == len(roi_size):
        raise ValueError(f"box {box}, shape {tuple(spatial_shape)} and roi {tuple(roi_size)} need one entry per axis")
    out = []
    for sl, n, r in zip(box, (int(v) for v in spatial_shape), (int(v) for v in roi_size)):
        if n <= r:
            out.append(slice(0, n))
            continue
        step = max(int(r * (1 - float(overlap))), 1)
        start = (sl.start // step) * step
        stop = start + r + -(-(max(sl.stop, start + r) - start - r) // step) * step
        if stop >= n:
            stop = n
            start = min(start, ((n - r) // step) * step)
        out.append(slice(start, stop))
    return tuple(out)


def paste(crop: torch.Tensor, box: Box | None, spatial_shape: Sequence[int]) -> torch.Tensor:
    """A full-size probability map ``(B, K, *spatial_shape)``: ``crop`` ``(B, K, *box)`` inside
    ``box``, class 0 with probability 1 elsewhere (everywhere when ``box`` is ``None``, with
    ``K = crop.shape[1]``).

    Raises:
        ValueError: ``crop``'s spatial shape does not match ``box``.
    """
    spatial_shape = tuple(int(s) for s in spatial_shape)
    out = crop.new_zeros((crop.shape[0], crop.shape[1], *spatial_shape))
    out[:, 0] = 1
    if box is None:
        return out
    expected = tuple(s.stop - s.start for s in box)
    if tuple(crop.shape[2:]) != expected:
        raise ValueError(f"crop of spatial shape {tuple(crop.shape[2:])} does not fit the box {expected}")
    out[(slice(None), slice(None), *box)] = crop
    return out


def predict_in_foreground(
    predictor: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    margin: int | Sequence[int] = DEFAULT_MARGIN,
    num_classes: int | None = None,
    windows: tuple[Sequence[int], float] | None = None,
) -> torch.Tensor:
    """Run ``predictor`` on the foreground box of ``images`` ``(B, C, *S)`` and paste its
    ``(B, K, *box)`` probabilities into a full-size ``(B, K, *S)`` map (see the module docstring).

    Args:
        predictor: maps ``(B, C, *s)`` images to ``(B, K, *s)`` probabilities.
        margin: voxels added on each side of the non-zero box.
        num_classes: ``K``; lets an all-zero batch skip the predictor (background everywhere).
        windows: ``(roi_size, overlap)`` of the predictor's sliding window: align the box to its
            whole-volume window grid (:func:`align_to_windows`); ``None``: the plain box.

    Raises:
        ValueError: ``images`` is not ``(B, C, *S)``.
    """
    if images.dim() < 3:
        raise ValueError(f"images must be (B, C, *spatial), got shape {tuple(images.shape)}")
    spatial = tuple(images.shape[2:])
    box = foreground_box(images.reshape(-1, *spatial), margin)
    if box is None:
        if num_classes is None:
            return predictor(images)  # documented: without K the network runs on the whole volume
        empty = torch.zeros((images.shape[0], int(num_classes), *([0] * len(spatial))), device=images.device)
        return paste(empty, None, spatial)
    if windows is not None:
        box = align_to_windows(box, spatial, windows[0], windows[1])
    if all(s.start == 0 and s.stop == n for s, n in zip(box, spatial)):
        return predictor(images)  # the box is the whole volume: nothing to crop
    return paste(predictor(images[(slice(None), slice(None), *box)]), box, spatial)
