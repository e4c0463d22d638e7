"""Held-out evaluation of a checkpoint: per-case WT/TC/ET Dice and HD95
(:func:`robustlabel.metrics.brats_metrics`, in mm from the affine; a region present in exactly
one of prediction and truth scores the BraTS worst case, 373.13 mm) and their mean ± std with
the number of cases ``n``.  Any engine checkpoint works: ``best.pt`` or ``last.pt``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tqdm import tqdm

from ..data.labels import train_to_brats
from ..data.transforms import val_transforms
from ..metrics import brats_metrics, spacing_from_affine, summarise
from .checkpoint import load_network
from ..machine import resolve_device
from .config import amp_dtype_for
from .datalist import check_datalist, make_loader
from .inference import make_inferer, predict_probabilities
from .pseudo_label import read_geometry


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    items: Sequence[Mapping[str, Any]],
    *,
    device: str = "auto",
    num_workers: int = 2,
    amp: bool = True,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Predict every labelled item with the checkpoint's network and score it.

    Returns ``(rows, summary)``: one row ``{"case", "dice_WT", …, "hd95_ET"}`` per item and
    :func:`~robustlabel.metrics.summarise`'s ``{metric: {"mean", "std", "n"}}``.
    """
    items = check_datalist(items, "evaluation")
    dev = resolve_device(device)
    network, config = load_network(checkpoint, dev)
    inferer = make_inferer(config.resolved_roi_size, config.sw_batch_size, config.sw_overlap)
    amp_dtype = amp_dtype_for(dev, amp, config.amp_dtype)
    loader = make_loader(items, val_transforms(), batch_size=1, shuffle=False, num_workers=num_workers, seed=0)
    rows = []
    for item, batch in zip(items, tqdm(loader, desc="evaluate", unit="case", disable=not progress)):
        image, label = batch["image"], batch["label"]
        probs = predict_probabilities(network, image.to(dev), inferer, amp_dtype)
        pred = train_to_brats(probs[0].argmax(dim=0).to(torch.uint8).cpu())
        target = train_to_brats(label[0, 0].as_tensor().to(torch.uint8))
        spacing = spacing_from_affine(read_geometry(item["label"])[1])
        rows.append({"case": item["case"], **brats_metrics(pred, target, spacing=spacing)})
    return rows, summarise(rows)
