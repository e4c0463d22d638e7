"""Where the images of the two PASCAL VOC experiments (:mod:`.ju_voc_segmentation`,
:mod:`.ju_voc_transfer`) come from: real VOC2011 (+ SBD) or a synthetic tree written in the same
layouts, read as single-object images, and the table notes that describe them."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from robustlabel.data.voc import VocSelection, load_voc_single_objects, write_synthetic_voc

#: a synthetic VOC tree (``synthetic=True``): full-size (H, W) of its images, and its folder under the output
SYNTHETIC_SIZE = (192, 256)
SYNTHETIC_DIR = "synthetic-voc"
#: synthetic images per class in (train, val) by default
SYNTHETIC_PER_CLASS = (4, 2)
TEST_SET_NOTE = ("**Test set:** VOC2011 `val` (single-object images): the VOC2011 test labels are not public; "
                 "SBD images listed in VOC2011 val never enter training")


@dataclass(frozen=True)
class VocData:
    """The data source of a VOC experiment.

    Attributes:
        voc: a VOC2011 devkit (``TrainVal/VOCdevkit/VOC2011`` or a folder above it).
        sbd: optional SBD ``benchmark_RELEASE/dataset`` folder (extra training images).
        synthetic: write and use a tiny synthetic VOC2011 + SBD tree under the output folder
            instead (nothing is downloaded).
        synthetic_per_class: synthetic images per class in (train, val).
        subsample: integer image down-sampling factor (thesis: 4).

    Raises:
        ValueError: not exactly one of ``voc`` and ``synthetic``, ``sbd`` with ``synthetic``, or a
            non-positive ``subsample`` / ``synthetic_per_class``.
    """

    voc: Path | None = None
    sbd: Path | None = None
    synthetic: bool = False
    synthetic_per_class: tuple[int, int] = SYNTHETIC_PER_CLASS
    subsample: int = 4

    def __post_init__(self) -> None:
        for name in ("voc", "sbd"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "synthetic_per_class", tuple(int(n) for n in self.synthetic_per_class))
        if (self.voc is None) == (not self.synthetic):
            raise ValueError("give exactly one of --voc PATH (real VOC2011) or --synthetic")
        if self.synthetic and self.sbd is not None:
            raise ValueError("--sbd goes with --voc; --synthetic writes its own SBD tree")
        if len(self.synthetic_per_class) != 2 or min(self.synthetic_per_class) < 1:
            raise ValueError(f"synthetic_per_class must be two positive counts (train, val), got {self.synthetic_per_class}")
        if int(self.subsample) < 1:
            raise ValueError(f"subsample must be >= 1, got {self.subsample}")

    def fingerprint(self, selection: VocSelection) -> dict[str, Any]:
        """The data part of a results folder's fingerprint (what a resumed run must match)."""
        return {"data": "synthetic" if self.synthetic else str(self.voc), "sbd": str(self.sbd),
                "n_train": len(selection.train), "n_test": len(selection.test), "subsample": self.subsample}


@dataclass(frozen=True)
class RunOptions:
    """How a VOC experiment runs, as opposed to what it computes (none of these enters the results'
    fingerprint).

    Attributes:
        quick: a smoke run: the outputs say QUICK and no resumable states are written (the
            transfer experiment also keeps its pre-trained weights in memory).
        overwrite: discard the finished runs in the output folder and start over.
        threads: torch CPU threads (``None``: leave them).
        progress: show tqdm bars.
    """

    quick: bool = False
    overwrite: bool = False
    threads: int | None = None
    progress: bool = True


def prepare_data(data: VocData, out: str | os.PathLike, progress: bool = True) -> tuple[VocSelection, str]:
    """Write the synthetic tree under ``out`` when asked, and read the single-object images.

    Returns:
        the selection and a Markdown note on the data.

    Raises:
        FileNotFoundError: ``data.voc`` holds no VOC2011 devkit.
    """
    voc, sbd = data.voc, data.sbd
    if data.synthetic:
        voc, sbd = write_synthetic_voc(Path(out) / SYNTHETIC_DIR, n_train_per_class=data.synthetic_per_class[0],
                                       n_val_per_class=data.synthetic_per_class[1], size=SYNTHETIC_SIZE,
                                       with_sbd=True, seed=0)
    selection = load_voc_single_objects(voc, sbd, subsample=data.subsample, progress=progress)
    c = selection.counts
    source = f"SYNTHETIC VOC-layout images ({voc}), not PASCAL VOC" if data.synthetic else f"VOC2011 from {voc}"
    if sbd is not None:
        source += f" + SBD from {sbd}"
    note = (f"**Data:** {source}; single-object images kept: train {c['train']} (VOC {c['voc_train_single_object']} of "
            f"{c['voc_train_listed']}, SBD {c['sbd_train_single_object']} of {c['sbd_train_listed']}), test "
            f"{c['test']} (of {c['voc_val_listed']} VOC val); SBD images in VOC val excluded: "
            f"{c['sbd_excluded_in_voc_val']}; images subsampled by {data.subsample}")
    if selection.skipped:
        note += f"; **skipped unreadable files ({len(selection.skipped)}):** " + "; ".join(selection.skipped)
    return selection, note


def mode_label(data: VocData, quick: bool) -> str:
    """Figure subtitle part: the data and whether the numbers are comparable to the thesis."""
    name = "SYNTHETIC data" if data.synthetic else "VOC2011"
    return f"{name}, QUICK — not comparable to the thesis" if quick or data.synthetic else name


def run_settings(data: VocData, config: Any, options: RunOptions, out: Path) -> dict[str, Any]:
    """Every setting of a run for the report's JSON: the fields of ``data``, of the dataclass
    ``config`` and of ``options``, and ``out``; paths as strings."""
    values = {**asdict(data), **asdict(config), **asdict(options), "out": out}
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
