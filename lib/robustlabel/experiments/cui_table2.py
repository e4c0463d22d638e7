"""Cui et al., "Semi-supervised Learning using Robust Loss", Table 2 and Fig. 3 (BraTS).

Protocol (Sec. 3.2).  The labelled cases are split once into train / validation / test
(BraTS 2018 training, 285 cases: the paper's 200 / 28 / 57; see "Split" below).  For each
labelled share p of the training split and each repeat r (a different labelled subset), the
teacher–student orchestration (:func:`robustlabel.engine.teacher_student.run_rounds`) runs over
the BraTS steps (:class:`robustlabel.engine.segmentation_steps.SegmentationSteps`):

* Lower bound: a TransBTS teacher trained with CE on the p % labelled training cases;
* the teacher pseudo-labels the other (1 - p) % of the training split, whose true labels
  stay hidden;
* CE / BCE / GCE / SCE: students trained from scratch with CE on the true labels and CE,
  beta-CE (beta = 0.001), GCE (q = 0.7) or SCE (alpha = 0.01, gamma = 1) on the pseudo-labels
  (the rows of :mod:`robustlabel.experiments.cui_rows`);
* Upper bound (once per repeat): CE on 100 % of the training split with true labels (a
  teacher-only run of the same steps).

Every model is scored on the held-out test split with its last epoch (``select="last"``, the
default, as the seed paper, which used validation only to choose hyper-parameters) or with the
epoch of best mean WT/TC/ET validation Dice (``select="best"``): Dice of WT = {1, 2, 4},
TC = {1, 4} and ET = {4} (the paper's text says "ET (label 1)"; label 4 is the BraTS enhancing
tumour).  The table gives the mean (sample std) over repeats of each run's mean test Dice,
beside the paper's Table 2.  The teacher of a (p, r) is trained once and serves all four students.

Protocol choices (fields of :class:`Table2Config`, the script's options of the same names; each
is named in the table notes):

* ``select`` ``"last"|"best"``: the checkpoint that pseudo-labels and is scored (default last);
* ``mode`` ``"union"|"robust_all"|"per_source"``: how clinician and pseudo-label terms are
  weighted (default union: one mean over every voxel of the shuffled batch; robust_all: the
  robust loss on every sample, the seed's train_cv.py; per_source: 1:1 batches and the two
  per-source means added, the seed's train_2losses.py);
* ``precision`` ``"fp32"|"bf16"|"fp16"``: fp32 (default, as the seed) or autocast on CUDA;
* ``init`` ``"scratch"|"teacher"``: students start from random weights (default, the paper) or
  from their teacher's;
* ``lr``: Adam's initial learning rate (default 2e-4, the paper's).

Split: the case ids, sorted, are permuted with ``numpy.random.default_rng(split_seed)``
(:func:`robustlabel.engine.split_cases`) with validation share 28/285 (about 9.8 %) and test
share 57/285 (20 %), each rounded half up and at least one case: exactly 200 / 28 / 57 for the
285 BraTS 2018 training cases, the same proportions for any other count.  Labelled subset of
repeat r: the first ⌊p·N + ½⌋ training cases of a permutation drawn with seed r
(:func:`robustlabel.data.studies.select_labeled`), so for one repeat the 30 % subset lies inside
the 50 % one, which lies inside the 70 % one.

Data are imported once into ``out/studies`` (``data``: anything
:func:`robustlabel.data.brats.find_brats_cases` reads; ``quick``: synthetic phantoms written
into ``out``).  Outputs in ``out``: ``table2.{md,csv,json}``; ``fig3.png`` (mean test Dice vs p
for each method, one panel per region); ``fig3_paper.png`` (the same plot of the paper's
Table 2); ``split.json``; ``runs.json`` (every finished (row, p, repeat) run); ``runs/`` (engine
run folders: checkpoints, history, TensorBoard logs, pseudo-labels).  Re-running with the same
``out`` skips the finished runs and resumes interrupted training from the engine's ``last.pt``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from monai.utils import ensure_tuple_rep
from tqdm import tqdm

from robustlabel.atomic import write_json_atomic
from robustlabel.data.labels import REGIONS
from robustlabel.data.studies import FINAL, import_brats, read_manifest, select_labeled, studies_datalist
from robustlabel.data.synthetic import write_synthetic_brats
from robustlabel.engine.config import (INITS, PRECISIONS, SELECTIONS, TrainConfig, precision_name, precision_settings,
                                       precision_used)
from robustlabel.engine.distributed import barrier, broadcast_object, current, run_as_rank
from robustlabel.engine.pseudo_label import StudiesSink, labelling_dtype
from robustlabel.engine.rounds import split_cases
from robustlabel.engine.segmentation_steps import PseudoPool, SegmentationSteps
from robustlabel.engine.teacher_student import TEACHER, Job, Outcome, run_rounds
from robustlabel.engine.trainer import RESUMABLE_CHANGES, TrainResult
from robustlabel.experiments.cli import prepare_out_dir
from robustlabel.experiments.cui_rows import LOWER, ROWS, STUDENTS, UPPER, Row
from robustlabel.experiments.figures import PlotPanel, plot_panels
from robustlabel.experiments.store import ResultsStore, rank_zero_store
from robustlabel.experiments.tables import CellSummary, Measurement, PaperValue, table_cells, table_grid, write_report
from robustlabel.losses.hparams import PAPER_HPARAMS
from robustlabel.losses.source_aware import SOURCE_MODES
from robustlabel.machine import default_loader_workers, environment_info, resolve_device
from robustlabel.metrics.brats import BRATS_WORST_HD95
from robustlabel.metrics.statistics import mean_std
from robustlabel.networks import TINY_TRANSBTS

__all__ = [
    "FULL", "PAPER_TABLE2", "PAPER_UPPER", "QUICK", "Table2Config", "Table2Experiment", "Table2Steps",
    "labelled_subset", "reproduce_table2", "run_table2", "split_for_table2", "table2_config",
]

#: the dataset key of the paper's hyper-parameters (:data:`~robustlabel.losses.PAPER_HPARAMS`)
DATASET = "brats"


# --------------------------------------------------------------------------- the paper
#: BraTS 2018 training set and the paper's split of it (Sec. 3.2)
PAPER_N_CASES = 285
PAPER_SPLIT: dict[str, int] = {"train": 200, "val": 28, "test": 57}
VAL_FRACTION = PAPER_SPLIT["val"] / PAPER_N_CASES
TEST_FRACTION = PAPER_SPLIT["test"] / PAPER_N_CASES
#: labelled shares p (%) of Table 2
PAPER_FRACTIONS: tuple[int, ...] = (30, 50, 70)


#: Table 2 of the paper: row -> region -> (mean, std) at p = 30, 50, 70 % (PAPER_FRACTIONS).
#: The SCE / WT / 30 % cell is printed "0.850s(0.016)" in the paper; read as 0.850 (0.016).
PAPER_TABLE2: dict[str, dict[str, tuple[tuple[float, float], ...]]] = {
    "Lower bound": {
        "WT": ((0.834, 0.015), (0.845, 0.005), (0.864, 0.004)),
        "TC": ((0.722, 0.011), (0.746, 0.011), (0.772, 0.009)),
        "ET": ((0.613, 0.004), (0.634, 0.004), (0.648, 0.012)),
    },
    "CE": {
        "WT": ((0.842, 0.014), (0.858, 0.003), (0.870, 0.004)),
        "TC": ((0.747, 0.011), (0.768, 0.006), (0.781, 0.003)),
        "ET": ((0.634, 0.005), (0.648, 0.007), (0.655, 0.004)),
    },
    "BCE": {
        "WT": ((0.851, 0.013), (0.865, 0.006), (0.866, 0.003)),
        "TC": ((0.753, 0.009), (0.776, 0.010), (0.782, 0.005)),
        "ET": ((0.634, 0.008), (0.648, 0.008), (0.658, 0.002)),
    },
    "GCE": {
        "WT": ((0.848, 0.013), (0.865, 0.005), (0.865, 0.002)),
        "TC": ((0.756, 0.001), (0.779, 0.007), (0.786, 0.004)),
        "ET": ((0.638, 0.004), (0.653, 0.001), (0.662, 0.003)),
    },
    "SCE": {
        "WT": ((0.850, 0.016), (0.858, 0.006), (0.871, 0.002)),
        "TC": ((0.758, 0.015), (0.777, 0.006), (0.774, 0.009)),
        "ET": ((0.641, 0.010), (0.649, 0.005), (0.658, 0.007)),
    },
}
#: the paper's upper bound: one value per region (it does not depend on p)
PAPER_UPPER: dict[str, float] = {"WT": 0.873, "TC": 0.788, "ET": 0.668}


def column(region: str, percent: int) -> str:
    """Table column of ``region`` at labelled share ``percent``, e.g. ``"WT 30%"``."""
    return f"{region} {percent}%"


def table_columns(fractions: Sequence[int]) -> list[str]:
    """Columns in the paper's order: regions outer (WT, TC, ET), p inner."""
    return [column(region, p) for region in REGIONS for p in fractions]


def paper_values(fractions: Sequence[int]) -> dict[tuple[str, str], PaperValue]:
    """The paper's value of every ``(row, column)`` cell it reports, for the requested ``fractions``."""
    values: dict[tuple[str, str], PaperValue] = {}
    for p in fractions:
        for region in REGIONS:
            if p in PAPER_FRACTIONS:
                for row, by_region in PAPER_TABLE2.items():
                    values[(row, column(region, p))] = by_region[region][PAPER_FRACTIONS.index(p)]
            values[(UPPER.name, column(region, p))] = PAPER_UPPER[region]
    return values


# --------------------------------------------------------------------------- split
def split_for_table2(case_ids: Sequence[str], seed: int = 0) -> dict[str, list[str]]:
    """Seeded ``{"train", "val", "test"}`` split: the paper's 200 / 28 / 57 for 285 cases, the
    same proportions (validation 28/285, test 57/285, rounded half up, at least 1) otherwise."""
    return split_cases(case_ids, VAL_FRACTION, TEST_FRACTION, seed)


def labelled_subset(train_cases: Sequence[str], percent: int, seed: int) -> tuple[list[str], list[str]]:
    """``(labelled, pool)``: the ``⌊p·N + ½⌋`` labelled training cases of repeat ``seed`` and the
    rest, whose true labels are hidden and replaced by pseudo-labels.

    Raises:
        ValueError: when either part would be empty.
    """
    labelled = select_labeled(train_cases, percent / 100.0, seed)
    pool = sorted(set(train_cases) - labelled)
    if not labelled or not pool:
        raise ValueError(
            f"--fractions {percent} of {len(set(train_cases))} training cases leaves "
            f"{len(labelled)} labelled and {len(pool)} unlabelled cases; both must be >= 1 "
            "(use more cases or another fraction)"
        )
    return sorted(labelled), pool


# --------------------------------------------------------------------------- settings
#: --quick defaults and full (paper) defaults of the settings left unset (:func:`table2_config`)
QUICK: dict[str, Any] = {"epochs": 2, "batch_size": 2, "roi_size": [32], "repeats": 2, "val_interval": 1,
                         "cases": 12, "shape": [48]}
FULL: dict[str, Any] = {"epochs": 1000, "batch_size": 4, "roi_size": [128], "repeats": 3, "val_interval": 10}


def _cube(values: int | Sequence[int], name: str) -> tuple[int, int, int]:
    """``values`` (one int or 1 or 3 ints) as three ints (MONAI's ``ensure_tuple_rep``).

    Raises:
        ValueError: another count of values (the message names ``name``).
    """
    values = [values] if isinstance(values, int) else list(values)
    try:
        cube = ensure_tuple_rep(values[0] if len(values) == 1 else values, 3)
    except ValueError:
        raise ValueError(f"{name} takes 1 or 3 ints, got {values}") from None
    return tuple(int(v) for v in cube)  # type: ignore[return-value]


@dataclass(frozen=True)
class Table2Config:
    """Every setting of a Table-2 run (the script's options of the same names;
    :func:`table2_config` fills the quick or full defaults).

    Normalised on construction: ``roi_size`` and ``shape`` (1 or 3 ints) to three ints,
    ``fractions`` sorted without repeats; with ``quick``, unset ``cases`` / ``shape`` take the
    :data:`QUICK` values.  Derived: :attr:`torch_device`, :attr:`loader_workers` (``num_workers``,
    ``None``: 0 on CPU, up to 8 on CUDA) and :attr:`torch_threads` (``threads``, ``None``: 1 for
    ``quick`` on CPU, as the tiny network gains little from more and a busy shared CPU makes them
    many times slower, else torch's choice).

    Attributes:
        out: the output folder (results, run folders, imported studies).
        data: a BraTS / MSD Task01 folder (anything :func:`~robustlabel.data.brats.find_brats_cases` reads).
        quick: smoke test on synthetic phantoms written into ``out`` (instead of ``data``), tiny TransBTS.
        fractions: labelled shares p of the training split, in %.
        repeats: repeats with different labelled subsets, seeds ``0 .. repeats - 1``.
        split_seed: seed of the train / validation / test split.
        overwrite: delete ``runs.json`` and ``runs/`` first (with ``quick`` also the synthetic data
            and its studies).
        progress: show progress bars.
        epochs, batch_size, val_interval, lr, mode, device: the engine's
            :class:`~robustlabel.engine.config.TrainConfig` of every run (:meth:`train_config`).
        roi_size: training crop = sliding window = TransBTS ``img_size``, multiples of 8.
        select: the checkpoint that pseudo-labels and is scored (``"last"`` epoch or ``"best"``
            validation Dice).
        precision: ``"fp32"`` or ``"bf16"`` / ``"fp16"`` autocast on CUDA (CPU training always runs
            fp32; with an autocast precision the CPU's pool pseudo-labelling runs bf16 where native,
            :attr:`pool_precision`).
        init: students start from ``"scratch"`` or from their ``"teacher"``'s weights.
        num_workers: data-loader workers.
        threads: torch intra-op CPU threads.
        cases, shape: the synthetic phantoms of ``quick`` (number, volume size).

    Raises:
        ValueError: naming the bad field: not exactly one of ``data`` and ``quick``; ``cases`` /
            ``shape`` without ``quick``; ``data`` not a folder; ``roi_size`` not multiples of 8;
            ``cases < 4``; ``repeats`` or ``threads < 1``; ``fractions`` outside (0, 100); an
            unknown ``select``, ``mode``, ``precision``, ``init`` or ``device``; the engine's
            checks of ``epochs``, ``batch_size``, ``val_interval``, ``lr``, ``num_workers``.
    """

    out: Path
    data: Path | None = None
    quick: bool = False
    fractions: tuple[int, ...] = PAPER_FRACTIONS
    repeats: int = FULL["repeats"]
    split_seed: int = 0
    overwrite: bool = False
    progress: bool = True
    epochs: int = FULL["epochs"]
    batch_size: int = FULL["batch_size"]
    roi_size: tuple[int, ...] = tuple(FULL["roi_size"])
    val_interval: int = FULL["val_interval"]
    lr: float = TrainConfig.lr
    select: str = SELECTIONS[0]
    mode: str = SOURCE_MODES[0]
    precision: str = PRECISIONS[0]
    init: str = INITS[0]
    device: str = "auto"
    num_workers: int | None = None
    threads: int | None = None
    cases: int | None = None
    shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        def normalise(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        normalise("out", Path(self.out))
        normalise("data", None if self.data is None else Path(self.data))
        if (self.data is None) == (not self.quick):
            raise ValueError("data / quick: give exactly one of data (a BraTS folder) or quick (synthetic phantoms)")
        if self.data is not None and not self.data.is_dir():
            raise ValueError(f"data: {self.data} is not a folder")
        if not self.quick and (self.cases is not None or self.shape is not None):
            raise ValueError("cases / shape only apply to quick (synthetic data)")
        if self.quick:
            normalise("cases", QUICK["cases"] if self.cases is None else self.cases)
            normalise("shape", _cube(QUICK["shape"] if self.shape is None else self.shape, "shape"))
            if self.cases < 4:
                raise ValueError(f"cases must be >= 4 (train, labelled + unlabelled, val, test), got {self.cases}")
            if min(self.shape) < 1:
                raise ValueError(f"shape must be positive, got {self.shape}")
        normalise("roi_size", _cube(self.roi_size, "roi_size"))
        if any(s < 8 or s % 8 for s in self.roi_size):
            raise ValueError(f"roi_size must be positive multiples of 8 (TransBTS downsamples x8), got {self.roi_size}")
        if not isinstance(self.repeats, int) or self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats!r}")
        if not self.fractions or any(not 0 < f < 100 for f in self.fractions):
            raise ValueError(f"fractions must be shares strictly between 0 and 100 (%), got {list(self.fractions)}")
        normalise("fractions", tuple(sorted({int(f) for f in self.fractions})))
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        for name, choices in (("select", SELECTIONS), ("mode", SOURCE_MODES), ("precision", PRECISIONS),
                              ("init", INITS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        self.train_config()  # the device and the engine's own checks (epochs, batch_size, lr, ...)

    # ------------------------------------------------------------------ derived
    @property
    def torch_device(self) -> torch.device:
        """The device of every run (:func:`~robustlabel.machine.resolve_device`)."""
        return resolve_device(self.device)

    @property
    def loader_workers(self) -> int:
        """``num_workers``, else 0 on CPU and up to 8 on CUDA."""
        if self.num_workers is not None:
            return self.num_workers
        return default_loader_workers(self.torch_device)

    @property
    def torch_threads(self) -> int | None:
        """``threads``, else 1 for ``quick`` on CPU, else ``None`` (torch's choice)."""
        if self.threads is None and self.quick and self.torch_device.type == "cpu":
            return 1
        return self.threads

    @property
    def effective_precision(self) -> str:
        """What runs: ``precision`` on CUDA, always ``"fp32"`` on CPU."""
        settings = precision_settings(self.precision)
        return precision_used(settings["amp"], settings["amp_dtype"], self.torch_device)

    @property
    def pool_precision(self) -> str:
        """What the pool's pseudo-labelling runs in: as training on CUDA; on the CPU bf16 with an
        autocast ``precision`` where the CPU has native bf16 (:func:`~robustlabel.engine.pseudo_label.labelling_dtype`)."""
        settings = precision_settings(self.precision)
        return precision_name(labelling_dtype(self.torch_device, settings["amp"], settings["amp_dtype"]))

    def train_config(self) -> TrainConfig:
        """The engine recipe shared by every run (the loss on pseudo-labels and the seed vary).

        Raises:
            ValueError: from :class:`~robustlabel.engine.config.TrainConfig` or the device.
        """
        network = {**TINY_TRANSBTS} if self.quick else {}
        network["img_size"] = list(self.roi_size)
        return TrainConfig(
            network=network, roi_size=self.roi_size, batch_size=self.batch_size, epochs=self.epochs, lr=self.lr,
            val_interval=self.val_interval, num_workers=self.loader_workers, device=str(self.torch_device),
            mode=self.mode, **precision_settings(self.precision),
        )

    def settings(self) -> dict[str, Any]:
        """Every field as JSON values, with the derived device, workers and threads."""
        return {**asdict(self), "torch_device": str(self.torch_device), "num_workers": self.loader_workers,
                "threads": self.torch_threads}


def table2_config(quick: bool = False, **options: Any) -> Table2Config:
    """A :class:`Table2Config`: ``options`` that are not ``None`` win over the :data:`QUICK` (with
    ``quick``) or :data:`FULL` values, which win over the dataclass defaults.

    Raises:
        ValueError: an option :class:`Table2Config` does not have, or from :class:`Table2Config`.
    """
    unknown = sorted(set(options) - {f.name for f in fields(Table2Config)})
    if unknown:
        raise ValueError(f"unknown Table 2 setting(s) {unknown}")
    values = {**(QUICK if quick else FULL), **{k: v for k, v in options.items() if v is not None}}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return Table2Config(quick=quick, **values)


def results_fingerprint(config: Table2Config, cases: Sequence[str], data_note: str) -> dict[str, Any]:
    """Every setting that changes the numbers (a results file of other settings is refused)."""
    recipe = {k: v for k, v in config.train_config().to_dict().items()
              if k not in RESUMABLE_CHANGES | {"seed", "pseudo_loss", "pseudo_params"}}
    return {
        "data": data_note,
        "cases_sha256": hashlib.sha256("\n".join(sorted(cases)).encode()).hexdigest(),
        "n_cases": len(cases),
        "split_seed": config.split_seed,
        "train": recipe,
        "select": config.select,
        "init": config.init,
        "precision": config.effective_precision,
    }


# --------------------------------------------------------------------------- data
SYNTHETIC_DIR = "synthetic-brats"
STUDIES_DIR = "studies"
#: describes the synthetic phantoms in SYNTHETIC_DIR (so a changed ``cases`` / ``shape`` is noticed)
SYNTHETIC_SETTINGS = "settings.json"


def prepare_studies(config: Table2Config) -> tuple[Path, str]:
    """Import ``config.data`` (or freshly written synthetic phantoms) into ``out/studies`` once.

    Every labelled case gets a ``final`` label there; which of them the experiment treats as
    unlabelled is decided per (p, repeat), without touching the studies folder.  Returns the
    studies folder and a description of the data.

    Raises:
        SystemExit: ``out/studies`` holds cases of another source or other synthetic settings.
    """
    studies = config.out / STUDIES_DIR
    if config.quick:
        source = (config.out / SYNTHETIC_DIR).resolve()
        settings = {"cases": config.cases, "shape": list(config.shape), "seed": 0}
        note = (f"SYNTHETIC BraTS-like phantoms ({config.cases} cases of {'x'.join(map(str, config.shape))} voxels, "
                "robustlabel.data.synthetic, seed 0), not BraTS")
    else:
        source, settings = config.data.resolve(), None
        note = str(source)
    try:
        manifest = read_manifest(studies)
    except FileNotFoundError:
        manifest = {}
    if manifest:
        stored = _read_json(source / SYNTHETIC_SETTINGS) if settings is not None else None
        if manifest.get("source") != str(source) or stored != settings:
            raise SystemExit(
                f"error: {studies} was imported from {manifest.get('source')}"
                + (f" with synthetic settings {stored}" if settings is not None else "")
                + f", not from {source}" + (f" with {settings}" if settings is not None else "")
                + "; use another --out" + (" or --overwrite" if settings is not None else "")
            )
        return studies, note
    if settings is not None:
        write_synthetic_brats(source, cases=config.cases, shape=config.shape, seed=0, progress=config.progress)
        write_json_atomic(source / SYNTHETIC_SETTINGS, settings)
    report = import_brats(source, studies, labeled_fraction=1.0, seed=0, progress=config.progress,
                          labelled_only=True)
    print(report.format())
    return studies, note


def _read_json(path: Path) -> Any:
    """The JSON in ``path``, or ``None`` when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- experiment
@dataclass
class RunLog:
    """What one invocation did: ``trained`` and ``skipped`` run keys."""

    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def run_key(row: Row, repeat: int, percent: int | None = None) -> str:
    """The key of a (row, p, repeat) run in ``runs.json``: ``r0/p30/gce``; the upper bound ``r0/upper``."""
    return f"r{repeat}/{row.key}" if percent is None else f"r{repeat}/p{percent}/{row.key}"


class Table2Steps(SegmentationSteps):
    """The BraTS steps of one (p, repeat) (``percent=None``: the upper bound of a repeat) that
    read finished runs back from the results store and record every evaluated run in it.

    Run folders: ``runs/r<repeat>/p<percent>/{teacher, student_<row key>}`` and
    ``runs/r<repeat>/upper``; the pool's pseudo-labels go to ``runs/r<repeat>/p<percent>/pseudo``.
    """

    def __init__(self, experiment: Table2Experiment, repeat: int, percent: int | None,
                 labelled: list[str], pool: list[str]) -> None:
        exp = self.experiment = experiment
        self.repeat, self.percent, self.labelled_cases, self.pool_cases = repeat, percent, labelled, pool
        self.base = exp.folder(repeat, percent)
        # every case of the studies folder has its true final label; the experiment hides those of
        # the pool, so only the labelled subset counts as clinician-labelled (protected)
        hidden = frozenset(labelled)
        sink = StudiesSink(exp.studies, label_dir=self.base / "pseudo", confidence_dir=self.base / "pseudo_confidence",
                           protected=hidden.__contains__)
        super().__init__(
            [exp.items[c] for c in labelled], exp.val_items, exp.test_items,
            [{"image": exp.items[c]["image"], "case": c} for c in pool], sink, exp.train_config.replace(seed=repeat),
            self.run_folder, select=exp.config.select, strict=True,
            pool_truth=[exp.items[c] for c in pool] if percent is not None else None, progress=exp.progress,
        )
        self._started: dict[str, float] = {}
        self._teachers: dict[str, Path] = {}

    def row(self, job: Job) -> Row:
        if self.percent is None:
            return UPPER
        return LOWER if job.role == TEACHER else next(r for r in STUDENTS if r.key == job.name)

    def key(self, job: Job) -> str:
        return run_key(self.row(job), self.repeat, self.percent)

    def run_folder(self, job: Job) -> Path:
        if self.percent is None:
            return self.base
        return self.base / ("teacher" if job.role == TEACHER else f"student_{job.name}")

    def recorded(self, job: Job) -> dict[str, Any] | None:
        return self.experiment.store.get(self.key(job))

    def train(self, job: Job, pool: PseudoPool | None, init: TrainResult | None) -> TrainResult:
        key = self.key(job)
        self._started[key] = time.perf_counter()
        if pool is not None:
            self._teachers[key] = pool.teacher
        self.experiment.bar.set_postfix_str(key)
        return super().train(job, pool, init)

    def evaluate(self, job: Job, model: TrainResult) -> dict[str, Any]:
        """Score the selected checkpoint on the test split (a teacher also on the pool with its
        hidden true labels: the pseudo-labels' quality) and record the run."""
        key, row, result = self.key(job), self.row(job), super().evaluate(job, model)
        if self.percent is None:
            extra: dict[str, Any] = {"p": None, "repeat": self.repeat}
        elif job.role == TEACHER:
            extra = {"p": self.percent, "repeat": self.repeat, "labelled": self.labelled_cases, "pool": self.pool_cases}
        else:
            extra = {"p": self.percent, "repeat": self.repeat, "teacher": str(self._teachers[key])}
        record = {
            "row": row.name, **extra, "loss": result.loss,
            "train_final": result.train_final, "train_pseudo": result.train_pseudo,
            "checkpoint": str(result.checkpoint), "select": result.select, "best_epoch": model.best_epoch,
            "val_mean_dice": model.best_metric,
            "epochs": len(model.history), "resumed_from_epoch": model.start_epoch,
            "train_time_s": round(sum(h.get("time_s", 0.0) for h in model.history), 2),
            "test_summary": result.test_summary, "test_cases": result.test_rows,
        }
        if result.pool_summary is not None:
            record["pseudo_label_summary"] = result.pool_summary
        record["wall_s"] = round(time.perf_counter() - self._started[key], 2)
        self.experiment.store.put(key, record)
        return record


class Table2Experiment:
    """Runs, skips or resumes every (row, p, repeat) of Table 2 and records it in ``store``."""

    def __init__(self, config: Table2Config, studies: Path, split: dict[str, list[str]],
                 items: Mapping[str, dict[str, Any]], store: ResultsStore) -> None:
        self.config, self.studies, self.split, self.items, self.store = config, studies, split, items, store
        self.train_config = config.train_config()
        self.runs_dir = config.out / "runs"
        self.val_items = [items[c] for c in split["val"]]
        self.test_items = [items[c] for c in split["test"]]
        self.progress = config.progress
        self.done = RunLog()
        self.bar = tqdm(total=len(config.fractions) * config.repeats * (1 + len(STUDENTS)) + config.repeats,
                        desc="table2", unit="run", disable=not (self.progress and current().is_main))

    def folder(self, repeat: int, percent: int | None = None) -> Path:
        return self.runs_dir / f"r{repeat}" / ("upper" if percent is None else f"p{percent}")

    def _run(self, steps: Table2Steps, rows: Sequence[Row]) -> None:
        """The orchestration over ``steps`` with the student ``rows``; every run is logged as
        trained or skipped (read back from the store)."""
        def log(outcome: Outcome[TrainResult, dict[str, Any]]) -> None:
            (self.done.skipped if outcome.recorded else self.done.trained).append(steps.key(outcome.job))
            self.bar.update(1)

        run_rounds(steps, [row.student(DATASET) for row in rows], init=self.config.init, on_outcome=log)

    def run_upper(self, repeat: int) -> None:
        self._run(Table2Steps(self, repeat, None, list(self.split["train"]), []), rows=())

    def run_fraction(self, percent: int, repeat: int) -> None:
        labelled, pool = labelled_subset(self.split["train"], percent, repeat)
        self._run(Table2Steps(self, repeat, percent, labelled, pool), rows=STUDENTS)

    def run(self) -> RunLog:
        try:
            for repeat in range(self.config.repeats):
                for percent in self.config.fractions:
                    self.run_fraction(percent, repeat)
                self.run_upper(repeat)
        finally:
            self.bar.close()
        return self.done


# --------------------------------------------------------------------------- report
def collect_measurements(store: ResultsStore, fractions: Sequence[int], repeats: int) -> list[Measurement]:
    """One measurement per (row, region, p, repeat): the run's mean test Dice (the upper bound's
    runs appear in every p column)."""
    out = []
    for repeat in range(repeats):
        upper = store.get(run_key(UPPER, repeat))
        for percent in fractions:
            for row in ROWS:
                record = upper if row is UPPER else store.get(run_key(row, repeat, percent))
                if record is None:
                    continue
                for region in REGIONS:
                    value = record["test_summary"][f"dice_{region}"]["mean"]
                    out.append(Measurement(row.name, column(region, percent), value, repeat))
    return out


def pseudo_label_quality(store: ResultsStore, percent: int, repeats: int) -> dict[str, float] | None:
    """Mean over repeats of the teachers' Dice on the pool (their pseudo-labels against the hidden
    true labels) per region, or ``None`` until every repeat's teacher is recorded."""
    records = [store.get(run_key(LOWER, repeat, percent)) for repeat in range(repeats)]
    if not all(r is not None and "pseudo_label_summary" in r for r in records):
        return None
    return {region: mean_std(r["pseudo_label_summary"][f"dice_{region}"]["mean"] for r in records)["mean"]
            for region in REGIONS}


def report_notes(config: Table2Config, store: ResultsStore, split: dict[str, list[str]], data_note: str) -> list[str]:
    """Markdown bullet points: data, split, subsets, model, schedule, pseudo-label quality."""
    n = sum(len(v) for v in split.values())
    how = ("the paper's split" if n == PAPER_N_CASES else
           f"proportional split: validation {VAL_FRACTION:.2%} and test {TEST_FRACTION:.0%} of the cases "
           "(28/285 and 57/285)")
    sizes = {p: labelled_subset(split["train"], p, 0) for p in config.fractions}
    hparams = PAPER_HPARAMS[DATASET]
    train = config.train_config()
    network = f"tiny TransBTS {train.network}" if config.quick else "TransBTS"
    notes = [
        f"**Data:** {data_note}; {n} labelled cases",
        f"**Split (seed {config.split_seed}, {how}):** train {len(split['train'])} / validation {len(split['val'])} "
        f"/ test {len(split['test'])}; Dice on test",
        protocol_note(config),
        "**Labelled / pseudo-labelled training cases:** "
        + "; ".join(f"p = {p} %: {len(lab)} / {len(pool)}" for p, (lab, pool) in sizes.items())
        + " (a different labelled subset per repeat, seed = repeat)",
        f"**Model / schedule:** {network}, crop {'x'.join(map(str, config.roi_size))}, {train.epochs} epoch(s), "
        f"batch {train.batch_size}" + (f" per rank x {current().world_size} ranks" if current().world_size > 1 else "")
        + f", Adam lr {train.lr:g} with poly decay (power {train.poly_power:g}), weight "
        f"decay {train.weight_decay:g}, validation every {train.val_interval} epoch(s)",
        f"**Losses on pseudo-labels:** CE; BCE = beta-CE with beta = {hparams['bce']['beta']:g}; GCE with q = "
        f"{hparams['gce']['q']:g}; SCE with alpha = {hparams['sce']['alpha']:g}, gamma = {hparams['sce']['gamma']:g}; "
        "CE on the true labels in every row",
        "**Regions:** WT = {1, 2, 4}, TC = {1, 4}, ET = {4} (the paper's text says ET = label 1, a misprint)",
        "**Upper bound:** trained once per repeat on the whole training split; the same runs fill every p column",
        f"**CPU threads / data-loader workers (this invocation):** {torch.get_num_threads()} / {config.loader_workers}",
    ]
    quality = {p: q for p in config.fractions if (q := pseudo_label_quality(store, p, config.repeats)) is not None}
    if quality:
        notes.append("**Pseudo-label Dice of the teachers on the pool (hidden true labels), mean over repeats:** "
                     + "; ".join(f"p = {p} %: " + ", ".join(f"{g} {d:.3f}" for g, d in q.items())
                                 for p, q in quality.items()))
    return notes


def protocol_note(config: Table2Config) -> str:
    """The table-notes line naming every protocol choice of the run (``select``, ``mode``,
    ``precision``, ``init``, ``lr``, as the script's options)."""
    scored = ("the last epoch (as the paper; validation only reported)" if config.select == "last"
              else "the epoch of best mean validation Dice")
    modes = {"union": "union (one mean over every voxel of the shuffled batch)",
             "robust_all": "robust_all (the robust loss on clinician samples too, as the seed's train_cv.py)",
             "per_source": "per_source (1:1 clinician/pseudo batches, per-source means added, as the seed's "
                           "train_2losses.py)"}
    return (f"**Protocol:** --select {config.select}: scored and pseudo-labelling checkpoint = {scored}; --mode "
            f"{modes[config.mode]}; --precision {config.precision} (ran in {config.effective_precision} on "
            f"{config.torch_device.type}; pool pseudo-labelling in {config.pool_precision}); --init {config.init} (students start from "
            f"{'random weights, as the paper' if config.init == 'scratch' else 'their teacher'}); --lr {config.lr:g}; "
            f"HD95 of a region missing from exactly one of prediction and truth = {BRATS_WORST_HD95} mm")


def fig3_panels(cells: Sequence[CellSummary], fractions: Sequence[int], paper: bool = False) -> list[PlotPanel]:
    """One panel per region: mean Dice (± std) vs p for every method with a value, ours (the
    cells' mean and std) or, with ``paper``, the paper's."""
    by_key = table_grid(cells)[2]
    panels = []
    for region in REGIONS:
        series, errors = {}, {}
        for row in ROWS:
            found = [by_key.get((row.name, column(region, p))) for p in fractions]
            means = [None if c is None else (c.paper if paper else c.mean) for c in found]
            if any(mean is not None for mean in means):
                series[row.name] = means
                errors[row.name] = [None if c is None else (c.paper_std if paper else c.std) for c in found]
        panels.append(PlotPanel(region, [f"{p}%" for p in fractions], series=series, errors=errors,
                                ylabel="mean Dice (test)", xlabel="p (labelled share of the training split)"))
    return panels


def write_outputs(config: Table2Config, store: ResultsStore, split: dict[str, list[str]], data_note: str,
                  done: RunLog) -> Path:
    """table2.{csv,json,md} and fig3.png / fig3_paper.png through robustlabel.experiments.tables and .figures."""
    rows = [row.name for row in ROWS]
    files = write_report(
        config.out, "table2",
        title="Cui et al. Table 2: BraTS test Dice (WT / TC / ET) vs labelled share p "
              "(teacher–student, robust loss on pseudo-labels)",
        measurements=collect_measurements(store, config.fractions, config.repeats),
        paper=paper_values(config.fractions), rows=rows, columns=table_columns(config.fractions),
        quick=config.quick, environment=environment_info(config.torch_device), decimals=3,
        paper_source="Cui et al., Table 2 (mean (std) over 3 repeats; upper bound: one value per region)",
        unit="Dice", notes=report_notes(config, store, split, data_note),
        extra={"settings": config.settings(),
               "split": split, "this_invocation": {"trained": done.trained, "skipped": done.skipped},
               "runs": {k: {f: v for f, v in r.items() if f != "test_cases"} for k, r in store.runs.items()}},
    )
    plot_panels(config.out / "fig3.png", fig3_panels(files.cells, config.fractions), kind="line",
                suptitle="Fig. 3 (ours" + (", QUICK synthetic run" if config.quick else "") + "): mean test Dice vs p")
    paper_fractions = [p for p in config.fractions if p in PAPER_FRACTIONS] or list(PAPER_FRACTIONS)
    paper_cells = table_cells((), paper_values(paper_fractions), rows, table_columns(paper_fractions))
    plot_panels(config.out / "fig3_paper.png", fig3_panels(paper_cells, paper_fractions, paper=True), kind="line",
                suptitle="Fig. 3 from the paper's Table 2 (Cui et al.)")
    return files.markdown


# --------------------------------------------------------------------------- main
def run_table2(config: Table2Config, main_rank: bool = True) -> Path | None:
    """One rank's share of Table 2 (every training is data parallel, every pool sharded over the
    ranks); rank 0 prepares the output folder and the data, writes every file and prints the
    table and the runs it trained and skipped.  Returns the Markdown table (``None`` on other ranks).

    Raises:
        SystemExit: data that cannot be imported, an ``out`` of other data, a split too small
            for a fraction.
        ValueError: results in ``out`` for other settings (:class:`~robustlabel.experiments.store.ResultsStore`).
    """
    if main_rank:
        prepare_out_dir(config.out, overwrite=config.overwrite, threads=config.torch_threads,
                        remove=["runs", "runs.json"] + ([SYNTHETIC_DIR, STUDIES_DIR] if config.quick else []))
        studies, data_note = prepare_studies(config)
    else:
        prepare_out_dir(config.out, overwrite=False, threads=config.torch_threads)
    studies, data_note = broadcast_object((studies, data_note) if main_rank else None)
    items = {item["case"]: item for item in studies_datalist(studies, sources=(FINAL,))}
    if not items:
        raise SystemExit(f"error: no labelled case could be imported into {studies} (see the import report above)")
    try:
        split = split_for_table2(list(items), config.split_seed)
        for p in config.fractions:
            labelled_subset(split["train"], p, 0)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from exc
    if main_rank:
        write_json_atomic(config.out / "split.json", split)
    store = rank_zero_store(config.out / "runs.json", results_fingerprint(config, list(items), data_note))
    done = Table2Experiment(config, studies, split, items, store).run()
    barrier()
    if not main_rank:
        return None
    markdown = write_outputs(config, store, split, data_note, done)
    print(markdown.read_text())
    print(f"runs trained: {len(done.trained)}, skipped (finished earlier, read from {store.path}): {len(done.skipped)}")
    return markdown


def reproduce_table2(config: Table2Config) -> Path | None:
    """Table 2 as one rank of the job (a single process outside ``torchrun``): :func:`run_table2`
    inside :func:`~robustlabel.engine.distributed.run_as_rank`."""
    return run_as_rank(run_table2, config, config.device)
