"""Write small PASCAL VOC2011 / SBD trees in their exact on-disk layouts, with known contents.

VOC: ``<root>/TrainVal/VOCdevkit/VOC2011/{JPEGImages,SegmentationClass,SegmentationObject,
ImageSets/Segmentation}`` with palette PNGs (class / instance index per pixel, 255 on a 1-pixel
void border round every object).  SBD: ``<root>/benchmark_RELEASE/dataset/{img,cls,inst}`` with
MATLAB structs ``GTcls.Segmentation`` / ``GTinst.Segmentation`` and ``train.txt`` / ``val.txt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

from robustlabel.data.voc import VOID, write_palette_png

H, W = 16, 20


def object_maps(boxes: list[tuple[int, int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Class and instance maps with one rectangle ``(y0, y1, x0, x1, class)`` per object and a
    void ring one pixel wide round each rectangle."""
    cls = np.zeros((H, W), np.uint8)
    inst = np.zeros((H, W), np.uint8)
    for k, (y0, y1, x0, x1, c) in enumerate(boxes, start=1):
        cls[y0 - 1:y1 + 1, x0 - 1:x1 + 1] = VOID
        inst[y0 - 1:y1 + 1, x0 - 1:x1 + 1] = VOID
        cls[y0:y1, x0:x1] = c
        inst[y0:y1, x0:x1] = k
    return cls, inst


def photo(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)


@dataclass
class VocTree:
    """What was written: the paths and the expected selection."""

    root: Path
    voc: Path
    sbd: Path | None
    single_train: dict[str, int] = field(default_factory=dict)  # id -> class, VOC train single-object
    single_val: dict[str, int] = field(default_factory=dict)
    sbd_single: dict[str, int] = field(default_factory=dict)  # SBD ids that must reach training
    corrupt: str = ""


def write_voc_tree(root: Path, with_sbd: bool = True) -> VocTree:
    """A VOC2011 tree: train = 3 single-object images (classes 12 dog, 1 aeroplane, 15 person),
    1 two-object image and 1 image whose class PNG is corrupt; val = 2 single-object images
    (classes 12, 3).  SBD: 2 new single-object images (classes 5, 8), 1 two-object image, one id
    that is in VOC val (must be excluded) and one that is in VOC train (VOC's copy is kept)."""
    voc = root / "TrainVal" / "VOCdevkit" / "VOC2011"
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    tree = VocTree(root, voc, None)
    scenes = {
        "train": {"2011_000001": [(3, 10, 4, 12, 12)], "2011_000002": [(2, 6, 2, 8, 1)],
                  "2011_000003": [(4, 14, 6, 18, 15)], "2011_000004": [(2, 6, 2, 6, 7), (9, 14, 10, 18, 9)],
                  "2011_000005": [(3, 9, 3, 9, 2)]},
        "val": {"2011_000010": [(5, 11, 5, 15, 12)], "2011_000011": [(2, 12, 2, 16, 3)]},
    }
    for split, images in scenes.items():
        for seed, (image_id, boxes) in enumerate(images.items()):
            cls, inst = object_maps(boxes)
            Image.fromarray(photo(seed)).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
            write_palette_png(voc / "SegmentationClass" / f"{image_id}.png", cls)
            write_palette_png(voc / "SegmentationObject" / f"{image_id}.png", inst)
            if len(boxes) == 1:
                (tree.single_train if split == "train" else tree.single_val)[image_id] = boxes[0][4]
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(images) + "\n")
    # a corrupt class PNG: skipped and listed
    (voc / "SegmentationClass" / "2011_000005.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    tree.corrupt = "2011_000005"
    del tree.single_train["2011_000005"]
    if with_sbd:
        sbd = root / "benchmark_RELEASE" / "dataset"
        for sub in ("img", "cls", "inst"):
            (sbd / sub).mkdir(parents=True, exist_ok=True)
        sbd_scenes = {"2008_000100": [(3, 12, 3, 15, 5)], "2008_000101": [(5, 9, 5, 9, 8)],
                      "2008_000102": [(2, 6, 2, 6, 10), (9, 14, 9, 18, 11)],
                      "2011_000010": [(5, 11, 5, 15, 12)],  # in VOC val: never in training
                      "2011_000001": [(2, 5, 2, 5, 4)]}  # in VOC train: VOC's annotation (dog) is kept
        for seed, (image_id, boxes) in enumerate(sbd_scenes.items()):
            cls, inst = object_maps(boxes)
            cls[cls == VOID], inst[inst == VOID] = 0, 0  # SBD has no void label
            Image.fromarray(photo(100 + seed)).save(sbd / "img" / f"{image_id}.jpg", quality=95)
            savemat(sbd / "cls" / f"{image_id}.mat",
                    {"GTcls": {"Segmentation": cls, "Boundaries": np.zeros((len(boxes), 1), object),
                               "CategoriesPresent": np.array(sorted({b[4] for b in boxes}), np.uint8)}})
            savemat(sbd / "inst" / f"{image_id}.mat",
                    {"GTinst": {"Segmentation": inst, "Boundaries": np.zeros((len(boxes), 1), object),
                                "Categories": np.array([b[4] for b in boxes], np.uint8)[:, None]}})
        (sbd / "train.txt").write_text("2008_000100\n2008_000102\n2011_000010\n")
        (sbd / "val.txt").write_text("2008_000101\n2011_000001\n")
        tree.sbd = sbd
        tree.sbd_single = {"2008_000100": 5, "2008_000101": 8}
    return tree
