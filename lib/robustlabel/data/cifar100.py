"""CIFAR-100 in its official "python version" layout, and the thesis' CIFAR PU split.

Layout (https://www.cs.toronto.edu/~kriz/cifar.html)::

    cifar-100-python/
        train   # 50000 images: {b"data", b"fine_labels", b"coarse_labels", b"filenames", b"batch_label"}
        test    # 10000 images, same keys
        meta    # {b"fine_label_names": [100 names], b"coarse_label_names": [20 names]}

``b"data"`` is a ``uint8`` array ``(N, 3072)``: 1024 red, 1024 green, then 1024 blue values of
each 32 x 32 image in row-major order, as in CIFAR-10 (:mod:`robustlabel.data.cifar`, whose
restricted unpickler and Python-2-style writer are reused).  Nothing is downloaded and no MD5
sum is checked (torchvision's reader does both), so user copies and test files load alike.

**PU split** (Ju 2017, Sec. 5.1.2).  The eleven classes are ``0`` = non-relevant (every
CIFAR-100 image) and ``k + 1`` = CIFAR-10 class ``k``.  For a labelled share ``π``:

* P: in each relevant class ``k ≥ 1``, ``round(π · n_k)`` images chosen at random keep label ``k``;
* U: the other relevant images and every non-relevant image, all observed as ``0``;
* the test set keeps its true labels.

:func:`pu_observed_labels` makes that split; :func:`stratified_subset` picks the share ``π``
of *every* class (incl. 0) for the fully-labelled "50%(R+N)" baseline.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .cifar import (
    check_images,
    check_labels,
    resolve_dataset_dir,
    CifarFormatError,
    ImageSet,
    _atomic_pickle,
    _field,
    _unpickle,
)

CIFAR100_DIRNAME = "cifar-100-python"
TRAIN_FILE = "train"
TEST_FILE = "test"
META_FILE = "meta"
NUM_FINE = 100
NUM_COARSE = 20

#: label of the non-relevant class in the combined 11-class problem
NON_RELEVANT = 0
NON_RELEVANT_NAME = "non-relevant"


# --------------------------------------------------------------------------- reading
def read_cifar100_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``train`` or ``test``: images ``(N, 3, 32, 32)`` uint8, fine ``(N,)`` and coarse ``(N,)`` int64 labels.

    Raises:
        CifarFormatError: a missing file, an unreadable pickle, a missing key, or data / labels
            of the wrong type, shape or range (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise CifarFormatError(f"{path}: file not found (expected the CIFAR-100 python layout in {path.parent})")
    obj = _unpickle(path)
    data = _field(obj, "data", path)
    images = check_images(data, path)
    fine, coarse = (check_labels(_field(obj, key, path), key, len(images), n_classes, path)
                    for key, n_classes in (("fine_labels", NUM_FINE), ("coarse_labels", NUM_COARSE)))
    return images, fine, coarse


def read_cifar100_names(path: str | os.PathLike) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Read ``meta``: the 100 fine and the 20 coarse class names."""
    path = Path(path)
    if not path.is_file():
        raise CifarFormatError(f"{path}: file not found (expected the CIFAR-100 python layout in {path.parent})")
    obj = _unpickle(path)
    out = []
    for key, n in (("fine_label_names", NUM_FINE), ("coarse_label_names", NUM_COARSE)):
        names = _field(obj, key, path)
        if not isinstance(names, (list, tuple)) or len(names) != n:
            raise CifarFormatError(f"{path}: b'{key}' must list {n} names, got {names!r:.200}")
        out.append(tuple(v.decode() if isinstance(v, bytes) else str(v) for v in names))
    return out[0], out[1]


def resolve_cifar100_dir(root: str | os.PathLike) -> Path:
    """``root`` itself when it holds ``train``, else ``root/cifar-100-python``."""
    return resolve_dataset_dir(root, CIFAR100_DIRNAME, TRAIN_FILE, "CIFAR-100")


def load_cifar100(root: str | os.PathLike) -> tuple[ImageSet, ImageSet]:
    """Return ``(train, test)`` with fine labels from a ``cifar-100-python`` folder (or its parent)."""
    folder = resolve_cifar100_dir(root)
    fine_names, _ = read_cifar100_names(folder / META_FILE)
    parts = []
    for name in (TRAIN_FILE, TEST_FILE):
        images, fine, _ = read_cifar100_file(folder / name)
        parts.append(ImageSet(images, fine, fine_names))
    return parts[0], parts[1]


# --------------------------------------------------------------------------- writing
def write_cifar100(
    root: str | os.PathLike,
    train: ImageSet,
    test: ImageSet,
    coarse_of_fine: np.ndarray | None = None,
    coarse_names: tuple[str, ...] | None = None,
) -> Path:
    """Write ``train`` / ``test`` (fine labels) in the official layout; returns the folder.

    ``coarse_of_fine[k]`` is the coarse class of fine class ``k`` (default ``k // 5``).
    """
    if len(train.class_names) != NUM_FINE:
        raise ValueError(f"CIFAR-100 needs {NUM_FINE} fine class names, got {len(train.class_names)}")
    coarse_of_fine = np.arange(NUM_FINE) // 5 if coarse_of_fine is None else np.asarray(coarse_of_fine)
    coarse_names = coarse_names or tuple(f"superclass_{i:02d}" for i in range(NUM_COARSE))
    folder = Path(root) / CIFAR100_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in ((TRAIN_FILE, train), (TEST_FILE, test)):
        fine = np.asarray(part.labels, dtype=np.int64)
        _atomic_pickle(folder / name, {
            b"filenames": [f"synthetic_{i:05d}.png".encode() for i in range(len(part))],
            b"batch_label": f"{name}ing batch 1 of 1".encode(),
            b"fine_labels": [int(v) for v in fine],
            b"coarse_labels": [int(v) for v in coarse_of_fine[fine]],
            b"data": np.ascontiguousarray(part.images, dtype=np.uint8).reshape(len(part), -1),
        })
    _atomic_pickle(folder / META_FILE, {
        b"fine_label_names": [n.encode() for n in train.class_names],
        b"coarse_label_names": [n.encode() for n in coarse_names],
    })
    return folder


def synthetic_cifar100_images(n: int, seed: int = 0, noise: float = 40.0) -> ImageSet:
    """``n`` 32 x 32 striped images, fine class ``k = i mod 100`` (shuffled).

    Class ``k`` has stripes of period ``4 + k mod 5`` px in one of four orientations (``k // 5
    mod 4``: horizontal, vertical, two diagonals) and two class colours, with a random phase,
    colour jitter and Gaussian pixel noise of std ``noise``.  They look nothing like the blobs
    of :func:`robustlabel.data.cifar.synthetic_cifar_images`, so a model can tell the
    synthetic "non-relevant" images from the synthetic CIFAR-10 classes.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % NUM_FINE
    rng.shuffle(labels)
    palette = np.random.default_rng(1234).uniform(0, 255, size=(NUM_FINE, 2, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    directions = np.array([[1, 0], [0, 1], [1, 1], [1, -1]], dtype=np.float32)
    d = directions[(labels // 5) % 4]
    period = (4 + labels % 5).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=n).astype(np.float32)
    coordinate = d[:, 0, None, None] * yy + d[:, 1, None, None] * xx
    mix = 0.5 + 0.5 * np.sin(2 * np.pi * coordinate / period[:, None, None] + phase[:, None, None])
    colours = palette[labels] + rng.normal(0, 20, size=(n, 2, 3)).astype(np.float32)
    images = colours[:, 0, :, None, None] * mix[:, None] + colours[:, 1, :, None, None] * (1 - mix[:, None])
    images += rng.normal(0, noise, size=images.shape).astype(np.float32)
    names = tuple(f"synthetic_{k:02d}" for k in range(NUM_FINE))
    return ImageSet(np.clip(images, 0, 255).round().astype(np.uint8), labels.astype(np.int64), names)


def write_synthetic_cifar100(root: str | os.PathLike, n_train: int = 2500, n_test: int = 500, seed: int = 0) -> Path:
    """Write :func:`synthetic_cifar100_images` in the official CIFAR-100 layout; returns the folder."""
    if n_train < 1 or n_test < 1:
        raise ValueError(f"need n_train >= 1 and n_test >= 1, got {n_train}, {n_test}")
    return write_cifar100(root, synthetic_cifar100_images(n_train, seed), synthetic_cifar100_images(n_test, seed + 1))


# --------------------------------------------------------------------------- PU split
def random_subset(data: ImageSet, n: int | None, seed: int = 12345) -> ImageSet:
    """A fixed random subset of ``n`` items (sorted indices), or ``data`` itself when ``n`` is
    ``None`` or at least ``len(data)``.

    Raises:
        ValueError: ``n < 1``.
    """
    if n is None or n >= len(data):
        return data
    if n < 1:
        raise ValueError(f"subset size must be >= 1, got {n}")
    return data.subset(np.sort(np.random.default_rng(seed).permutation(len(data))[:n]))


def combine_relevant_and_nonrelevant(relevant: ImageSet, nonrelevant: ImageSet) -> ImageSet:
    """One 11-class set: ``nonrelevant`` (any labels) → class 0, ``relevant`` class ``k`` → ``k + 1``.

    Non-relevant images come first.  Class names: ``("non-relevant", *relevant.class_names)``.
    """
    images = np.concatenate([nonrelevant.images, relevant.images])
    labels = np.concatenate([np.full(len(nonrelevant), NON_RELEVANT, np.int64), np.asarray(relevant.labels, np.int64) + 1])
    return ImageSet(images, labels, (NON_RELEVANT_NAME, *relevant.class_names))


def stratified_subset(labels: np.ndarray, fraction: float, seed: int, classes: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of ``round(fraction · n_k)`` random items of each class ``k`` in ``classes``
    (default: every class present).

    Raises:
        ValueError: ``fraction`` outside ``(0, 1]``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for k in np.unique(labels) if classes is None else np.asarray(classes):
        members = np.flatnonzero(labels == k)
        chosen.append(rng.permutation(members)[: int(round(fraction * len(members)))])
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, np.int64)


def pu_observed_labels(true_labels: np.ndarray, labelled_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The PU split of the module docstring: ``(observed labels, labelled mask)``.

    ``labelled[i]`` is True for the P set (relevant items that keep their label); every other
    item is observed as :data:`NON_RELEVANT`.  Deterministic in ``seed``.

    Raises:
        ValueError: ``labelled_fraction`` outside ``(0, 1]``.
    """
    true_labels = np.asarray(true_labels, dtype=np.int64)
    relevant = np.unique(true_labels[true_labels != NON_RELEVANT])
    keep = stratified_subset(true_labels, labelled_fraction, seed, classes=relevant)
    labelled = np.zeros(true_labels.shape, dtype=bool)
    labelled[keep] = True
    return np.where(labelled, true_labels, NON_RELEVANT), labelled
