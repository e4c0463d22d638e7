"""NIfTI reading and atomic, byte-reproducible writing (through nibabel).

* :func:`read_nifti` loads the whole voxel array eagerly, so that a corrupt or truncated
  file fails *here*, with a :class:`NiftiReadError` naming the file, and not later inside a
  data loader.
* :func:`write_nifti_atomic` serialises the image in memory, gzips it with a fixed
  ``mtime = 0`` (the same array and affine always give the same bytes), writes a hidden
  temporary file in the target directory and renames it into place with :func:`os.replace`
  (:mod:`robustlabel.atomic`).
  The temporary name ends in ``.tmp``, never in ``.nii``/``.nii.gz``, so a MONAI Label
  datastore scanning the folder with ``*.nii.gz`` patterns never sees a half-written file.
* :func:`read_header_fields` / :func:`header_fields` read the part of a NIfTI header that a
  derived volume (a label map of the same image) must keep: the ``qform_code`` and
  ``sform_code`` (what the affine means: 1 scanner, 2 aligned, 3 Talairach, 4 MNI, 5 template)
  and the spatial and time units.  Pass them as ``header=`` to the writers; without it a file
  gets codes 1 (scanner) and no units.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np

from ..atomic import write_bytes_atomic

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
#: gzip level of written files (nibabel's own default: fast, files ~10 % larger than level 9)
GZIP_LEVEL = 1
#: the header fields :func:`header_fields` returns and the writers' ``header=`` copies
HEADER_FIELDS: tuple[str, ...] = ("qform_code", "sform_code", "xyz_units", "t_units")


class NiftiReadError(ValueError):
    """A NIfTI file could not be read (missing, corrupt, truncated, not NIfTI)."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read NIfTI file {self.path}: {reason}")


def strip_nifti_suffix(name: str) -> str:
    """``"x.nii.gz"`` → ``"x"``; raise ``ValueError`` for a name without a NIfTI suffix."""
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    raise ValueError(f"{name!r} is not a NIfTI file name (expected one of {NIFTI_SUFFIXES})")


def read_nifti(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(voxel array, 4×4 affine)`` of a NIfTI-1/2 file.

    The array has the file's on-disk dtype after nibabel's scaling (``scl_slope``/``scl_inter``)
    and shape ``(X, Y, Z[, C])``; the affine is nibabel's best affine (sform, else qform).
    Raises :class:`NiftiReadError` naming the file for every read failure.
    """
    path = Path(path)
    if not path.is_file():
        raise NiftiReadError(path, "no such file")
    try:
        img = nib.load(str(path))
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise NiftiReadError(path, f"not a NIfTI image (nibabel read it as {type(img).__name__})")
        array = np.asanyarray(img.dataobj)
        affine = np.asarray(img.affine, dtype=np.float64)
    except NiftiReadError:
        raise
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise NiftiReadError(path, f"corrupt or truncated ({type(exc).__name__}: {exc})") from exc
    return array, affine


def header_fields(header: nib.Nifti1Header) -> dict[str, int | str]:
    """``{"qform_code", "sform_code", "xyz_units", "t_units"}`` of a NIfTI-1/2 header (JSON-safe:
    codes as ints, units as nibabel's names such as ``"mm"`` and ``"sec"``)."""
    xyz, t = header.get_xyzt_units()
    return {"qform_code": int(header["qform_code"]), "sform_code": int(header["sform_code"]),
            "xyz_units": str(xyz), "t_units": str(t)}


def read_header_fields(path: str | os.PathLike) -> dict[str, int | str]:
    """:func:`header_fields` of the file at ``path`` (only the header is read).

    Raises :class:`NiftiReadError` naming the file when it is missing or not NIfTI.
    """
    path = Path(path)
    try:
        img = nib.load(str(path))
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise NiftiReadError(path, f"cannot read the header ({type(exc).__name__}: {exc})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise NiftiReadError(path, f"not a NIfTI image (nibabel read it as {type(img).__name__})")
    return header_fields(img.header)


def _check_header(header: Mapping[str, int | str]) -> dict[str, int | str]:
    missing = [k for k in HEADER_FIELDS if k not in header]
    if missing:
        raise ValueError(f"header must give {HEADER_FIELDS}, missing {missing}")
    return {k: header[k] for k in HEADER_FIELDS}


def nifti_bytes(
    array: np.ndarray, affine: np.ndarray, *, compress: bool = True, header: Mapping[str, int | str] | None = None
) -> bytes:
    """Serialise ``array`` with ``affine`` (written to both sform and qform).

    ``header`` (:func:`header_fields` of the source image) sets the qform/sform codes and the
    spatial/time units; without it both codes are 1 (scanner) and the units unknown.  With
    ``compress`` the bytes are gzipped with ``mtime = 0`` so they are reproducible.
    """
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
    array = np.asarray(array)
    if array.ndim < 3:
        raise ValueError(f"a NIfTI volume needs at least 3 dimensions, got shape {array.shape}")
    img = nib.Nifti1Image(array, affine)
    fields = _check_header(header) if header is not None else {"qform_code": 1, "sform_code": 1}
    img.set_sform(affine, code=int(fields["sform_code"]))
    img.set_qform(affine, code=int(fields["qform_code"]))
    if header is not None:
        img.header.set_xyzt_units(xyz=fields["xyz_units"], t=fields["t_units"])
    raw = img.to_bytes()
    return gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0) if compress else raw


def nifti_file_bytes(
    path: str | os.PathLike, array: np.ndarray, affine: np.ndarray, header: Mapping[str, int | str] | None = None
) -> bytes:
    """The bytes of ``path`` holding ``array``/``affine``: gzipped for ``.nii.gz``, raw for ``.nii``
    (``header``: see :func:`nifti_bytes`)."""
    name = Path(path).name
    strip_nifti_suffix(name)  # validates the suffix
    return nifti_bytes(array, affine, compress=name.endswith(".gz"), header=header)


def write_nifti_atomic(
    path: str | os.PathLike, array: np.ndarray, affine: np.ndarray, header: Mapping[str, int | str] | None = None
) -> Path:
    """Write ``array`` (``(X, Y, Z[, C])``, its dtype kept) with ``affine`` to ``path`` atomically.

    ``.nii.gz`` paths are gzipped reproducibly, ``.nii`` paths are written uncompressed.
    ``header`` (:func:`header_fields` of the source image) keeps its qform/sform codes and units.
    """
    return write_bytes_atomic(path, nifti_file_bytes(path, array, affine, header))
