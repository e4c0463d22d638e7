"""The MONAI Label studies folder (datastore) that ``robustlabel import-brats`` builds.

Layout (docs/CONTRACTS.md)::

    STUDIES/
      <case>.nii.gz               3-D FLAIR, float32: the one image per case the datastore lists
      modalities/<case>.nii.gz    4-D (X, Y, Z, 4) float32, channels MODALITIES, same affine
      labels/final/<case>.nii.gz  clinician labels (uint8, BraTS values), labelled fraction only
      labels/pseudo/<case>.nii.gz pseudo-labels (written by the engine, never where final exists)
      robustlabel_manifest.json   {"source", "seed", "labeled_fraction", "labeled", "unlabeled",
                                   "skipped": {case: reason}, "layout", "modalities"}

Why ``modalities/`` stays invisible to MONAI Label: in monailabel 0.8.5,
``monailabel/datastore/local.py`` lists images with ``LocalDatastore._list_files(path, patterns)``,
which is ``fnmatch.filter(os.listdir(path), pattern)`` on the images folder only (``images_dir="."``
= the studies folder); it does not recurse, so ``modalities/<case>.nii.gz`` is never an image,
and labels are read from ``labels/<tag>/`` only for ids that are images.  ``fnmatch`` does match
names that start with a dot, so temporary files here end in ``.tmp`` (never ``.nii*``).
(Checked by ``tests/data/test_studies.py::test_monailabel_datastore_lists_one_image_per_case``.)

Import, case by case (a bad case never stops the others):

1. discover the cases of ``SRC`` (:func:`robustlabel.data.brats.find_brats_cases`);
2. choose the labelled cases: of the cases whose source has a label, sorted by id, the first
   ``⌊P·n + ½⌋`` of a permutation drawn with ``numpy.random.default_rng(seed)`` (the choice does
   not depend on which cases later fail to load);
3. refuse any case that already has a ``labels/final`` file (a clinician label is never
   overwritten; the case is left untouched and the refusal reported);
4. load and validate it (:func:`robustlabel.data.brats.load_case`; every case's label is
   validated, even where it is not imported); a :class:`~robustlabel.data.brats.CaseError` skips it;
5. write it atomically: modalities, label and display image are serialised and written to
   hidden temporary files first, then renamed into place with the display image **last**, so a
   datastore scan never sees a half case and a failing case leaves nothing behind;
6. merge the manifest (cases of earlier imports are kept; this run's cases replace their old
   entries) and print a report with the skipped cases and their reasons.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .brats import CaseError, LoadedCase, find_brats_cases, load_case
from .labels import MODALITIES
from ..atomic import write_files_atomic, write_json_atomic
from .nifti import NIFTI_SUFFIXES, nifti_file_bytes, strip_nifti_suffix

logger = logging.getLogger(__name__)

MANIFEST_NAME = "robustlabel_manifest.json"
MODALITIES_DIR = "modalities"
LABELS_DIR = "labels"
#: datastore tag of clinician labels (MONAI Label's ``DefaultLabelTag.FINAL``): ground truth, never a model's output
FINAL = "final"
#: datastore tag of the teacher's pool pseudo-labels; the one place both tags are defined
PSEUDO = "pseudo"
#: file suffix of everything import-brats writes
STUDY_SUFFIX = ".nii.gz"


# ----------------------------------------------------------------------------- paths
def modalities_path(image_path: str | os.PathLike) -> Path:
    """``STUDIES/<case>.nii.gz`` → ``STUDIES/modalities/<case>.nii.gz`` (same file name)."""
    image_path = Path(image_path)
    strip_nifti_suffix(image_path.name)
    return image_path.parent / MODALITIES_DIR / image_path.name


def label_path(studies: str | os.PathLike, case: str, tag: str) -> Path | None:
    """The existing ``labels/<tag>/<case>.nii[.gz]`` file, or ``None``."""
    folder = Path(studies) / LABELS_DIR / tag
    for suffix in NIFTI_SUFFIXES:
        if (folder / f"{case}{suffix}").is_file():
            return folder / f"{case}{suffix}"
    return None


def study_images(studies: str | os.PathLike) -> dict[str, Path]:
    """``{case: top-level image}`` of a studies folder (what the datastore lists), sorted by case."""
    studies = Path(studies)
    if not studies.is_dir():
        raise ValueError(f"studies folder {studies} does not exist")
    images = {}
    for path in sorted(studies.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.name.endswith(NIFTI_SUFFIXES):
            images[strip_nifti_suffix(path.name)] = path
    return images


def _cases_with_modalities(studies: str | os.PathLike) -> dict[str, Path]:
    out = {}
    for case, image in study_images(studies).items():
        four_d = modalities_path(image)
        if four_d.is_file():
            out[case] = four_d
        else:
            logger.warning("studies: %s has no 4-D modalities file %s; left out", image, four_d)
    return out


def studies_datalist(
    studies: str | os.PathLike, sources: Sequence[str] = (FINAL, PSEUDO)
) -> list[dict[str, str]]:
    """Training items ``{"image": 4-D path, "label": path, "source": tag, "case": id}``.

    For each case the first tag of ``sources`` with a label file wins, except that a ``final``
    label always wins: a case with a final label never yields a (stale) pseudo-label item,
    even when ``"final"`` is not in ``sources``.  Cases without a 4-D modalities file are
    left out with a warning.
    """
    if isinstance(sources, str) or not sources:
        raise ValueError(f"sources must be a non-empty sequence of label tags, got {sources!r}")
    items = []
    for case, four_d in _cases_with_modalities(studies).items():
        final = label_path(studies, case, FINAL)
        if final is not None:
            if FINAL in sources:
                items.append({"image": str(four_d), "label": str(final), "source": FINAL, "case": case})
            continue
        for tag in sources:
            label = None if tag == FINAL else label_path(studies, case, tag)
            if label is not None:
                items.append({"image": str(four_d), "label": str(label), "source": tag, "case": case})
                break
    return items


def unlabeled_datalist(studies: str | os.PathLike) -> list[dict[str, str]]:
    """Pool items ``{"image": 4-D path, "case": id, "display": top-level image}`` of every case
    without a ``final`` label (MONAI Label's meaning of "unlabelled")."""
    images = study_images(studies)
    return [
        {"image": str(four_d), "case": case, "display": str(images[case])}
        for case, four_d in _cases_with_modalities(studies).items()
        if label_path(studies, case, FINAL) is None
    ]


def read_manifest(studies: str | os.PathLike) -> dict:
    """The ``robustlabel_manifest.json`` of a studies folder; ``FileNotFoundError``/``ValueError``."""
    path = Path(studies) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: was {studies} built with `robustlabel import-brats`?")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return manifest


# ----------------------------------------------------------------------------- import
def select_labeled(case_ids: Sequence[str], fraction: float, seed: int) -> set[str]:
    """The ``⌊fraction·n + ½⌋`` cases of a seeded permutation of the sorted ``case_ids``."""
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"labeled fraction must lie in [0, 1], got {fraction}")
    ordered = sorted(set(case_ids))
    count = math.floor(fraction * len(ordered) + 0.5)
    permutation = np.random.default_rng(int(seed)).permutation(len(ordered))
    return {ordered[i] for i in permutation[:count]}


def write_study_case(studies: str | os.PathLike, loaded: LoadedCase, with_label: bool) -> None:
    """Write one validated case into ``studies`` atomically (display image renamed last)."""
    studies = Path(studies)
    name = f"{loaded.case_id}{STUDY_SUFFIX}"
    header = loaded.header  # every file keeps the source image's qform/sform codes and units
    files = [(studies / MODALITIES_DIR / name,
              nifti_file_bytes(name, np.moveaxis(loaded.image, 0, -1), loaded.affine, header))]
    if with_label:
        if loaded.label is None:
            raise ValueError(f"case {loaded.case_id}: asked to write a final label but the case has none")
        files.append((studies / LABELS_DIR / FINAL / name, nifti_file_bytes(name, loaded.label, loaded.affine, header)))
    flair = loaded.image[MODALITIES.index("flair")]
    files.append((studies / name, nifti_file_bytes(name, flair, loaded.affine, header)))
    write_files_atomic(files)


@dataclass
class ImportReport:
    """Outcome of :func:`import_brats` (this run only)."""

    studies: Path
    layout: str
    labeled: list[str] = field(default_factory=list)
    unlabeled: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    #: source cases without a label, not imported because of ``labelled_only``
    left_out: list[str] = field(default_factory=list)

    def format(self) -> str:
        """A plain-text summary with a table of the skipped cases and their reasons."""
        lines = [
            f"imported {len(self.labeled) + len(self.unlabeled)} cases into {self.studies} "
            f"({len(self.labeled)} with a final label, {len(self.unlabeled)} unlabelled; layout {self.layout}); "
            f"skipped {len(self.skipped)}"
            + (f"; left out {len(self.left_out)} source case(s) without a label (labelled only)" if self.left_out else "")
        ]
        if self.skipped:
            width = max(len("case"), *(len(c) for c in self.skipped))
            lines += ["", f"{'case':<{width}}  reason", f"{'-' * width}  {'-' * 6}"]
            lines += [f"{case:<{width}}  {reason}" for case, reason in sorted(self.skipped.items())]
        return "\n".join(lines)


def _merge_manifest(studies: Path, report: ImportReport, source: Path, seed: int, fraction: float) -> dict:
    try:
        old = read_manifest(studies)
    except FileNotFoundError:
        old = {}
    done = set(report.labeled) | set(report.unlabeled)
    labeled = (set(old.get("labeled", [])) - done) | set(report.labeled)
    unlabeled = (set(old.get("unlabeled", [])) - done) | set(report.unlabeled)
    kept = labeled | unlabeled
    skipped = {c: r for c, r in old.get("skipped", {}).items() if c not in kept}
    skipped.update({c: r for c, r in report.skipped.items() if c not in kept})
    return {
        "source": str(source),
        "seed": int(seed),
        "labeled_fraction": float(fraction),
        "labeled": sorted(labeled),
        "unlabeled": sorted(unlabeled),
        "skipped": dict(sorted(skipped.items())),
        "layout": report.layout,
        "modalities": list(MODALITIES),
    }


def import_brats(
    src: str | os.PathLike,
    studies: str | os.PathLike,
    labeled_fraction: float = 1.0,
    seed: int = 0,
    progress: bool = True,
    labelled_only: bool = False,
) -> ImportReport:
    """Build (or extend) a studies folder from a BraTS source folder; see the module docstring.

    Args:
        src: the BraTS source folder (:func:`~robustlabel.data.brats.find_brats_cases`).
        studies: the studies folder to create or extend.
        labeled_fraction: share ``P`` of the labelled source cases imported with a ``final`` label.
        seed: seed of that choice.
        progress: show a tqdm bar.
        labelled_only: import only the source cases that have a label (MSD's ``imagesTs`` and
            other unlabelled cases are left out and listed in ``ImportReport.left_out``); the
            default ``False`` imports them as unlabelled pool cases.
    """
    src, studies = Path(src).resolve(), Path(studies)
    cases = find_brats_cases(src)
    left_out = sorted(c.case_id for c in cases if c.label is None) if labelled_only else []
    if labelled_only:
        cases = [c for c in cases if c.label is not None]
    labeled = select_labeled([c.case_id for c in cases if c.label is not None], labeled_fraction, seed)
    layouts = sorted({c.layout for c in cases})
    report = ImportReport(studies=studies, layout=layouts[0] if len(layouts) == 1 else ("mixed:" + ",".join(layouts) if layouts else "none"),
                          left_out=left_out)
    studies.mkdir(parents=True, exist_ok=True)
    for case in tqdm(cases, desc="import-brats", unit="case", disable=not progress):
        existing = label_path(studies, case.case_id, FINAL)
        if existing is not None:
            report.skipped[case.case_id] = (
                f"{existing.relative_to(studies)} already exists (clinician label); refusing to overwrite it"
            )
            continue
        try:
            loaded = load_case(case)
            write_study_case(studies, loaded, with_label=case.case_id in labeled)
        except CaseError as exc:
            report.skipped[case.case_id] = exc.reason
            continue
        (report.labeled if case.case_id in labeled else report.unlabeled).append(case.case_id)
    manifest = _merge_manifest(studies, report, src, seed, labeled_fraction)
    write_json_atomic(studies / MANIFEST_NAME, manifest)
    return report
