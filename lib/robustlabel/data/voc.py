"""PASCAL VOC2011 segmentation (+ optional SBD) for the thesis' PASCAL experiments (Ju 2017, §5.2–5.3).

* **Layouts.** VOC2011 as the official trainval tar extracts (``TrainVal/VOCdevkit/VOC2011`` with
  ``JPEGImages/*.jpg``, ``SegmentationClass/*.png``, ``SegmentationObject/*.png``,
  ``ImageSets/Segmentation/{train,val}.txt``); :func:`find_voc2011` also accepts
  ``VOCdevkit/VOC2011`` or the ``VOC2011`` folder itself.  The PNGs are palette images whose
  index is the class (0 background, 1–20) or the instance (1…n) and 255 marks void borders.
  SBD (Hariharan et al. 2011) is ``benchmark_RELEASE/dataset`` with ``img/*.jpg``,
  ``cls/*.mat`` (``GTcls.Segmentation``), ``inst/*.mat`` (``GTinst.Segmentation``) and
  ``{train,val}.txt``; it has no void label.
* **Selection.** Only images with exactly one object in the instance map are kept
  (:func:`load_voc_single_objects`); images are subsampled by ``subsample`` (4 in the thesis):
  bilinear (anti-aliased) for the photo, nearest for the label maps.
* **Corruptions** act per object (instance) on ``{instance id: class}`` maps and are seeded
  by the caller's ``numpy.random.Generator``: :func:`unsegment_objects`,
  :func:`randomise_object_labels`, :func:`binarise_objects`, :func:`false_positive_objects`,
  :func:`categorise_objects`; :func:`paint_objects` turns the result into a label map that keeps
  every void pixel at :data:`VOID`.
* :func:`write_synthetic_voc` writes a tiny VOC2011/SBD tree for ``--quick`` runs and tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: the 20 VOC classes; class index = position + 1 (0 is background)
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
BACKGROUND = 0
VOID = 255
#: the thesis' four folds of fine-tuning categories (§5.3.1), as VOC class indices
FOLDS: dict[int, tuple[int, ...]] = {f: tuple(range(5 * f - 4, 5 * f + 1)) for f in (1, 2, 3, 4)}
#: VOC's own super-categories (VOC2011 devkit documentation)
SUPER_CATEGORIES: dict[str, tuple[str, ...]] = {
    "person": ("person",),
    "animal": ("bird", "cat", "cow", "dog", "horse", "sheep"),
    "vehicle": ("aeroplane", "bicycle", "boat", "bus", "car", "motorbike", "train"),
    "indoor": ("bottle", "chair", "diningtable", "pottedplant", "sofa", "tvmonitor"),
}
SPLITS = ("train", "val")


def class_index(name: str) -> int:
    """VOC class index (1–20) of a class name."""
    try:
        return VOC_CLASSES.index(name) + 1
    except ValueError:
        raise ValueError(f"unknown VOC class {name!r}; valid: {', '.join(VOC_CLASSES)}") from None


def pretraining_classes(fold: int) -> tuple[int, ...]:
    """The 15 classes outside ``fold`` (the pre-training categories of §5.3)."""
    if fold not in FOLDS:
        raise ValueError(f"fold must be one of {sorted(FOLDS)}, got {fold}")
    return tuple(c for c in range(1, 21) if c not in FOLDS[fold])


# --------------------------------------------------------------------------- layouts
def find_voc2011(path: str | os.PathLike) -> Path:
    """The ``VOC2011`` folder under ``path``: ``path`` itself, ``path/VOC2011``,
    ``path/VOCdevkit/VOC2011`` or ``path/TrainVal/VOCdevkit/VOC2011``.

    Raises:
        FileNotFoundError: naming ``path`` when no candidate has ``JPEGImages`` and
            ``ImageSets/Segmentation``, or naming the missing ``SegmentationClass`` /
            ``SegmentationObject`` folder.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"VOC2011 devkit folder not found: {path}")
    candidates = [path, path / "VOC2011", path / "VOCdevkit" / "VOC2011", path / "TrainVal" / "VOCdevkit" / "VOC2011"]
    for root in candidates:
        if (root / "JPEGImages").is_dir() and (root / "ImageSets" / "Segmentation").is_dir():
            for sub in ("SegmentationClass", "SegmentationObject"):
                if not (root / sub).is_dir():
                    raise FileNotFoundError(f"{root / sub} is missing: the VOC2011 devkit needs {sub}/ "
                                            "(single-object selection reads the instance maps)")
            return root
    raise FileNotFoundError(f"no VOC2011 devkit under {path} (looked for JPEGImages/ and ImageSets/Segmentation/ in "
                            + ", ".join(str(c) for c in candidates) + ")")


def find_sbd(path: str | os.PathLike) -> Path:
    """The SBD ``dataset`` folder (``img/``, ``cls/``, ``inst/``): ``path`` or ``path/dataset``
    or ``path/benchmark_RELEASE/dataset``.

    Raises:
        FileNotFoundError: naming ``path`` when none has the three folders.
    """
    path = Path(path)
    for root in (path, path / "dataset", path / "benchmark_RELEASE" / "dataset"):
        if all((root / sub).is_dir() for sub in ("img", "cls", "inst")):
            return root
    raise FileNotFoundError(f"no SBD dataset under {path} (needs img/, cls/ and inst/, as in benchmark_RELEASE/dataset)")


def read_ids(path: Path) -> list[str]:
    """Image ids of an ``ImageSets`` / SBD list file, one per line."""
    if not path.is_file():
        raise FileNotFoundError(f"image list not found: {path}")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def read_index_png(path: str | os.PathLike) -> np.ndarray:
    """The per-pixel palette indices of a VOC label PNG as ``uint8 (H, W)``.

    Raises:
        ValueError: when the PNG is not a palette (``P``) or grey (``L``) image.
        OSError: when the file cannot be decoded.
    """
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if image.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette PNG, got mode {image.mode}")
        return np.array(image, dtype=np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An RGB photo as ``uint8 (H, W, 3)``."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return np.array(image.convert("RGB"), dtype=np.uint8)


def read_sbd_maps(root: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """SBD class and instance maps (``GTcls.Segmentation``, ``GTinst.Segmentation``) of one image."""
    from scipy.io import loadmat

    cls = loadmat(root / "cls" / f"{image_id}.mat")["GTcls"][0]["Segmentation"][0]
    inst = loadmat(root / "inst" / f"{image_id}.mat")["GTinst"][0]["Segmentation"][0]
    return np.asarray(cls, dtype=np.uint8), np.asarray(inst, dtype=np.uint8)


# --------------------------------------------------------------------------- objects and corruptions
def object_classes(class_map: np.ndarray, instance_map: np.ndarray) -> dict[int, int]:
    """``{instance id: VOC class}`` of every object (instance ids ≠ 0, 255), the class being the
    most frequent non-void class under the instance.

    Raises:
        ValueError: when the maps differ in shape.
    """
    if class_map.shape != instance_map.shape:
        raise ValueError(f"class map {class_map.shape} and instance map {instance_map.shape} differ in shape")
    objects = {}
    for inst in np.unique(instance_map):
        if inst in (BACKGROUND, VOID):
            continue
        classes = class_map[(instance_map == inst) & (class_map != VOID) & (class_map != BACKGROUND)]
        if classes.size:
            objects[int(inst)] = int(np.bincount(classes).argmax())
    return objects


def paint_objects(class_map: np.ndarray, instance_map: np.ndarray, labels: Mapping[int, int]) -> np.ndarray:
    """A training label map: background 0, object ``i`` painted ``labels[i]``, void kept at 255.

    Pixels that are void in ``class_map`` stay void whatever their object's label.
    """
    out = np.zeros(class_map.shape, dtype=np.uint8)
    for inst, label in labels.items():
        out[instance_map == inst] = label
    out[class_map == VOID] = VOID
    return out


def unsegment_objects(labels: Mapping[int, int], p: float, rng: np.random.Generator) -> dict[int, int]:
    """*Unsegmented*: each object becomes background (0) with probability ``p``."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    return {i: (BACKGROUND if rng.random() < p else c) for i, c in sorted(labels.items())}


def randomise_object_labels(labels: Mapping[int, int], classes: Sequence[int], fraction: float,
                            rng: np.random.Generator) -> dict[int, int]:
    """*Random labels*: each object is picked with probability ``fraction`` (1 = all objects,
    0.5 = half) and its class replaced by one of the *other* ``classes``, uniformly.

    Raises:
        ValueError: for fewer than two classes or a fraction outside [0, 1].
    """
    if len(classes) < 2:
        raise ValueError("random labels need at least two classes")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    out = {}
    for i, c in sorted(labels.items()):
        if rng.random() < fraction:
            others = [k for k in classes if k != c]
            c = int(others[rng.integers(len(others))])
        out[i] = c
    return out


def binarise_objects(labels: Mapping[int, int]) -> dict[int, int]:
    """*Binarised*: every object is foreground (1)."""
    return {i: (1 if c != BACKGROUND else BACKGROUND) for i, c in labels.items()}


def false_positive_objects(labels: Mapping[int, int], targets: Iterable[int], p: float,
                           rng: np.random.Generator) -> dict[int, int]:
    """*False positives*: objects of the ``targets`` classes are foreground (1); each object of
    another class is segmented as foreground with probability ``p`` (0 = NoFalsePositive,
    0.5 = HalfFalsePositive), else background."""
    targets = set(targets)
    return {i: 1 if c in targets else (1 if rng.random() < p else BACKGROUND) for i, c in sorted(labels.items())}


def categorise_objects(labels: Mapping[int, int], grouping: Mapping[int, int]) -> dict[int, int]:
    """*Categorisation*: each object's class ``c`` becomes its group ``grouping[c]`` (1…k).

    Raises:
        KeyError: naming a class that ``grouping`` does not cover.
    """
    try:
        return {i: int(grouping[c]) for i, c in labels.items()}
    except KeyError as exc:
        raise KeyError(f"class {exc.args[0]} has no group in {dict(grouping)}") from None


def contiguous_labels(classes: Sequence[int]) -> dict[int, int]:
    """``{VOC class: 1…len(classes)}`` in the given order (the network's label space)."""
    return {c: k + 1 for k, c in enumerate(classes)}


def super_category_grouping(classes: Sequence[int]) -> dict[int, int]:
    """VOC's super-categories restricted to ``classes``: ``{class: group 1…k}``, groups numbered in
    the order person, animal, vehicle, indoor, skipping the empty ones (fold 3 has no person)."""
    groups = [g for g, names in SUPER_CATEGORIES.items() if any(class_index(n) in classes for n in names)]
    return {c: groups.index(next(g for g, names in SUPER_CATEGORIES.items() if VOC_CLASSES[c - 1] in names)) + 1
            for c in classes}


def random_grouping(classes: Sequence[int], k: int, rng: np.random.Generator) -> dict[int, int]:
    """A seeded random partition of ``classes`` into ``k`` non-empty groups ``{class: 1…k}``."""
    if not 1 <= k <= len(classes):
        raise ValueError(f"cannot split {len(classes)} classes into {k} non-empty groups")
    order = list(rng.permutation(list(classes)))
    groups = list(range(1, k + 1)) + [int(g) for g in rng.integers(1, k + 1, size=len(classes) - k)]
    return {int(c): g for c, g in zip(order, groups)}


# --------------------------------------------------------------------------- samples
@dataclass
class VocSample:
    """One single-object image after subsampling."""

    image_id: str
    source: str  # "voc" or "sbd"
    image: np.ndarray  # uint8 (H, W, 3)
    class_map: np.ndarray  # uint8 (H, W): 0, 1..20, 255
    instance_map: np.ndarray  # uint8 (H, W): 0, 1..n, 255
    object_class: int

    @property
    def objects(self) -> dict[int, int]:
        """``{instance id: class}`` (one entry for a single-object image, none if it vanished in subsampling)."""
        return object_classes(self.class_map, self.instance_map)


@dataclass
class VocSelection:
    """What :func:`load_voc_single_objects` kept and dropped."""

    train: list[VocSample] = field(default_factory=list)
    test: list[VocSample] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # "path: reason" of unreadable files

    def of_classes(self, split: str, classes: Iterable[int]) -> list[VocSample]:
        """The ``train`` or ``test`` samples whose object is of one of ``classes``."""
        classes = set(classes)
        return [s for s in getattr(self, split) if s.object_class in classes]


def _subsample(image: np.ndarray, maps: Sequence[np.ndarray], factor: int) -> tuple[np.ndarray, list[np.ndarray]]:
    from PIL import Image

    if factor == 1:
        return image, list(maps)
    h, w = image.shape[:2]
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    small = np.array(Image.fromarray(image).resize(size, Image.BILINEAR))
    return small, [np.array(Image.fromarray(m).resize(size, Image.NEAREST)) for m in maps]


def _single_object(class_map: np.ndarray, instance_map: np.ndarray) -> int | None:
    objects = object_classes(class_map, instance_map)
    return next(iter(objects.values())) if len(objects) == 1 else None


def load_voc_single_objects(voc: str | os.PathLike, sbd: str | os.PathLike | None = None, subsample: int = 4,
                            progress: bool = False) -> VocSelection:
    """Single-object images of VOC2011 ``train`` (+ SBD) for training and of VOC2011 ``val`` for testing.

    VOC2011's test labels are not public, so ``val`` is the test set.  SBD images (``train.txt``
    and ``val.txt``) are added to training except those in the VOC ``val`` list (never let a
    test image into training) and those already in VOC ``train`` (VOC's annotation, with void
    borders, is kept).  Unreadable images or label files are skipped and listed in ``skipped``.

    Args:
        voc: a path accepted by :func:`find_voc2011`.
        sbd: optional SBD folder (:func:`find_sbd`).
        subsample: integer down-sampling factor of every image side (4 in the thesis).
        progress: show a tqdm bar.

    Raises:
        FileNotFoundError: for a missing devkit / SBD folder or list file.
        ValueError: for ``subsample < 1``.
    """
    from tqdm import tqdm

    if subsample < 1:
        raise ValueError(f"subsample must be >= 1, got {subsample}")
    root = find_voc2011(voc)
    sets = root / "ImageSets" / "Segmentation"
    ids = {split: read_ids(sets / f"{split}.txt") for split in SPLITS}
    jobs: list[tuple[str, str, str]] = [("voc", "train", i) for i in ids["train"]] + [("voc", "val", i) for i in ids["val"]]
    sbd_root = None
    if sbd is not None:
        sbd_root = find_sbd(sbd)
        taken = set(ids["train"]) | set(ids["val"])
        sbd_ids = []
        for name in ("train.txt", "val.txt"):
            if (sbd_root / name).is_file():
                sbd_ids += read_ids(sbd_root / name)
        if not sbd_ids:
            raise FileNotFoundError(f"{sbd_root}: neither train.txt nor val.txt found")
        jobs += [("sbd", "train", i) for i in dict.fromkeys(sbd_ids) if i not in taken]
    selection = VocSelection()
    counts = {f"{src}_{split}_listed": 0 for src in ("voc", "sbd") for split in SPLITS}
    counts.update({f"{src}_{split}_single_object": 0 for src in ("voc", "sbd") for split in SPLITS})
    counts["sbd_excluded_in_voc_val"] = 0 if sbd_root is None else len(set(sbd_ids) & set(ids["val"]))
    for source, split, image_id in tqdm(jobs, desc="reading VOC2011" + (" + SBD" if sbd_root else ""),
                                        disable=not progress, leave=False):
        counts[f"{source}_{split}_listed"] += 1
        if source == "voc":
            files = (root / "JPEGImages" / f"{image_id}.jpg", root / "SegmentationClass" / f"{image_id}.png",
                     root / "SegmentationObject" / f"{image_id}.png")
        else:
            files = (sbd_root / "img" / f"{image_id}.jpg", sbd_root / "cls" / f"{image_id}.mat",
                     sbd_root / "inst" / f"{image_id}.mat")
        try:
            if source == "voc":
                maps = []
                for label_file in files[1:]:
                    current = label_file
                    maps.append(read_index_png(label_file))
                class_map, instance_map = maps
            else:
                current = files[1]
                class_map, instance_map = read_sbd_maps(sbd_root, image_id)
        except Exception as exc:  # noqa: BLE001 - any unreadable label file is skipped and listed
            selection.skipped.append(f"{current}: {type(exc).__name__}: {exc}")
            continue
        object_class = _single_object(class_map, instance_map)
        if object_class is None:
            continue
        try:
            image = read_image(files[0])
        except Exception as exc:  # noqa: BLE001
            selection.skipped.append(f"{files[0]}: {type(exc).__name__}: {exc}")
            continue
        if image.shape[:2] != class_map.shape:
            selection.skipped.append(f"{files[0]}: image {image.shape[:2]} and labels {class_map.shape} differ in size")
            continue
        image, (class_map, instance_map) = _subsample(image, (class_map, instance_map), subsample)
        counts[f"{source}_{split}_single_object"] += 1
        sample = VocSample(image_id, source, image, class_map, instance_map, object_class)
        (selection.train if split == "train" else selection.test).append(sample)
    counts["train"], counts["test"], counts["skipped"] = len(selection.train), len(selection.test), len(selection.skipped)
    selection.counts = counts
    return selection


# --------------------------------------------------------------------------- synthetic data
def voc_palette() -> list[int]:
    """The VOC colour map (768 values): class ``k``'s RGB from the bits of ``k``, 255 → (224, 224, 192)."""
    palette = []
    for k in range(256):
        r = g = b = 0
        c = k
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def write_palette_png(path: str | os.PathLike, indices: np.ndarray) -> Path:
    """Write ``uint8 (H, W)`` indices as a VOC-style palette PNG."""
    from PIL import Image

    image = Image.fromarray(np.asarray(indices, dtype=np.uint8), mode="P")
    image.putpalette(voc_palette())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _void_border(mask: np.ndarray, width: int) -> np.ndarray:
    from scipy.ndimage import binary_dilation, binary_erosion

    return binary_dilation(mask, iterations=width) & ~binary_erosion(mask, iterations=width)


def synthetic_scene(rng: np.random.Generator, classes: Sequence[int], height: int, width: int,
                    void_width: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic photo with one ellipse per entry of ``classes`` (side by side); returns (image, class map,
    instance map), both maps with a void (255) border of ``void_width`` pixels round each object.

    Each class has its own colour and stripe frequency, so the classes can be told apart.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    image = rng.normal(110.0, 25.0, size=(height, width, 3))
    image += 20.0 * np.sin(xx[..., None] / 7.0 + rng.uniform(0, 6)) * np.array([1.0, 0.6, 0.3])
    class_map = np.zeros((height, width), np.uint8)
    instance_map = np.zeros((height, width), np.uint8)
    border = np.zeros((height, width), bool)
    n = len(classes)
    for inst, c in enumerate(classes, start=1):  # object k in the k-th vertical strip: objects never touch
        cy, cx = rng.uniform(0.3, 0.7) * height, (inst - 0.5 + rng.uniform(-0.1, 0.1)) / n * width
        ry, rx = rng.uniform(0.18, 0.32) * height, rng.uniform(0.18, 0.32) / n * width
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        hue = np.array([(c * 97) % 256, (c * 57 + 80) % 256, (c * 31 + 160) % 256], dtype=np.float64)
        stripes = 30.0 * np.sin((xx + yy) * (0.3 + 0.05 * c))[..., None]
        image[mask] = hue + stripes[mask] + rng.normal(0, 12.0, size=(int(mask.sum()), 3))
        class_map[mask], instance_map[mask] = c, inst
        border |= _void_border(mask, void_width)
    class_map[border], instance_map[border] = VOID, VOID
    return np.clip(image, 0, 255).astype(np.uint8), class_map, instance_map


def write_synthetic_voc(out: str | os.PathLike, n_train_per_class: int = 2, n_val_per_class: int = 1,
                        size: tuple[int, int] = (96, 128), classes: Sequence[int] = tuple(range(1, 21)),
                        n_multi: int = 2, with_sbd: bool = False, seed: int = 0) -> tuple[Path, Path | None]:
    """Write a tiny VOC2011 devkit (``out/TrainVal/VOCdevkit/VOC2011``) and optionally an SBD tree
    (``out/benchmark_RELEASE/dataset``) of synthetic single-object images, plus ``n_multi``
    two-object images per split (which the single-object selection must drop).

    With ``with_sbd`` a third of the training images go to SBD's lists instead (as ``.mat``),
    and one VOC ``val`` id is also listed in SBD's ``train.txt`` (which must not reach training).

    Returns:
        ``(devkit folder to pass as --voc, SBD dataset folder or None)``.
    """
    from PIL import Image

    out = Path(out)
    voc = out / "TrainVal" / "VOCdevkit" / "VOC2011"
    sbd = out / "benchmark_RELEASE" / "dataset" if with_sbd else None
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    height, width = size
    lists: dict[str, list[str]] = {"train": [], "val": [], "sbd": []}
    counter = 0
    for split, per_class in (("train", n_train_per_class), ("val", n_val_per_class)):
        scenes = [[c] for c in classes for _ in range(per_class)]
        scenes += [[classes[i % len(classes)], classes[(i + 1) % len(classes)]] for i in range(n_multi)]
        for objects in scenes:
            counter += 1
            image_id = f"2011_{counter:06d}"
            image, class_map, instance_map = synthetic_scene(rng, objects, height, width)
            to_sbd = with_sbd and split == "train" and counter % 3 == 0
            if to_sbd:
                from scipy.io import savemat

                for sub in ("img", "cls", "inst"):
                    (sbd / sub).mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(sbd / "img" / f"{image_id}.jpg", quality=95)
                sbd_cls = np.where(class_map == VOID, 0, class_map).astype(np.uint8)  # SBD has no void
                sbd_inst = np.where(instance_map == VOID, 0, instance_map).astype(np.uint8)
                savemat(sbd / "cls" / f"{image_id}.mat", {"GTcls": {"Segmentation": sbd_cls}})
                savemat(sbd / "inst" / f"{image_id}.mat",
                        {"GTinst": {"Segmentation": sbd_inst,
                                    "Categories": np.array(objects, dtype=np.uint8)[:, None]}})
                lists["sbd"].append(image_id)
                continue
            Image.fromarray(image).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
            write_palette_png(voc / "SegmentationClass" / f"{image_id}.png", class_map)
            write_palette_png(voc / "SegmentationObject" / f"{image_id}.png", instance_map)
            lists[split].append(image_id)
    for split in SPLITS:
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(lists[split]) + "\n")
    if sbd is not None:
        leaked = lists["val"][0]  # a VOC val image that SBD also lists: must stay out of training
        from scipy.io import savemat

        class_map = read_index_png(voc / "SegmentationClass" / f"{leaked}.png")
        instance_map = read_index_png(voc / "SegmentationObject" / f"{leaked}.png")
        Image.open(voc / "JPEGImages" / f"{leaked}.jpg").save(sbd / "img" / f"{leaked}.jpg")
        savemat(sbd / "cls" / f"{leaked}.mat", {"GTcls": {"Segmentation": np.where(class_map == VOID, 0, class_map)}})
        savemat(sbd / "inst" / f"{leaked}.mat", {"GTinst": {"Segmentation": np.where(instance_map == VOID, 0, instance_map)}})
        (sbd / "train.txt").write_text("\n".join(lists["sbd"] + [leaked]) + "\n")
        (sbd / "val.txt").write_text("")
    return voc, sbd
