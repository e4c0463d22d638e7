"""CIFAR-10 in its official "python version" layout, read without downloading anything.

Layout (https://www.cs.toronto.edu/~kriz/cifar.html)::

    cifar-10-batches-py/
        data_batch_1 ... data_batch_5   # 5 x 10000 training images
        test_batch                      # 10000 test images
        batches.meta                    # {b"label_names": [...], ...}

Each batch is a pickled dict with ``b"data"``: ``uint8`` array of shape ``(N, 3072)`` (one
row per image: 1024 red, then 1024 green, then 1024 blue values of the 32 x 32 image in
row-major order) and ``b"labels"``: ``N`` integers in ``[0, 10)``.

The pickles are read with a restricted unpickler that only rebuilds NumPy arrays, so a
tampered file cannot run code.  Every problem raises :class:`CifarFormatError` (a
``ValueError``) that names the offending file.

:func:`write_cifar10` writes the same layout (used for tests and synthetic demos), and
:func:`write_synthetic_cifar10` fills it with learnable class-dependent colour blobs.
"""

from __future__ import annotations

import io
import io
import os
import pickle
import struct
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_bytes_atomic

CIFAR10_DIRNAME = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
IMAGE_SHAPE = (3, 32, 32)
NUM_CLASSES = 10
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

#: the only globals a CIFAR pickle may reference: NumPy array reconstruction, and the bytes
#: constructor that Python 3 writes into protocol-2 pickles
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class CifarFormatError(ValueError):
    """A CIFAR file is missing or does not have the official layout; the message names it."""


@dataclass(frozen=True)
class ImageSet:
    """Images ``(N, 3, 32, 32)`` ``uint8`` with integer labels ``(N,)`` and the class names."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: np.ndarray) -> ImageSet:
        indices = np.asarray(indices)
        return ImageSet(self.images[indices], self.labels[indices], self.class_names)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (only NumPy arrays are allowed)")


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise CifarFormatError(f"{path}: file not found (expected the CIFAR-10 python layout in {path.parent})")
    try:
        with path.open("rb") as handle:
            obj = _ArrayOnlyUnpickler(handle, encoding="bytes").load()
    except Exception as exc:  # pickle raises many types for corrupt input
        raise CifarFormatError(f"{path}: not a readable CIFAR pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise CifarFormatError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _field(obj: dict, key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in obj:
            return obj[k]
    found = ", ".join(repr(k) for k in obj) or "none"
    raise CifarFormatError(f"{path}: missing key b{key!r} (found keys: {found})")


def read_cifar_batch(path: str | os.PathLike, num_classes: int = NUM_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file: images ``(N, 3, 32, 32)`` ``uint8`` and labels ``(N,)`` ``int64``."""
    path = Path(path)
    obj = _unpickle(path)
    data, labels = _field(obj, "data", path), _field(obj, "labels", path)
    images = check_images(data, path)
    return images, check_labels(labels, "labels", len(images), num_classes, path, name="labels")


def check_images(data: Any, path: Path) -> np.ndarray:
    """The ``b'data'`` field of a CIFAR pickle as ``(N, 3, 32, 32)`` uint8 images.

    Raises:
        CifarFormatError: naming ``path`` unless ``data`` is a uint8 array of shape ``(N, 3072)``.
    """
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise CifarFormatError(f"{path}: b'data' must be a uint8 NumPy array, got {getattr(data, 'dtype', type(data).__name__)}")
    if data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
        raise CifarFormatError(f"{path}: b'data' must have shape (N, 3072), got {data.shape}")
    return data.reshape(-1, *IMAGE_SHAPE)


def check_labels(values: Any, key: str, num_images: int, num_classes: int, path: Path, name: str | None = None) -> np.ndarray:
    """A label field ``b'<key>'`` of a CIFAR pickle as ``(N,)`` int64 in ``[0, num_classes)``.

    Raises:
        CifarFormatError: naming ``path`` and the field (``name``, default ``b'<key>'``) when the
            labels are not integers, not one per image, or out of range.
    """
    name = name or f"b'{key}'"
    try:
        labels = np.asarray(values, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise CifarFormatError(f"{path}: b'{key}' must be a list of integers ({exc})") from exc
    if labels.shape != (num_images,):
        raise CifarFormatError(f"{path}: {num_images} images but b'{key}' has shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise CifarFormatError(f"{path}: {name} must lie in [0, {num_classes}), found [{labels.min()}, {labels.max()}]")
    return labels


def read_class_names(path: str | os.PathLike, num_classes: int = NUM_CLASSES) -> tuple[str, ...]:
    """Read ``batches.meta``'s ``b"label_names"``."""
    path = Path(path)
    names = _field(_unpickle(path), "label_names", path)
    if not isinstance(names, (list, tuple)) or len(names) != num_classes:
        raise CifarFormatError(f"{path}: b'label_names' must list {num_classes} names, got {names!r:.200}")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def resolve_dataset_dir(root: str | os.PathLike, dirname: str, marker: str, what: str) -> Path:
    """``root`` itself when it holds the file ``marker`` (or is named ``dirname``), else ``root/dirname``.

    Raises:
        CifarFormatError: naming ``root`` when neither holds the dataset ``what``.
    """
    root = Path(root)
    if (root / marker).is_file() or root.name == dirname:
        return root
    if (root / dirname).is_dir():
        return root / dirname
    if not root.exists():
        raise CifarFormatError(f"{root}: {what} folder not found")
    raise CifarFormatError(f"{root}: neither it nor {root / dirname} holds the {what} python files")


def resolve_cifar10_dir(root: str | os.PathLike) -> Path:
    """``root`` itself when it holds ``data_batch_1``, else ``root/cifar-10-batches-py``."""
    return resolve_dataset_dir(root, CIFAR10_DIRNAME, TRAIN_BATCHES[0], "CIFAR-10")


def load_cifar10(root: str | os.PathLike) -> tuple[ImageSet, ImageSet]:
    """Return ``(train, test)`` from a ``cifar-10-batches-py`` folder (or its parent)."""
    folder = resolve_cifar10_dir(root)
    names = read_class_names(folder / META_FILE)
    batches = [read_cifar_batch(folder / name) for name in TRAIN_BATCHES]
    train = ImageSet(np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]), names)
    test_images, test_labels = read_cifar_batch(folder / TEST_BATCH)
    return train, ImageSet(test_images, test_labels, names)


# --------------------------------------------------------------------------- writing
class _Python2StylePickler(pickle._Pickler):  # the pure-Python pickler exposes its dispatch table
    """Protocol 2 with ``bytes`` written as Python 2 strings (``SHORT_BINSTRING``/``BINSTRING``).

    This is how the official files were written (Python 2 ``cPickle``): loading them with
    ``encoding="bytes"`` gives ``bytes`` keys (``b"data"``), with ``encoding="latin1"`` ``str``
    keys (what torchvision's reader expects), and both work for our files too.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_bytes_as_str(self, obj: bytes) -> None:
        n = len(obj)
        header = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(header + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_bytes_as_str


def _atomic_pickle(path: Path, obj: dict) -> None:
    buffer = io.BytesIO()
    _Python2StylePickler(buffer, protocol=2).dump(obj)
    write_bytes_atomic(path, buffer.getvalue())


def write_cifar10(
    root: str | os.PathLike, train: ImageSet, test: ImageSet, folder_name: str = CIFAR10_DIRNAME
) -> Path:
    """Write ``train`` (split into the five ``data_batch_*``) and ``test`` in the official layout.

    Returns the ``cifar-10-batches-py`` folder.
    """
    folder = Path(root) / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in zip(TRAIN_BATCHES, np.array_split(np.arange(len(train)), len(TRAIN_BATCHES))):
        _write_batch(folder / name, train.images[part], train.labels[part], f"training batch {name[-1]} of 5")
    _write_batch(folder / TEST_BATCH, test.images, test.labels, "testing batch 1 of 1")
    _atomic_pickle(
        folder / META_FILE,
        {b"num_cases_per_batch": int(np.ceil(len(train) / 5)), b"label_names": [n.encode() for n in train.class_names],
         b"num_vis": 3072},
    )
    return folder


def _write_batch(path: Path, images: np.ndarray, labels: np.ndarray, batch_label: str) -> None:
    images = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
    _atomic_pickle(
        path,
        {b"batch_label": batch_label.encode(), b"labels": [int(v) for v in labels], b"data": images,
         b"filenames": [f"synthetic_{i:05d}.png".encode() for i in range(len(images))]},
    )


#: well-separated RGB colours of the synthetic classes
_SYNTHETIC_COLOURS = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [128, 128, 0], [255, 255, 255]],
    dtype=np.float32,
)


def synthetic_cifar_images(n: int, seed: int = 0, noise: float = 40.0) -> ImageSet:
    """``n`` 32 x 32 images of class-dependent colour blobs on a noisy grey background.

    Class ``k`` is a Gaussian blob of colour ``c_k`` (10 well-separated RGB colours), at a
    random centre in ``[8, 24]^2`` with a random radius in ``[3, 7]`` px, jittered in colour and
    covered in Gaussian pixel noise of std ``noise``: learnable, but not from one pixel.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % NUM_CLASSES
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    centres = rng.uniform(8, 24, size=(n, 2)).astype(np.float32)
    radii = rng.uniform(3, 7, size=(n, 1, 1)).astype(np.float32)
    blob = np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / (2 * radii**2))
    colour = _SYNTHETIC_COLOURS[labels] + rng.normal(0, 25, size=(n, 3)).astype(np.float32)
    background = rng.uniform(60, 180, size=(n, 1, 1, 1)).astype(np.float32)
    images = background * (1 - blob[:, None]) + colour[:, :, None, None] * blob[:, None]
    images += rng.normal(0, noise, size=images.shape).astype(np.float32)
    return ImageSet(np.clip(images, 0, 255).round().astype(np.uint8), labels.astype(np.int64), CIFAR10_CLASSES)


def write_synthetic_cifar10(root: str | os.PathLike, n_train: int = 2500, n_test: int = 500, seed: int = 0) -> Path:
    """Write :func:`synthetic_cifar_images` in the official CIFAR-10 layout; returns the folder."""
    if n_train < len(TRAIN_BATCHES) or n_test < 1:
        raise ValueError(f"need n_train >= {len(TRAIN_BATCHES)} and n_test >= 1, got {n_train}, {n_test}")
    return write_cifar10(root, synthetic_cifar_images(n_train, seed), synthetic_cifar_images(n_test, seed + 1))
