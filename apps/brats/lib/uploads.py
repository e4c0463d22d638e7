"""Uploaded files: header-first checks, size caps, and removal of every temporary upload.

Header first
    An upload is checked from its NIfTI header (348 bytes, read by :func:`nibabel.load`, which maps
    the voxel data lazily) before any voxel is decompressed.  A 127 KiB ``.nii.gz`` can claim
    512³ voxels; reading it whole would allocate hundreds of MB before the shape check refused it.

    * a new image: voxels ``∏ shape ≤ max_upload_voxels``; file size and decompressed data size
      ``∏ shape · itemsize`` both ``≤ max_upload_bytes`` (``--conf``, :mod:`lib.conf`); then,
      within those caps, the data is decompressed once and counted: a file that holds fewer bytes
      than ``vox_offset + ∏ shape · itemsize`` (a truncated upload) is refused;
    * a label: its shape must equal its image's, from both headers, before its values are read.

Temporary uploads
    MONAI Label 0.8.5's endpoints copy each upload to ``tempfile.NamedTemporaryFile(...).name`` in
    the system temp folder and register its removal as a *background task*.  FastAPI runs
    background tasks only after a successful response, so every 4xx or 500 left one file behind.
    :class:`TrackingTempfile` stands in for the ``tempfile`` module inside those endpoint modules
    (see :func:`install_upload_tracking`): it hands out the same kind of name and records it for the
    current request, and :func:`tracked_uploads` (entered by the app's middleware around every
    request) removes every recorded path when the request ends, whatever its outcome.  The record
    also tells the app which paths are the server's own uploads, the one kind of path an infer
    request may name instead of an image id (:func:`is_server_upload`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import nibabel as nib
import numpy as np

from .errors import InvalidLabelError, UploadTooLargeError

logger = logging.getLogger(__name__)

#: MONAI Label endpoint modules whose ``tempfile`` is replaced by :class:`TrackingTempfile`
UPLOAD_ENDPOINT_MODULES: tuple[str, ...] = (
    "monailabel.endpoints.datastore",
    "monailabel.endpoints.infer",
    "monailabel.endpoints.model",
    "monailabel.endpoints.session",
    "monailabel.endpoints.wsi_infer",
)

_UPLOADS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("robustlabel_uploads", default=None)


class TrackingTempfile:
    """The ``tempfile`` module as MONAI Label's endpoints use it, recording each upload name.

    Only ``NamedTemporaryFile(...).name`` is used by those endpoints: this returns an object whose
    ``name`` is a fresh, not yet existing path in the system temp folder (the stock call creates
    and at once deletes the file, so the endpoint gets the same thing) and records it for the
    current request.  Everything else is delegated to :mod:`tempfile`.
    """

    def NamedTemporaryFile(self, *args: Any, suffix: str | None = None, prefix: str | None = None,  # noqa: N802
                           dir: str | None = None, **kwargs: Any) -> Any:
        name = os.path.join(dir or tempfile.gettempdir(), f"{prefix or 'tmp'}{secrets.token_hex(8)}{suffix or ''}")
        uploads = _UPLOADS.get()
        if uploads is not None:
            uploads.append(name)
        return _Named(name)

    def __getattr__(self, item: str) -> Any:
        return getattr(tempfile, item)


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name


def install_upload_tracking(modules: dict[str, ModuleType]) -> None:
    """Replace ``tempfile`` in the loaded endpoint modules of :data:`UPLOAD_ENDPOINT_MODULES`."""
    shim = TrackingTempfile()
    for name in UPLOAD_ENDPOINT_MODULES:
        module = modules.get(name)
        if module is not None and hasattr(module, "tempfile"):
            module.tempfile = shim  # type: ignore[attr-defined]


def remove_path(path: str) -> None:
    """Remove a file or folder if it exists (errors are logged, never raised)."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
    except OSError as exc:  # pragma: no cover - logged, a cleanup must not fail a request
        logger.warning(f"could not remove temporary upload {path}: {exc}")


@contextlib.contextmanager
def tracked_uploads() -> Iterator[list[str]]:
    """Record the uploads of the enclosed request; remove them all when it ends."""
    uploads: list[str] = []
    token = _UPLOADS.set(uploads)
    try:
        yield uploads
    finally:
        _UPLOADS.reset(token)
        for path in uploads:
            remove_path(path)


def tracking() -> bool:
    """Whether the current code runs inside a server request (whose uploads are recorded)."""
    return _UPLOADS.get() is not None


def remove_after_request(path: str) -> None:
    """Have the current request remove ``path`` (a file the server made for its response) when it ends."""
    uploads = _UPLOADS.get()
    if uploads is not None:
        uploads.append(path)


def is_server_upload(path: Any) -> bool:
    """Whether ``path`` is a temporary upload the server made for the current request."""
    uploads = _UPLOADS.get()
    return isinstance(path, str) and uploads is not None and path in uploads


def _header(path: str | os.PathLike, what: str) -> Any:
    try:
        return nib.load(str(path))
    except Exception as exc:  # nibabel raises ImageFileError, ValueError, OSError, EOFError, ...
        raise InvalidLabelError(f"{what} is not a readable NIfTI file ({type(exc).__name__}: {exc})") from None


def check_image_upload(path: str | os.PathLike, max_voxels: int, max_bytes: int, what: str = "file") -> tuple[int, ...]:
    """Check an uploaded image from its header against the caps; return its shape.

    Raises:
        UploadTooLargeError: file size, voxel count or decompressed size over a cap (HTTP 413).
        InvalidLabelError: not a readable NIfTI header (HTTP 422).
    """
    size = os.path.getsize(path)
    if size > max_bytes:
        raise UploadTooLargeError(f"{what}: {size} bytes is over the cap of {max_bytes} bytes (--conf max_upload_bytes)")
    image = _header(path, what)
    shape = tuple(int(s) for s in image.shape)
    voxels = math.prod(shape)
    data_bytes = voxels * np.dtype(image.get_data_dtype()).itemsize
    if voxels > max_voxels:
        raise UploadTooLargeError(
            f"{what}: header shape {shape} is {voxels} voxels, over the cap of {max_voxels} (--conf max_upload_voxels)"
        )
    if data_bytes > max_bytes:
        raise UploadTooLargeError(
            f"{what}: header shape {shape} of {image.get_data_dtype()} decompresses to {data_bytes} bytes, "
            f"over the cap of {max_bytes} bytes (--conf max_upload_bytes)"
        )
    expected = int(getattr(image.dataobj, "offset", 0)) + data_bytes  # the header copy says offset 0
    held = stored_bytes(path, expected, what)
    if held < expected:
        raise InvalidLabelError(f"{what}: truncated: the file holds {held} bytes, its header announces "
                                f"{expected} (offset + shape {shape} of {image.get_data_dtype()})")
    return shape


def stored_bytes(path: str | os.PathLike, limit: int, what: str = "file") -> int:
    """Bytes the NIfTI file holds once decompressed, counted up to ``limit`` (never past it).

    Raises:
        InvalidLabelError: the compressed stream is corrupt (HTTP 422).
    """
    held = 0
    try:
        with nib.openers.ImageOpener(str(path), "rb") as stream:
            while held < limit:
                chunk = stream.read(min(1 << 20, limit - held))
                if not chunk:
                    break
                held += len(chunk)
    except (OSError, EOFError, ValueError) as exc:  # gzip.BadGzipFile is an OSError
        raise InvalidLabelError(f"{what}: the compressed data cannot be read ({type(exc).__name__}: {exc})") from None
    return held


def check_label_header(label_path: str | os.PathLike, image_path: str | os.PathLike, image_id: str) -> None:
    """Refuse a label whose header shape differs from its image's, before reading its voxels.

    Trailing singleton axes of the label are ignored (as in :func:`lib.datastore.validate_label_file`).
    """
    label_shape = tuple(int(s) for s in _header(label_path, f"label for image {image_id!r}").shape)
    while len(label_shape) > 3 and label_shape[-1] == 1:
        label_shape = label_shape[:-1]
    image_shape = tuple(int(s) for s in nib.load(str(image_path)).shape[:3])
    if label_shape != image_shape:
        raise InvalidLabelError(
            f"label for image {image_id!r} has shape {label_shape}, but the image has shape {image_shape}"
        )


def uploaded_suffix(path: str | os.PathLike) -> str:
    """``.nii.gz`` or ``.nii`` from an uploaded file's name (anything else is refused)."""
    name = Path(path).name.lower()
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return ext
    raise InvalidLabelError(f"{Path(path).name}: only NIfTI uploads (.nii.gz, .nii) are accepted")
