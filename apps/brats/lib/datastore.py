"""The studies datastore: MONAI Label's ``LocalDatastore`` made safe for clinician labels.

Layout (docs/CONTRACTS.md, written by ``robustlabel import-brats``)::

    STUDIES/<case>.nii.gz                          3-D FLAIR, the image the datastore lists
    STUDIES/modalities/<case>.nii.gz               4-D flair, t1ce, t1, t2 (not listed)
    STUDIES/labels/final/<case>.nii.gz             clinician labels (tag ``final``)
    STUDIES/labels/final_history/<case>/<ts>.nii.gz   earlier versions of a re-submitted final label
    STUDIES/labels/final_deleted/<ts>/<case>.nii.gz   final labels deleted with allow_final_delete
    STUDIES/labels/pseudo/<case>.nii.gz            pool pseudo-labels (tag ``pseudo``) + <case>.json sidecar
    STUDIES/deleted_images/<ts>/<case>.nii.gz      images removed through the API, with their
    STUDIES/deleted_images/<ts>/modalities/<case>.nii.gz   4-D modalities (moved, never unlinked)
    STUDIES/datastore_v2.json                      MONAI Label's record of images, labels and infos

Why a subclass and not the stock ``LocalDatastore`` (MONAI Label 0.8.5):

* **Names.** Its endpoints pass ids and tags straight into paths, so ``../x``, ``final/`` or an
  absolute path wrote, read or deleted files anywhere.  Every public method here checks its tag
  and id with :mod:`lib.names` (HTTP 422 naming the field) and every path it builds with
  :func:`lib.names.require_inside` (the studies folder only).
* **final is write-once from the clinician's side.** A model output (label info with a ``model``
  key, as ``MONAILabelApp.infer`` and the pool write it) is never stored under ``final``
  (HTTP 409; this is the app's one check of it: ``/infer`` with ``save_label`` and
  ``label_tag final`` runs and is then refused here); a re-submitted final label keeps the previous file in ``final_history``; deleting a
  final label -- directly or through ``remove_image`` -- is refused (HTTP 409) unless the server
  runs with ``--conf allow_final_delete true``, and then the file is moved to ``final_deleted``,
  never unlinked.  A removed image and its 4-D modalities file are moved together to
  ``deleted_images/<timestamp>/`` (not listed: the datastore does not recurse), never unlinked.
  A pseudo-label is never stored next to a final label (checked under the datastore lock, in
  the transaction that would store it), and saving a final label retires the image's
  pseudo-label (file, sidecar, record and scores) in the same transaction.
* **An atomic datastore file.** The stock ``_update_datastore_file`` opens ``datastore_v2.json``
  with mode ``"w"`` (truncating it) and writes in place: a ``kill -9`` during the write left an
  empty file, and the server then refused to start.  Here it is written to a temporary file in
  the same folder, fsynced, renamed over the old one, and the folder is fsynced.
* **No lost records.** The server and its background processes (pool pseudo-labelling, training,
  scoring) each held a copy of the datastore and wrote the whole copy back, so one could erase a
  record another had just written.  Every change here is a :meth:`BratsDatastore.transaction`:
  under the datastore's file lock the file is re-read, the one change is applied to what was
  read, and the result is written before the lock is released.  A record deleted by one process
  therefore stays deleted (a union of copies would revive a retired pseudo-label next to a new
  final label), and a record added by one is never dropped by another.
* **Recovery.** A corrupt or empty datastore file found when it is read is kept aside
  (``datastore_v2.json.corrupt-<ts>``) and rebuilt from the image and label files on disk, with
  the pseudo-labels' records restored from their sidecars, and a warning is logged: the server
  never refuses to start.
* **Uploads.** An uploaded image or label is checked from its NIfTI header before its voxels are
  read (:mod:`lib.uploads`): an image must stay under the voxel and byte caps, a label must have
  its image's shape; the label is then checked in full (values ``{0, 1, 2, 4}``, affine) and
  copied into place byte for byte.  A label computed in this process (the pool pseudo-labeller)
  is checked in memory and written once, atomically, by :meth:`BratsDatastore.save_label_array`.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from filelock import FileLock
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore, LocalDatastoreModel
from monailabel.interfaces.datastore import DefaultLabelTag
from robustlabel.data.labels import BRATS_LABELS, LabelValueError, check_label_values
from robustlabel.atomic import atomic_path, write_json_atomic
from robustlabel.data.nifti import NiftiReadError, read_nifti, write_nifti_atomic
from robustlabel.data.studies import FINAL, PSEUDO, modalities_path

from . import uploads
from .errors import AppRequestError, FinalLabelProtectedError, ImageNotFoundError, InvalidLabelError, InvalidNameError
from .names import TAG_PATTERN, check_image_id, check_tag, require_inside

logger = logging.getLogger(__name__)

# the tags are defined once, in the library; MONAI Label and Slicer call clinician labels "final" too
if FINAL != DefaultLabelTag.FINAL.value:  # pragma: no cover - a MONAI Label upgrade that renamed the tag
    raise ImportError(f"robustlabel's clinician tag {FINAL!r} is not MONAI Label's {DefaultLabelTag.FINAL.value!r}")
#: folders under ``labels/`` that hold retired final labels; never tags
FINAL_HISTORY: str = "final_history"
FINAL_DELETED: str = "final_deleted"
RESERVED_TAGS: frozenset[str] = frozenset({FINAL_HISTORY, FINAL_DELETED})
#: folder of the studies folder that keeps removed images and their modalities
DELETED_IMAGES: str = "deleted_images"
#: label-info key that marks a label as a model output (``MONAILabelApp.infer`` sets it)
MODEL_OUTPUT_KEY: str = "model"
#: image-info keys of the pseudo_confidence scoring method (cleared when a final label arrives)
PSEUDO_INFO_KEYS: tuple[str, ...] = ("pseudo_confidence", "pseudo_uncertainty", "pseudo_teacher_sha256")
#: sidecar keys copied into a pseudo-label's datastore record (the full sidecar is the file)
LABEL_INFO_KEYS: tuple[str, ...] = ("case", "tag", "teacher", "created", "uncertainty", "confidence", "voxel_counts")
#: largest affine difference (mm) between a label and its image that still counts as equal
AFFINE_TOLERANCE: float = 1e-3
#: suffix of the datastore file's temporary copy (``datastore_v2.json.<pid>.tmp``)
TMP_SUFFIX: str = ".tmp"


def validate_label_file(label_path: str | os.PathLike, image_path: str | os.PathLike, image_id: str) -> None:
    """Raise :class:`InvalidLabelError` unless ``label_path`` is a BraTS label map of the image's geometry.

    Checks, header first (:func:`lib.uploads.check_label_header`: the shape is compared before any
    voxel is read): readable NIfTI, then :func:`check_label_array` on its voxels and affine.
    """
    uploads.check_label_header(label_path, image_path, image_id)
    try:
        label, label_affine = read_nifti(label_path)
    except NiftiReadError as exc:
        raise InvalidLabelError(f"label for image {image_id!r} is not a readable NIfTI file ({exc.reason})") from None
    check_label_array(label, label_affine, image_path, image_id)


def check_label_array(label: np.ndarray, label_affine: np.ndarray, image_path: str | os.PathLike,
                      image_id: str) -> np.ndarray:
    """Return ``label`` without trailing singleton axes if it is a BraTS label map of the image's geometry.

    Checks: shape ``(X, Y, Z)`` of the image (read from its header); affine equal to the image's
    within :data:`AFFINE_TOLERANCE` (mm); values in ``{0, 1, 2, 4}``.

    Raises:
        InvalidLabelError: (422) naming what differs.
    """
    label = np.asarray(label)
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
    return label


def check_label_tag(tag: Any, field: str = "tag") -> str:
    """:func:`lib.names.check_tag` plus the app's rules: no reserved folder, ``final`` spelled exactly.

    A tag that differs from ``final`` only by case would be the same folder on a case-insensitive
    file system, so it is refused rather than treated as a second tag.
    """
    tag = check_tag(tag, field)
    if tag in RESERVED_TAGS:
        raise InvalidNameError(f"{field}: {tag!r} is a reserved folder of retired final labels, not a tag")
    if tag.lower() == FINAL and tag != FINAL:
        raise InvalidNameError(f"{field}: {tag!r}: the clinician tag is spelled {FINAL!r}")
    return tag


def utc_stamp() -> str:
    """A sortable UTC time stamp with microseconds (names of retired final labels)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder so that a rename inside it survives a power cut (best effort off Linux)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _synced(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a ``LocalDatastore`` read so that it first re-reads the datastore file if it changed."""

    @functools.wraps(method)
    def wrapper(self: BratsDatastore, *args: Any, **kwargs: Any) -> Any:
        self._init_from_datastore_file()
        return method(self, *args, **kwargs)

    return wrapper


class BratsDatastore(LocalDatastore):
    """``LocalDatastore`` over a robustlabel studies folder, with the guarantees of the module docstring.

    Args:
        datastore_path: the studies folder.
        allow_final_delete: let ``remove_label``/``remove_image`` retire final labels (moved to
            ``labels/final_deleted/``); refused (HTTP 409) otherwise.
        max_upload_voxels, max_upload_bytes: caps on an image given to :meth:`add_image`.
        **kwargs: ``LocalDatastore`` options (extensions, auto_reload, read_only).
    """

    def __init__(self, datastore_path: str, *, allow_final_delete: bool = False,
                 max_upload_voxels: int = 4 * 256**3, max_upload_bytes: int = 512 * 2**20, **kwargs: Any) -> None:
        os.makedirs(datastore_path, exist_ok=True)
        # one re-entrant lock object per datastore: the stock methods create a new FileLock per
        # call, and two FileLock objects on one file block each other even in one thread
        self._lock = FileLock(os.path.join(datastore_path, ".lock"))
        self._file_signature: tuple[int, int, int] | None = None
        self._depth = 0
        self._dirty = False
        self.recovered = False
        self.allow_final_delete = bool(allow_final_delete)
        self.max_upload_voxels = int(max_upload_voxels)
        self.max_upload_bytes = int(max_upload_bytes)
        self._remove_stale_temporaries(datastore_path)
        super().__init__(datastore_path, **kwargs)

    # ------------------------------------------------------------------ the datastore file
    @staticmethod
    def _remove_stale_temporaries(datastore_path: str) -> None:
        """Remove temporary datastore files a killed process left (they never replaced the file)."""
        for tmp in Path(datastore_path).glob(f"datastore_v2.json.*{TMP_SUFFIX}"):
            logger.warning(f"Removing the unfinished datastore write {tmp} of a killed process")
            tmp.unlink(missing_ok=True)

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._datastore_config_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _init_from_datastore_file(self, throw_exception: bool = False) -> None:
        """Re-read ``datastore_v2.json`` if it changed (inode, mtime or size); recover it if corrupt."""
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        signature = self._signature()
        if signature is None or signature == self._file_signature:
            return
        try:
            with open(self._datastore_config_path, encoding="utf-8") as fp:
                model = LocalDatastoreModel.model_validate_json(fp.read())
        except (ValueError, OSError, UnicodeDecodeError) as exc:  # pydantic's ValidationError is a ValueError
            self._recover_locked(exc)
            return
        model.base_path = self._datastore_path
        self._datastore = model
        self._file_signature = signature

    def _recover_locked(self, error: Exception) -> None:
        """Rebuild a corrupt datastore file from the files on disk (module docstring)."""
        path = Path(self._datastore_config_path)
        backup = path.with_name(f"{path.name}.corrupt-{utc_stamp()}")
        logger.warning(
            f"+++ {path} is corrupt ({type(error).__name__}: {str(error)[:200]}); keeping it as {backup.name} "
            f"and rebuilding the datastore from the image and label files on disk"
        )
        os.replace(path, backup)
        old = self._datastore
        self._datastore = LocalDatastoreModel(
            name=old.name, description=old.description, images_dir=old.images_dir, labels_dir=old.labels_dir
        )
        self._datastore.base_path = self._datastore_path
        self._file_signature = None
        self._add_non_existing_images()
        for tag in self._label_tags_on_disk():
            self._add_non_existing_labels(tag)
        for image_id, obj in self._datastore.objects.items():
            record = obj.labels.get(PSEUDO)
            sidecar = self.sidecar_file(image_id)
            if record is None or not sidecar.is_file():
                continue
            try:
                info = json.loads(sidecar.read_text())
            except (OSError, ValueError):
                logger.warning(f"{image_id}: unreadable pseudo-label sidecar {sidecar}; record kept without it")
                continue
            record.info.update({k: info[k] for k in LABEL_INFO_KEYS if k in info})
            record.info["recovered_from"] = sidecar.name
        self.recovered = True
        self._write_locked()

    def _write_locked(self) -> None:
        """Write the datastore atomically: temporary file, fsync, rename, fsync of the folder."""
        path = self._datastore_config_path
        text = json.dumps(self._datastore.model_dump(exclude={"base_path"}), indent=2, default=str)
        tmp = f"{path}.{os.getpid()}{TMP_SUFFIX}"
        try:
            with open(tmp, "w", encoding="utf-8") as fp:
                fp.write(text)
                fp.flush()
                os.fsync(fp.fileno())
            self._ignore_event_config = True
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync_dir(self._datastore_path)
        self._file_signature = self._signature()
        self._dirty = False

    def _update_datastore_file(self, lock: bool = True) -> None:
        """Inside a :meth:`transaction`: mark the change for its write.  Outside: write atomically."""
        if self._depth:
            self._dirty = True
            return
        with self._lock:
            self._write_locked()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[LocalDatastoreModel]:
        """Re-read the datastore file under the lock, let the body change it, write it back.

        Re-entrant: only the outermost transaction reads and writes.  A body that raises writes
        nothing, and the next read reloads the file (the in-memory copy may be half changed).
        """
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._load_locked()
                self._dirty = False
            self._depth += 1
            try:
                yield self._datastore
            except BaseException:
                self._file_signature = None
                raise
            finally:
                self._depth -= 1
            if outer and self._dirty:
                self._write_locked()

    def _label_tags_on_disk(self) -> list[str]:
        """Sub-folders of ``labels/`` that are tags (plain names, not the retired-final folders)."""
        labels_dir = self._datastore.label_path(None)
        if not os.path.isdir(labels_dir):
            return []
        return sorted(
            f for f in os.listdir(labels_dir)
            if os.path.isdir(os.path.join(labels_dir, f)) and TAG_PATTERN.fullmatch(f) and f not in RESERVED_TAGS
        )

    def _reconcile_datastore(self) -> None:
        """The stock reconciliation with the files on disk, as one transaction."""
        with self.transaction():
            changed = self._remove_non_existing() + self._add_non_existing_images()
            for tag in self._label_tags_on_disk():
                changed += self._add_non_existing_labels(tag)
            changed += self._remove_non_existing()
            if changed:
                self._dirty = True

    # ------------------------------------------------------------------ paths
    @property
    def studies_dir(self) -> Path:
        """The studies folder this datastore serves."""
        return Path(self._datastore_path)

    def _inside(self, path: str | os.PathLike, what: str) -> Path:
        return require_inside(path, [self._datastore_path], what)

    def label_file(self, image_id: str, tag: str) -> Path:
        """Where the NIfTI label of ``image_id`` with ``tag`` lives (whether or not it exists)."""
        check_image_id(image_id)
        check_label_tag(tag)
        return self._inside(Path(self._datastore.label_path(tag)) / f"{image_id}.nii.gz", "label")

    def sidecar_file(self, image_id: str) -> Path:
        """The provenance sidecar of the pseudo-label of ``image_id`` (docs/CONTRACTS.md)."""
        check_image_id(image_id)
        return self._inside(Path(self._datastore.label_path(PSEUDO)) / f"{image_id}.json", "sidecar")

    def get_image_uri(self, image_id: str) -> str:
        """The image file of ``image_id`` ("" if not listed); an id that is not a plain name is HTTP 422."""
        check_image_id(image_id)
        self._init_from_datastore_file()
        uri = LocalDatastore.get_image_uri(self, image_id)
        return str(self._inside(uri, "image")) if uri else ""

    def get_label_uri(self, label_id: str, label_tag: str) -> str:
        """The label file of ``label_id`` with ``label_tag`` ("" if none); bad names are HTTP 422."""
        check_image_id(label_id, "label")
        check_label_tag(label_tag)
        self._init_from_datastore_file()
        uri = LocalDatastore.get_label_uri(self, label_id, label_tag)
        return str(self._inside(uri, "label")) if uri else ""

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        check_image_id(image_id)
        self._init_from_datastore_file()
        return LocalDatastore.get_image_info(self, image_id)

    def get_label_info(self, label_id: str, label_tag: str) -> dict[str, Any]:
        check_image_id(label_id, "label")
        check_label_tag(label_tag)
        self._init_from_datastore_file()
        return LocalDatastore.get_label_info(self, label_id, label_tag)

    # ------------------------------------------------------------------ queries
    def has_image(self, image_id: str) -> bool:
        """Whether ``image_id`` is listed (re-reading the datastore file if another process changed it)."""
        self._init_from_datastore_file()
        return image_id in self._datastore.objects

    def require_image(self, image_id: str, field: str = "image") -> None:
        """Raise :class:`InvalidNameError` (422) for a non-name, :class:`ImageNotFoundError` (404) for
        an id the datastore does not list."""
        check_image_id(image_id, field)
        if not self.has_image(image_id):
            raise ImageNotFoundError(
                f"{field}: image {image_id!r} is not in the datastore "
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

    def final_history(self, image_id: str) -> list[Path]:
        """Earlier versions of the final label of ``image_id``, oldest first."""
        folder = self._inside(Path(self._datastore.label_path(FINAL_HISTORY)) / check_image_id(image_id), "history")
        return sorted(folder.glob("*.nii*")) if folder.is_dir() else []

    # ------------------------------------------------------------------ writes
    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any] | None = None) -> str:
        """Add an uploaded image under a new id: header-first caps, no overwrite (HTTP 409), atomic copy."""
        ext = uploads.uploaded_suffix(image_filename)
        image_id = check_image_id(image_id or os.path.basename(image_filename)[: -len(ext)], "image")
        uploads.check_image_upload(image_filename, self.max_upload_voxels, self.max_upload_bytes)
        name = self._filename(image_id, ext)
        dest = self._inside(Path(self._datastore.image_path()) / name, "image")
        logger.info(f"Adding Image: {image_id} => {dest}")
        with self.transaction() as model:
            if image_id in model.objects or dest.exists():
                raise AppRequestError(
                    f"image: {image_id!r} already exists; an image is never replaced (its labels were drawn on it)",
                    status_code=409,
                )
            with atomic_path(dest) as tmp:
                shutil.copyfile(image_filename, tmp)
            info = {**(image_info or {}), "ts": int(time.time()), "name": name}
            model.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=ext))
            self._dirty = True
        return image_id

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any],
                   sidecar: dict[str, Any] | None = None) -> str:
        """Store a label file (an upload, or ``/infer``'s output) with the guards of the module docstring:
        checked from its header, then in full (:func:`validate_label_file`), then copied into place.

        Args:
            sidecar: a pseudo-label's provenance (docs/CONTRACTS.md), written as
                ``labels/pseudo/<id>.json`` in the same transaction as the label and its record.
        """
        tag, info = self._label_request(image_id, label_tag, label_info)
        validate_label_file(label_filename, self.get_image_uri(image_id), image_id)
        _, ext = self._to_id(os.path.basename(label_filename))

        def copy(dest: Path) -> None:
            with atomic_path(dest) as tmp:
                shutil.copyfile(label_filename, tmp)

        return self._store_label(image_id, tag, info, sidecar, ext, copy)

    def save_label_array(self, image_id: str, label: np.ndarray, affine: np.ndarray, label_tag: str,
                         label_info: dict[str, Any], sidecar: dict[str, Any] | None = None,
                         header: dict[str, Any] | None = None) -> str:
        """Store a label computed in this process (the pool pseudo-labeller): checked in memory
        (:func:`check_label_array`) and written once, atomically, as ``labels/<tag>/<id>.nii.gz``.

        Args:
            label: BraTS values, the image's ``(X, Y, Z)`` shape.
            affine: 4x4, the image's (within :data:`AFFINE_TOLERANCE`).
            header: the source image's qform/sform codes and units
                (:func:`robustlabel.data.nifti.header_fields`), kept in the written file.
            sidecar: as in :meth:`save_label`.
        """
        tag, info = self._label_request(image_id, label_tag, label_info)
        label = check_label_array(label, affine, self.get_image_uri(image_id), image_id)
        return self._store_label(image_id, tag, info, sidecar, ".nii.gz",
                                 lambda dest: write_nifti_atomic(dest, label, affine, header))

    def _label_request(self, image_id: str, label_tag: str, label_info: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
        """The checks of a label to store that need no file: tag, image, and no model output under ``final``."""
        tag = check_label_tag(label_tag or FINAL)
        self.require_image(image_id)
        info = dict(label_info or {})
        if tag == FINAL and MODEL_OUTPUT_KEY in info:
            raise FinalLabelProtectedError(
                f"refusing to store the output of model {info[MODEL_OUTPUT_KEY]!r} for image {image_id!r} under "
                f"label_tag (tag) {FINAL!r}: that tag holds clinician labels only (they are submitted with "
                f"PUT /datastore/label); save model outputs as 'original' or '{PSEUDO}'"
            )
        return tag, info

    def _store_label(self, image_id: str, tag: str, info: dict[str, Any], sidecar: dict[str, Any] | None,
                     ext: str, write: Callable[[Path], Any]) -> str:
        """Write the label into place atomically (``write(dest)``) and record it, in one transaction.

        The stock method copies with ``shutil.copy`` straight onto ``labels/<tag>/<id>.nii.gz``, so a
        crash, or a reader in another process, could meet a truncated label.  A final label that
        already exists is first copied to ``labels/final_history/<id>/<timestamp><ext>``.  A
        pseudo-label is refused here, under the lock, when the image has a final label.
        """
        ext = ext if ext in (".nii.gz", ".nii") else ".nii.gz"
        name = self._filename(image_id, ext)
        dest = self._inside(Path(self._datastore.label_path(tag)) / name, "label")
        logger.info(f"Saving label: {image_id} => {tag} => {dest}")
        with self.transaction() as model:
            obj = model.objects.get(image_id)
            if obj is None:
                raise ImageNotFoundError(f"image {image_id!r} was removed meanwhile")
            # under the lock: a final label saved by any process (it writes under this lock too)
            # is seen here, so no pseudo-label is ever stored beside it
            if tag == PSEUDO and (obj.labels.get(FINAL) or self.label_file(image_id, FINAL).exists()):
                raise FinalLabelProtectedError(
                    f"image {image_id!r} has a {FINAL!r} label; a pseudo-label is never stored next to it"
                )
            dest.parent.mkdir(parents=True, exist_ok=True)
            if tag == FINAL:
                for previous in sorted(dest.parent.glob(f"{image_id}.nii*")):
                    if self._to_id(previous.name)[0] == image_id:
                        self._archive_final(image_id, previous, FINAL_HISTORY)
            if sidecar is not None:
                write_json_atomic(self.sidecar_file(image_id), sidecar)
            write(dest)
            obj.labels[tag] = DataModel(info={**info, "ts": int(time.time()), "name": name}, ext=ext)
            self._dirty = True
            if tag == FINAL:
                self.retire_pseudo_label(image_id)
        return image_id

    def _archive_final(self, image_id: str, path: Path, where: str, move: bool = False) -> Path:
        """Keep a final label file: copy (re-submission) or move (deletion) it under ``labels/<where>/``.

        ``final_history/<id>/<timestamp><ext>`` for a replaced label, ``final_deleted/<timestamp>/<id><ext>``
        for a deleted one.
        """
        ext = self._to_id(path.name)[1]
        stamp = utc_stamp()
        base = Path(self._datastore.label_path(where))
        target = base / image_id / f"{stamp}{ext}" if where == FINAL_HISTORY else base / stamp / f"{image_id}{ext}"
        target = self._inside(target, where)
        target.parent.mkdir(parents=True, exist_ok=True)
        if move:
            os.replace(path, target)
        else:
            with atomic_path(target) as tmp:
                shutil.copy2(path, tmp)
        fsync_dir(target.parent)
        logger.info(f"Kept final label of {image_id}: {path} -> {target}")
        return target

    def remove_label(self, label_id: str, label_tag: str) -> None:
        """Remove one label and its record; a final label only with ``allow_final_delete`` (then moved).

        A pseudo-label's sidecar and the image's pseudo scores go with it.
        """
        tag = check_label_tag(label_tag)
        self.require_image(label_id, "id")
        with self.transaction() as model:
            obj = model.objects.get(label_id)
            if obj is None:
                raise ImageNotFoundError(f"id: image {label_id!r} was removed meanwhile")
            folder = Path(self._datastore.label_path(tag))
            files = [p for p in folder.glob(f"{label_id}.nii*") if self._to_id(p.name)[0] == label_id]
            if tag not in obj.labels and not files:
                raise AppRequestError(f"image {label_id!r} has no label with tag {tag!r}", status_code=404)
            if tag == FINAL:
                if not self.allow_final_delete:
                    raise FinalLabelProtectedError(
                        f"refusing to delete the {FINAL!r} label of {label_id!r}: clinician labels are kept; "
                        f"start the server with --conf allow_final_delete true to allow it (the file is then "
                        f"moved to labels/{FINAL_DELETED}/, never unlinked)"
                    )
                for path in files:
                    self._archive_final(label_id, self._inside(path, "label"), FINAL_DELETED, move=True)
            else:
                for path in files:
                    self._inside(path, "label").unlink(missing_ok=True)
                if tag == PSEUDO:
                    self.sidecar_file(label_id).unlink(missing_ok=True)
                    self._clear_pseudo_scores(obj)
            obj.labels.pop(tag, None)
            self._dirty = True

    def remove_label_by_tag(self, label_tag: str) -> None:
        """Remove every label with ``label_tag`` (each through :meth:`remove_label`)."""
        tag = check_label_tag(label_tag)
        with self.transaction() as model:
            for image_id in [k for k, v in model.objects.items() if tag in v.labels]:
                self.remove_label(image_id, tag)

    def remove_image(self, image_id: str) -> None:
        """Remove an image and its labels; refused (409) while it has a final label, unless
        ``allow_final_delete`` (the final label is then moved to ``final_deleted``).  The image and
        its modalities file are moved to ``deleted_images/<timestamp>/``, never unlinked."""
        self.require_image(image_id, "id")
        with self.transaction() as model:
            obj = model.objects.get(image_id)
            if obj is None:
                raise ImageNotFoundError(f"id: image {image_id!r} was removed meanwhile")
            if (obj.labels.get(FINAL) or self.label_file(image_id, FINAL).exists()) and not self.allow_final_delete:
                raise FinalLabelProtectedError(
                    f"refusing to remove image {image_id!r}: it has a {FINAL!r} label; start the server with "
                    f"--conf allow_final_delete true to allow it (the label is then moved to labels/{FINAL_DELETED}/)"
                )
            for tag in list(obj.labels):
                self.remove_label(image_id, tag)
            image = self._inside(Path(self._datastore.image_path()) / self._filename(image_id, obj.image.ext), "image")
            self._retire_image(image_id, image)
            model.objects.pop(image_id, None)
            self._dirty = True

    def _retire_image(self, image_id: str, image: Path) -> None:
        """Move ``image`` and its modalities file to ``deleted_images/<timestamp>/`` (modalities under
        ``modalities/`` there); the image goes first, so it is never listed without its modalities."""
        target = self._inside(self.studies_dir / DELETED_IMAGES / utc_stamp(), DELETED_IMAGES)
        four_d = modalities_path(image)
        for source, dest in ((image, target / image.name), (four_d, target / four_d.parent.name / four_d.name)):
            if not source.exists():
                continue
            self._inside(source, "image")
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, dest)
            fsync_dir(dest.parent)
            logger.info(f"Kept removed image {image_id}: {source} -> {dest}")

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        self.update_image_infos({image_id: info})

    def update_image_infos(self, infos: dict[str, dict[str, Any]]) -> None:
        """``update_image_info`` for many images in one transaction."""
        if not infos:
            return
        for image_id in infos:
            check_image_id(image_id)
        with self.transaction() as model:
            for image_id, info in infos.items():
                obj = model.objects.get(image_id)
                if obj is None:
                    raise ImageNotFoundError(f"image {image_id!r} is not in the datastore at {self.studies_dir}")
                obj.image.info.update(info)
            self._dirty = True

    def update_label_info(self, label_id: str, label_tag: str, info: dict[str, Any]) -> None:
        check_image_id(label_id, "label")
        tag = check_label_tag(label_tag)
        with self.transaction() as model:
            label = model.label(label_id, tag)
            if not label:
                raise AppRequestError(f"image {label_id!r} has no label with tag {tag!r}", status_code=404)
            label.info.update(info)
            self._dirty = True

    def _clear_pseudo_scores(self, obj: ImageLabelModel) -> None:
        if any(obj.image.info.get(k) is not None for k in PSEUDO_INFO_KEYS):
            obj.image.info.update(dict.fromkeys(PSEUDO_INFO_KEYS))
            self._dirty = True

    def retire_pseudo_label(self, image_id: str) -> bool:
        """Remove the pseudo-label, sidecar, record and scores of ``image_id`` (it has a ``final`` label now)."""
        with self.transaction() as model:
            obj = model.objects.get(image_id)
            folder = Path(self._datastore.label_path(PSEUDO))
            files = [p for p in folder.glob(f"{image_id}.nii*") if self._to_id(p.name)[0] == image_id]
            existed = bool(files) or bool(obj and obj.labels.get(PSEUDO))
            self.sidecar_file(image_id).unlink(missing_ok=True)
            if existed:
                logger.info(f"Image {image_id} has a final label now: removing its stale pseudo-label")
            for path in files:
                path.unlink(missing_ok=True)
            if obj is not None:
                if obj.labels.pop(PSEUDO, None) is not None:
                    self._dirty = True
                self._clear_pseudo_scores(obj)
        return existed

    def get_dataset_archive(self, limit_cases: int | None) -> str:
        """The stock ZIP archive, removed when the request that asked for it ends (lib.uploads)."""
        path = LocalDatastore.get_dataset_archive(self, limit_cases)
        uploads.remove_after_request(path)
        return path


#: LocalDatastore reads that re-check the datastore file first (see :class:`BratsDatastore`)
SYNCED_READS: tuple[str, ...] = (
    "json", "status", "datalist", "list_images", "get_labeled_images", "get_unlabeled_images",
    "get_labels_by_image_id",
)
for _name in SYNCED_READS:
    setattr(BratsDatastore, _name, _synced(getattr(LocalDatastore, _name)))
