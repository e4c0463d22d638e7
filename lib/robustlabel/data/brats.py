"""Readers of the public BraTS layouts, with validation.

:func:`find_brats_cases` discovers the cases under a root folder and detects its layout:

``"brats"`` – BraTS 2018–2021 case folders (any depth, so BraTS 2018's ``HGG/`` and ``LGG/``
    sub-folders work)::

        <case>/<case>_flair.nii[.gz]  <case>_t1  <case>_t1ce  <case>_t2  [<case>_seg]

    labels in BraTS values {0, 1, 2, 4}.

``"msd"`` – Medical Segmentation Decathlon Task01_BrainTumour (``root`` or one level below it):
    ``dataset.json`` listing 4-D
    images ``imagesTr/BRATS_xxx.nii.gz`` (channels FLAIR, T1w, t1gd, T2w, as named in the
    json's ``"modality"``), labels ``labelsTr/BRATS_xxx.nii.gz`` with 1 oedema, 2 non-enhancing,
    3 enhancing (remapped to 2, 1, 4), and unlabelled ``imagesTs/``.  macOS ``._*`` files of
    the official archive are ignored.

``"brats2023"`` – BraTS 2023 case folders::

        <case>/<case>-t2f.nii.gz  -t1n  -t1c  -t2w  [-seg]

    (t2f = FLAIR, t1n = T1, t1c = T1ce, t2w = T2), labels with 3 = enhancing (remapped to 4).

:func:`load_case` reads one case into a :class:`LoadedCase` (image ``(4, X, Y, Z)`` float32 in
:data:`~robustlabel.data.labels.MODALITIES` order, label ``(X, Y, Z)`` uint8 in BraTS values or
``None``, affine) and raises :class:`CaseError` (case id + reason) for: a corrupt or truncated
NIfTI file, a missing or duplicated modality, a shape or affine mismatch between modalities or
between image and label, label values outside the source convention (e.g. 3 in a BraTS 2018
case) or non-integral labels, and NaN/inf voxels.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .labels import CONVENTIONS, MODALITIES, LabelValueError, remap_labels
from .nifti import NIFTI_SUFFIXES, NiftiReadError, read_header_fields, read_nifti

LAYOUTS: tuple[str, ...] = ("brats", "msd", "brats2023")
#: file-name tag -> our modality name (``"seg"`` = label), per folder layout
BRATS_TAGS: dict[str, str] = {"flair": "flair", "t1ce": "t1ce", "t1": "t1", "t2": "t2", "seg": "seg"}
BRATS2023_TAGS: dict[str, str] = {"t2f": "flair", "t1c": "t1ce", "t1n": "t1", "t2w": "t2", "seg": "seg"}
#: MSD dataset.json modality names -> our modality names
MSD_MODALITY_NAMES: dict[str, str] = {"flair": "flair", "t1w": "t1", "t1gd": "t1ce", "t2w": "t2"}
#: largest tolerated difference between affines of one case (mm)
AFFINE_ATOL = 1e-3

_SUFFIX = r"\.nii(?:\.gz)?"
_FOLDER_PATTERNS: dict[str, re.Pattern[str]] = {
    "brats": re.compile(rf"^(?P<case>.+)_(?P<tag>{'|'.join(BRATS_TAGS)}){_SUFFIX}$"),
    "brats2023": re.compile(rf"^(?P<case>.+)-(?P<tag>{'|'.join(BRATS2023_TAGS)}){_SUFFIX}$"),
}
_FOLDER_TAGS = {"brats": BRATS_TAGS, "brats2023": BRATS2023_TAGS}
_LABEL_CONVENTION = {"brats": "brats", "brats2023": "brats2023", "msd": "msd"}


class CaseError(ValueError):
    """A case cannot be used; ``reason`` says why (it goes into the import report)."""

    def __init__(self, case_id: str, reason: str) -> None:
        self.case_id = case_id
        self.reason = reason
        super().__init__(f"case {case_id}: {reason}")


@dataclass(frozen=True)
class BratsCase:
    """One discovered case.

    Folder layouts give one 3-D file per modality in ``modalities``; MSD gives one 4-D file
    in ``image4d`` whose channels are named, in file order, by ``channels``.  ``problems``
    lists what discovery already found wrong (missing/duplicated files); :func:`load_case`
    raises the first of them.
    """

    case_id: str
    layout: str
    modalities: dict[str, Path] = field(default_factory=dict)
    image4d: Path | None = None
    channels: tuple[str, ...] = ()
    label: Path | None = None
    label_convention: str = "brats"
    group: str = ""  # e.g. "HGG"/"LGG" in BraTS 2018, "imagesTr"/"imagesTs" in MSD
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadedCase:
    """A validated case: ``image`` (4, X, Y, Z) float32 in MODALITIES order, ``label`` (X, Y, Z)
    uint8 in BraTS values (or ``None``), the common 4×4 ``affine`` and ``header``, the source
    image's qform/sform codes and units (:func:`robustlabel.data.nifti.header_fields` of the
    FLAIR file, or of the 4-D MSD image), which every file written from the case keeps."""

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    affine: np.ndarray
    header: dict[str, int | str] | None = None


# ----------------------------------------------------------------------------- discovery
def _visible_nifti(names: list[str]) -> list[str]:
    return sorted(n for n in names if not n.startswith(".") and n.endswith(NIFTI_SUFFIXES))


def _folder_cases(root: Path) -> list[BratsCase]:
    """Cases of the BraTS 2018–2021 and 2023 folder layouts anywhere under ``root``."""
    found: dict[tuple[str, str], dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    groups: dict[tuple[str, str], str] = {}
    folders: dict[tuple[str, str], set[Path]] = defaultdict(set)
    strays: dict[Path, list[str]] = defaultdict(list)  # NIfTI files matching no pattern, per folder
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in _visible_nifti(filenames):
            for layout, pattern in _FOLDER_PATTERNS.items():
                match = pattern.match(name)
                if match:
                    key = (layout, match["case"])
                    found[key][_FOLDER_TAGS[layout][match["tag"]]].append(Path(dirpath) / name)
                    folders[key].add(Path(dirpath))
                    parent = Path(dirpath).parent.name
                    groups[key] = parent if parent.upper() in ("HGG", "LGG") else ""
                    break
            else:
                strays[Path(dirpath)].append(name)
    cases = []
    for (layout, case_id), files in sorted(found.items(), key=lambda kv: kv[0][1]):
        problems = []
        if len(folders[(layout, case_id)]) > 1:
            problems.append(f"files of this case lie in several folders: {sorted(map(str, folders[(layout, case_id)]))}")
        for modality, paths in files.items():
            if len(paths) > 1:
                problems.append(f"ambiguous {modality}: {[p.name for p in paths]}")
        missing = [m for m in MODALITIES if m not in files]
        if missing:
            problems.append(f"missing modality {', '.join(missing)}")
        stray = [n for folder in folders[(layout, case_id)] for n in strays.get(folder, [])]
        if "seg" not in files and stray:
            # e.g. BraTS 2020 case 355, whose label is named W39_1998.09.19_Segm.nii
            problems.append(f"no label named like the case but unrecognised NIfTI file(s) {stray}: "
                            f"rename the label to the case's _seg/-seg name or remove the file(s)")
        cases.append(
            BratsCase(
                case_id=case_id,
                layout=layout,
                modalities={m: files[m][0] for m in MODALITIES if m in files},
                label=files["seg"][0] if "seg" in files else None,
                label_convention=_LABEL_CONVENTION[layout],
                group=groups[(layout, case_id)],
                problems=tuple(problems),
            )
        )
    return cases


def _msd_channels(dataset: dict, json_path: Path) -> tuple[str, ...]:
    names = dataset.get("modality")
    if not isinstance(names, dict) or not names:
        raise ValueError(f"{json_path}: no 'modality' mapping, cannot tell the channel order")
    try:
        ordered = [str(names[k]) for k in sorted(names, key=int)]
        channels = tuple(MSD_MODALITY_NAMES[n.lower()] for n in ordered)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{json_path}: unexpected 'modality' {names}; expected the names {sorted(MSD_MODALITY_NAMES)}") from exc
    if sorted(channels) != sorted(MODALITIES):
        raise ValueError(f"{json_path}: 'modality' {names} does not name each of {MODALITIES} once")
    return channels


def _msd_cases(root: Path) -> list[BratsCase]:
    """Cases of an MSD Task01 folder (``root/dataset.json``)."""
    json_path = root / "dataset.json"
    try:
        dataset = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {json_path}: {exc}") from exc
    channels = _msd_channels(dataset, json_path)
    entries: list[tuple[str, str | None]] = []
    for item in dataset.get("training", []):
        entries.append((item["image"], item.get("label")))
    for item in dataset.get("test", []):
        entries.append((item if isinstance(item, str) else item["image"], None))
    cases = []
    for image_rel, label_rel in entries:
        image = (root / image_rel).resolve()
        if image.name.startswith("."):
            continue
        label = (root / label_rel).resolve() if label_rel else None
        problems = []
        if not image.is_file():
            problems.append(f"missing modality image file {image}")
        if label is not None and not label.is_file():
            problems.append(f"label file {label} listed in dataset.json does not exist")
        cases.append(
            BratsCase(
                case_id=_strip(image.name),
                layout="msd",
                image4d=image,
                channels=channels,
                label=label,
                label_convention="msd",
                group=image.parent.name,
                problems=tuple(problems),
            )
        )
    return sorted(cases, key=lambda c: c.case_id)


def _strip(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def find_brats_cases(root: str | os.PathLike) -> list[BratsCase]:
    """Discover every case under ``root`` (layouts in the module docstring), sorted by id.

    A case id found more than once gets a ``problems`` entry (each copy is reported, none is
    silently dropped).  Raises ``ValueError`` when ``root`` is not a folder or holds no case.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"BraTS source {root} is not a folder")
    msd_roots = [root] if (root / "dataset.json").is_file() else sorted(p.parent for p in root.glob("*/dataset.json"))
    cases = [c for r in msd_roots for c in _msd_cases(r)] if msd_roots else _folder_cases(root)
    if not cases:
        raise ValueError(
            f"no BraTS cases found under {root}: expected <case>/<case>_flair.nii.gz (BraTS 2018-2021), "
            f"<case>/<case>-t2f.nii.gz (BraTS 2023) or dataset.json + imagesTr/ (MSD Task01)"
        )
    counts: dict[str, int] = defaultdict(int)
    for case in cases:
        counts[case.case_id] += 1
    return [
        case if counts[case.case_id] == 1
        else replace(case, problems=(*case.problems, "case id found more than once under the source"))
        for case in cases
    ]


# ----------------------------------------------------------------------------- loading
def _read(case: BratsCase, path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        return read_nifti(path)
    except NiftiReadError as exc:
        raise CaseError(case.case_id, f"{exc.path.name}: {exc.reason}") from exc


def _check_finite(case: BratsCase, name: str, array: np.ndarray) -> None:
    bad = int(np.count_nonzero(~np.isfinite(array))) if array.dtype.kind == "f" else 0
    if bad:
        raise CaseError(case.case_id, f"{name}: {bad} NaN/inf voxels")


def _check_geometry(case: BratsCase, name: str, shape: tuple[int, ...], affine: np.ndarray,
                    ref_name: str, ref_shape: tuple[int, ...], ref_affine: np.ndarray) -> None:
    if shape != ref_shape:
        raise CaseError(case.case_id, f"shape mismatch: {name} {shape} vs {ref_name} {ref_shape}")
    if not np.allclose(affine, ref_affine, rtol=0.0, atol=AFFINE_ATOL):
        diff = float(np.abs(affine - ref_affine).max())
        raise CaseError(case.case_id, f"affine mismatch: {name} vs {ref_name} (max difference {diff:.4g})")


def _header(case: BratsCase, path: Path) -> dict[str, int | str]:
    try:
        return read_header_fields(path)
    except NiftiReadError as exc:
        raise CaseError(case.case_id, f"{exc.path.name}: {exc.reason}") from exc


def _load_image(case: BratsCase) -> tuple[np.ndarray, np.ndarray]:
    """(4, X, Y, Z) float32 in MODALITIES order and the affine."""
    if case.image4d is not None:
        data, affine = _read(case, case.image4d)
        if data.ndim != 4 or data.shape[-1] != len(case.channels):
            raise CaseError(case.case_id, f"{case.image4d.name}: expected a 4-D image with {len(case.channels)} "
                                          f"channels (X, Y, Z, C), got shape {data.shape}")
        _check_finite(case, case.image4d.name, data)
        order = [case.channels.index(m) for m in MODALITIES]
        return np.ascontiguousarray(np.moveaxis(data, -1, 0)[order], dtype=np.float32), affine
    volumes, ref = [], None
    for modality in MODALITIES:
        path = case.modalities[modality]
        data, affine = _read(case, path)
        if data.ndim == 4 and data.shape[-1] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise CaseError(case.case_id, f"{path.name}: expected a 3-D volume, got shape {data.shape}")
        _check_finite(case, path.name, data)
        if ref is None:
            ref = (path.name, data.shape, affine)
        else:
            _check_geometry(case, path.name, data.shape, affine, *ref)
        volumes.append(data.astype(np.float32, copy=False))
    assert ref is not None
    return np.stack(volumes), ref[2]


def _load_label(case: BratsCase, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """(X, Y, Z) uint8 in BraTS values."""
    assert case.label is not None
    data, label_affine = _read(case, case.label)
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    _check_finite(case, case.label.name, data)
    _check_geometry(case, case.label.name, data.shape, label_affine, "image", shape, affine)
    if data.dtype.kind == "f" and not np.array_equal(data, np.round(data)):
        raise CaseError(case.case_id, f"{case.label.name}: non-integral label values")
    try:
        remapped = remap_labels(data, CONVENTIONS[case.label_convention], case.label.name)
    except LabelValueError as exc:
        raise CaseError(case.case_id, f"{exc} (label convention {case.label_convention!r})") from exc
    return remapped.astype(np.uint8)


def load_case(case: BratsCase, with_label: bool = True) -> LoadedCase:
    """Read and validate ``case`` (see the module docstring); raise :class:`CaseError`."""
    if case.problems:
        raise CaseError(case.case_id, "; ".join(case.problems))
    image, affine = _load_image(case)
    label = _load_label(case, image.shape[1:], affine) if with_label and case.label is not None else None
    source = case.image4d if case.image4d is not None else case.modalities["flair"]
    return LoadedCase(case_id=case.case_id, image=image, label=label, affine=affine, header=_header(case, source))
