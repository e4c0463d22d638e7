"""The studies datastore: MONAI Label's ``LocalDatastore`` with the app's label guards.

Layout (docs/CONTRACTS.md, written by ``robustlabel import-brats``)::

    STUDIES/<case>.nii.gz                 3-D FLAIR, the image the datastore lists
    STUDIES/modalities/<case>.nii.gz      4-D flair, t1ce, t1, t2 (not listed)
    STUDIES/labels/final/<case>.nii.gz    clinician labels (tag ``final``)
    STUDIES/labels/pseudo/<case>.nii.gz   pool pseudo-labels (tag ``pseudo``) + <case>.json sidecar

Guards added to :meth:`LocalDatastore.save_label` (every label write goes through it: the
``PUT /datastore/label`` endpoint, ``MONAILabelApp.infer`` with ``save_label``, the pool
pseudo-labeller):

* the image id must exist (``ImageNotFoundError``, HTTP 404, instead of a bare 500);
* the file must be a NIfTI label map of the image's shape and affine with BraTS values
  ``{0, 1, 2, 4}`` (``InvalidLabelError``, HTTP 422);
* a model output (label info with a ``model`` key, as ``MONAILabelApp.infer`` writes it) is never
  stored under ``final``, and a pseudo-label is never stored for an image that has a ``final``
  label (``FinalLabelProtectedError``, HTTP 409);
* saving a ``final`` label retires the image's pseudo-label (file and sidecar), so the image
  leaves the pseudo pool and no stale pseudo-label can shadow the clinician's.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from filelock import FileLock
from monailabel.datastore.local import DataModel, LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag
from robustlabel.data.labels import BRATS_LABELS, LabelValueError, check_label_values
from robustlabel.data.nifti import NiftiReadError, atomic_path, read_nifti

from .errors import FinalLabelProtectedError, ImageNotFoundError, InvalidLabelError

logger = logging.getLogger(__name__)

FINAL: str = DefaultLabelTag.FINAL.value
PSEUDO: str = "pseudo"
#: label-info key that marks a label as a model output (``MONAILabelApp.infer`` sets it)
MODEL_OUTPUT_KEY: str = "model"
#: image-info keys of the pseudo_confidence scoring method (cleared when a final label arrives)
PSEUDO_INFO_KEYS: tuple[str, ...] = ("pseudo_confidence", "pseudo_uncertainty", "pseudo_teacher_sha256")
#: largest affine difference (mm) between a label and its image that still counts as equal
AFFINE_TOLERANCE: float = 1e-3


def validate_label_file(label_path: str | os.PathLike, image_path: str | os.PathLike, image_id: str) -> None:
    """Raise :class:`InvalidLabelError` unless ``label_path`` is a BraTS label map of the image's geometry.

    Checks: readable NIfTI; shape ``(X, Y, Z)`` of the image (trailing singleton axes are
    ignored); affine equal to the image's within :data:`AFFINE_TOLERANCE`; values in ``{0, 1, 2, 4}``.
    """
    try:
        label, label_affine = read_nifti(label_path)
    except NiftiReadError as exc:
        raise InvalidLabelError(f"label for image {image_id!r} is not a readable NIfTI file ({exc.reason})") from None
    while label.ndim > 3 and label.shape[-1] == 1:
        label = label[..., 0]
    header = nib.load(str(image_path))
    image_shape = tuple(int(s) for s in header.shape[:3])
    if tuple(label.shape) != image_shape:
        raise InvalidLabelError(
            f"label for image {image_id!r} has shape {tuple(label.shape)}, but the image has shape {image_shape}"
        )
    if not np.allclose(label_affine, header.affine, atol=AFFINE_TOLERANCE):
        raise InvalidLabelError(
            f"label for image {image_id!r} has affine {np.round(label_affine, 4).tolist()}, "
            f"but the image has affine {np.round(header.affine, 4).tolist()}"
        )
    try:
        check_label_values(label, BRATS_LABELS, name=f"label for image {image_id!r}")
    except LabelValueError as exc:
        raise InvalidLabelError(f"{exc} (BraTS 2018-2021: 1 necrosis, 2 edema, 4 enhancing tumour)") from None


def _synced(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a ``LocalDatastore`` read so that it first re-reads the datastore file if it changed."""

    @functools.wraps(method)
    def wrapper(self: BratsDatastore, *args: Any, **kwargs: Any) -> Any:
        self._init_from_datastore_file()
        return method(self, *args, **kwargs)

    return wrapper


class BratsDatastore(LocalDatastore):
    """``LocalDatastore`` over a robustlabel studies folder, with the guards of the module docstring.

    MONAI Label runs training, batch inference and scoring in background processes that write the
    datastore file (``datastore_v2.json``) too; the server notices through a file watcher, which
    is asynchronous.  So that the server never answers from (or writes back) a stale copy, the
    reads in :data:`SYNCED_READS` and every write here first re-read the file when its
    modification time changed (a ``stat`` otherwise).
    """

    @property
    def studies_dir(self) -> Path:
        """The studies folder this datastore serves."""
        return Path(self._datastore_path)

    def label_file(self, image_id: str, tag: str) -> Path:
        """Where the NIfTI label of ``image_id`` with ``tag`` lives (whether or not it exists)."""
        return Path(self._datastore.label_path(tag)) / f"{image_id}.nii.gz"

    def sidecar_file(self, image_id: str) -> Path:
        """The provenance sidecar of the pseudo-label of ``image_id`` (docs/CONTRACTS.md)."""
        return Path(self._datastore.label_path(PSEUDO)) / f"{image_id}.json"

    def has_image(self, image_id: str) -> bool:
        """Whether ``image_id`` is listed (re-reading the datastore file if another process changed it)."""
        self._init_from_datastore_file()
        return image_id in self._datastore.objects

    def require_image(self, image_id: str) -> None:
        """Raise :class:`ImageNotFoundError` (HTTP 404) for an id the datastore does not list."""
        if not isinstance(image_id, str) or not self.has_image(image_id):
            raise ImageNotFoundError(
                f"image {image_id!r} is not in the datastore at {self.studies_dir} "
                f"({len(self._datastore.objects)} images; list them with GET /datastore/?output=all)"
            )

    def has_final_label(self, image_id: str) -> bool:
        """Whether a clinician label exists, by the datastore file *or* on disk (another process
        may have saved it a moment ago)."""
        self._init_from_datastore_file()
        return bool(self._datastore.label(image_id, FINAL)) or self.label_file(image_id, FINAL).exists()

    def pseudo_pool(self) -> list[str]:
        """Sorted ids of the images without a ``final`` label: the pool the teacher pseudo-labels."""
        return sorted(i for i in self.get_unlabeled_images() if not self.has_final_label(i))

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        tag = label_tag or FINAL
        self.require_image(image_id)
        info = dict(label_info or {})
        if tag == FINAL and MODEL_OUTPUT_KEY in info:
            raise FinalLabelProtectedError(
                f"refusing to store the output of model {info[MODEL_OUTPUT_KEY]!r} for image {image_id!r} under "
                f"tag {FINAL!r}: that tag holds clinician labels only (use 'original' or '{PSEUDO}')"
            )
        if tag == PSEUDO and self.has_final_label(image_id):
            raise FinalLabelProtectedError(
                f"image {image_id!r} has a {FINAL!r} label; a pseudo-label is never stored next to it"
            )
        validate_label_file(label_filename, self.get_image_uri(image_id), image_id)
        label_id = self._store_label(image_id, label_filename, tag, info)
        if tag == FINAL:
            self.retire_pseudo_label(image_id)
        return label_id

    def _store_label(self, image_id: str, label_filename: str, tag: str, info: dict[str, Any]) -> str:
        """``LocalDatastore.save_label`` with an atomic copy.

        The stock method copies with ``shutil.copy`` straight onto ``labels/<tag>/<id>.nii.gz``,
        so a crash, or a reader in another process (training, a Slicer download), can meet a
        truncated label.  Here the file is copied to a hidden ``.tmp`` next to it and renamed into
        place; the datastore record is the same as the stock one (info + ``ts`` + ``name``).
        """
        _, ext = self._to_id(os.path.basename(label_filename))
        name = self._filename(image_id, ext)
        dest = Path(self._datastore.label_path(tag)) / name
        logger.info(f"Saving label: {image_id} => {tag} => {dest}")
        with FileLock(self._lock_file):
            # re-checked under the lock: a final label saved by another process after the check in
            # save_label (it writes under this lock too) must not get a pseudo-label beside it
            if tag == PSEUDO and self.label_file(image_id, FINAL).exists():
                raise FinalLabelProtectedError(
                    f"image {image_id!r} got a {FINAL!r} label meanwhile; a pseudo-label is never stored next to it"
                )
            with atomic_path(dest) as tmp:
                shutil.copyfile(label_filename, tmp)
            self._datastore.objects[image_id].labels[tag] = DataModel(
                info={**info, "ts": int(time.time()), "name": name}, ext=ext
            )
            self._update_datastore_file(lock=False)
        return image_id

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        self.update_image_infos({image_id: info})

    def update_image_infos(self, infos: dict[str, dict[str, Any]]) -> None:
        """``update_image_info`` for many images with one write of the datastore file
        (the stock method rewrites the whole file once per image)."""
        if not infos:
            return
        self._init_from_datastore_file()  # takes the lock itself (FileLock is not re-entrant across instances)
        with FileLock(self._lock_file):
            for image_id, info in infos.items():
                obj = self._datastore.objects.get(image_id)
                if obj is None:
                    raise ImageNotFoundError(f"image {image_id!r} is not in the datastore at {self.studies_dir}")
                obj.image.info.update(info)
            self._update_datastore_file(lock=False)

    def retire_pseudo_label(self, image_id: str) -> bool:
        """Remove the pseudo-label and sidecar of ``image_id`` (it now has a ``final`` label)."""
        files = {self.label_file(image_id, PSEUDO)}
        if self.get_label_uri(image_id, PSEUDO):
            files.add(Path(self.get_label_uri(image_id, PSEUDO)))
        existed = any(f.exists() for f in files)
        self.sidecar_file(image_id).unlink(missing_ok=True)
        if existed:
            logger.info(f"Image {image_id} has a final label now: removing its stale pseudo-label")
            for f in files:
                f.unlink(missing_ok=True)
            self.refresh()
        info = self.get_image_info(image_id)
        if any(info.get(k) is not None for k in PSEUDO_INFO_KEYS):
            self.update_image_infos({image_id: dict.fromkeys(PSEUDO_INFO_KEYS)})
        return existed


#: LocalDatastore reads that re-check the datastore file first (see :class:`BratsDatastore`)
SYNCED_READS: tuple[str, ...] = (
    "json", "status", "datalist", "list_images", "get_labeled_images", "get_unlabeled_images",
    "get_image_info", "get_image_uri", "get_label_info", "get_label_uri", "get_labels_by_image_id",
)
for _name in SYNCED_READS:
    setattr(BratsDatastore, _name, _synced(getattr(LocalDatastore, _name)))
