"""Teacher–student rounds on a studies folder (Cui et al., Sec. 2.2), with held-out evaluation.

1. **Split** the clinician-labelled (``final``) cases, sorted by id, with a permutation drawn
   from ``numpy.random.default_rng(split_seed)``: ``n_test = max(1, ⌊0.2·n + ½⌋)`` held-out
   test cases, ``n_val = max(1, ⌊0.1·n + ½⌋)`` validation cases (model selection), the rest for
   training (at least 1, so at least 3 clinician-labelled cases are needed).  The fractions
   round the seed paper's BraTS split 200 / 28 / 57 to 70 / 10 / 20 % (285 cases give
   199 / 29 / 57; ``val_fraction=28/285, test_fraction=57/285`` reproduce it exactly, as
   :mod:`robustlabel.experiments.cui_table2` does).
2. **Round 0, teacher**: CE on the training ``final`` labels only ("lower bound" of the paper).
3. **Pseudo-label** every case without a ``final`` label (the pool) with the teacher's
   selected checkpoint (``select``: ``best.pt``, the best validation Dice, by default;
   ``last.pt``, the last epoch, as the seed paper) (:class:`~robustlabel.engine.pseudo_label.PseudoLabeller`).
4. **Round k ≥ 1, student**: trained on the training ``final`` labels (CE) and the pool's
   pseudo-labels (the robust loss, e.g. GCE with q = 0.7), weighted by ``train.mode``, from
   scratch (``init="scratch"``, the paper) or from the teacher's weights (``init="teacher"``).
   With ``rounds > 1`` the student of round k is the teacher of round k + 1 (steps 3–4 again).
5. Every round's selected checkpoint is scored on the held-out test cases (WT/TC/ET Dice and
   HD95, the BraTS worst case 373.13 mm for a region missed or hallucinated; ``n`` is printed
   beside every mean).

Steps 2–5 are :func:`~robustlabel.engine.teacher_student.run_rounds` over the BraTS steps
(:class:`~robustlabel.engine.segmentation_steps.SegmentationSteps`); this module adds the split,
the reports and the clinician-label check of a studies folder.

Output in ``out_dir``: ``split.json``, ``round_0_teacher/``, ``round_<k>_student/`` (each a
:func:`~robustlabel.engine.train` run folder), ``results.json`` (config, split, per-case and
summary scores per round), ``results.csv`` (one row per round) and ``results.md`` (the table).
Everything resumes: training from ``last.pt``, pseudo-labelling by skipping cases already
labelled by the same teacher.  The clinician ``final`` files are hashed before and after; a
change raises ``RuntimeError`` (it cannot happen through this code, see the writer's guard).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_bytes_atomic, write_json_atomic
from ..data.labels import REGIONS
from ..data.studies import FINAL, studies_datalist, unlabeled_datalist
from ..losses import get_loss
from ..machine import resolve_device
from ..markdown import markdown_table
from ..metrics.brats import BRATS_WORST_HD95
from ..metrics.statistics import format_mean_std
from .checkpoint import sha256_file
from .config import INITS, SELECTIONS, TrainConfig, precision_name, precision_used
from .datalist import require_clinician_labels
from .distributed import current
from .pseudo_label import StudiesSink, labelling_dtype
from .segmentation_steps import RoundResult, SegmentationSteps
from .teacher_student import Outcome, StudentSpec, run_rounds
from .trainer import EpochCallback

VAL_FRACTION = 0.1
TEST_FRACTION = 0.2
SPLIT_NAME = "split.json"
RESULTS_NAME = "results"

Event = dict[str, Any]


@dataclass
class RoundsConfig:
    """Settings of :func:`run_teacher_student`.

    Attributes:
        train: the training recipe of every round; the teacher uses it with CE on its
            (clinician-only) data, students with ``train.pseudo_loss``/``pseudo_params``.
        rounds: student rounds ``K ≥ 1``.
        val_fraction, test_fraction: of the clinician-labelled cases (module docstring).
        split_seed: seed of the split.
        pseudo_dir: where pseudo-labels go (default ``STUDIES/labels/pseudo``).
        pseudo_batch_size: volumes per pseudo-labelling forward pass.
        save_confidence: also store voxel-confidence maps.
        select: the checkpoint of each round that pseudo-labels and is scored: ``"best"``
            (best validation Dice, default) or ``"last"`` (the last epoch, as the seed paper).
        init: a student's initial weights: ``"scratch"`` (default, the paper) or ``"teacher"``.
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    rounds: int = 1
    val_fraction: float = VAL_FRACTION
    test_fraction: float = TEST_FRACTION
    split_seed: int = 0
    pseudo_dir: str | None = None
    pseudo_batch_size: int = 2
    save_confidence: bool = False
    select: str = "best"
    init: str = "scratch"

    def __post_init__(self) -> None:
        if self.select not in SELECTIONS:
            raise ValueError(f"select must be one of {SELECTIONS}, got {self.select!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise ValueError(f"rounds must be an int >= 1, got {self.rounds!r}")
        for name in ("val_fraction", "test_fraction"):
            value = float(getattr(self, name))
            if not 0 < value < 1:
                raise ValueError(f"{name} must lie in (0, 1), got {value}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be < 1")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["train"] = self.train.to_dict()
        return out


@dataclass
class RoundsResult:
    out_dir: Path
    split: dict[str, list[str]]
    rounds: list[RoundResult]
    markdown: str


# --------------------------------------------------------------------------- split
def split_cases(
    cases: Sequence[str], val_fraction: float = VAL_FRACTION, test_fraction: float = TEST_FRACTION, seed: int = 0
) -> dict[str, list[str]]:
    """Deterministic ``{"train", "val", "test"}`` split of ``cases`` (module docstring, step 1)."""
    ordered = sorted(set(cases))
    n = len(ordered)
    n_test = max(1, math.floor(test_fraction * n + 0.5))
    n_val = max(1, math.floor(val_fraction * n + 0.5))
    if n - n_test - n_val < 1:
        raise ValueError(
            f"need at least 3 clinician-labelled cases (1 train, 1 validation, 1 held-out test), got {n}"
        )
    perm = [ordered[i] for i in np.random.default_rng(int(seed)).permutation(n)]
    return {"train": sorted(perm[n_test + n_val:]), "val": sorted(perm[n_test:n_test + n_val]), "test": sorted(perm[:n_test])}


def _stable_split(out: Path, split: dict[str, list[str]]) -> None:
    """Write ``split.json``, or check that an earlier run of ``out`` used the same split."""
    path = out / SPLIT_NAME
    if path.is_file():
        old = json.loads(path.read_text())
        if old != split:
            raise ValueError(
                f"{path} holds a different split of the clinician-labelled cases (the studies' final labels or the "
                f"split seed changed); use a new out_dir"
            )
        return
    write_json_atomic(path, split)


def clinician_label_hashes(studies: str | os.PathLike) -> dict[str, str]:
    """``{file name: sha256}`` of every file in ``STUDIES/labels/final``."""
    folder = Path(studies) / "labels" / FINAL
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}


# --------------------------------------------------------------------------- report
def _mean_std(summary: Mapping[str, Mapping[str, float]], key: str) -> str:
    return format_mean_std(summary.get(key), with_n=True)


def format_markdown(results: Sequence[RoundResult], config: RoundsConfig | None = None) -> str:
    """Markdown table: one row per round, held-out Dice mean ± std (n) per region, then the
    protocol choices (``select``, ``mode``, ``init``, precision) when ``config`` is given."""
    head = ["round", "model", "loss", "final", "pseudo", *(f"Dice {r}" for r in REGIONS), "HD95 WT (mm)"]
    rows = [[r.round, r.role, r.loss, r.train_final, r.train_pseudo,
             *(_mean_std(r.test_summary, f"dice_{region}") for region in REGIONS), _mean_std(r.test_summary, "hd95_WT")]
            for r in results]
    lines = [markdown_table(head, rows)]
    n_test = len(results[0].test_rows) if results else 0
    lines.append(f"\nHeld-out test cases: {n_test}; mean ± std (n = cases) over cases; HD95 of a region present in "
                 f"exactly one of prediction and truth counts as {BRATS_WORST_HD95} mm (BraTS worst case).")
    if config is not None:
        lines.append(protocol_note(config))
    return "\n".join(lines)


def protocol_note(config: RoundsConfig) -> str:
    """One line naming the protocol choices of a run: scored checkpoint, source weighting,
    student initialisation and precision."""
    train_cfg = config.train
    device = resolve_device(train_cfg.device)
    pool = labelling_dtype(device, train_cfg.amp, train_cfg.amp_dtype)
    return (f"Scored checkpoint: {config.select}; source weighting (mode): {train_cfg.mode}; student init: "
            f"{config.init}; precision: {precision_used(train_cfg.amp, train_cfg.amp_dtype, device)} on {device.type}"
            f" (pool pseudo-labelling: {precision_name(pool)}).")


def _write_reports(out: Path, config: RoundsConfig, split: dict, results: Sequence[RoundResult], markdown: str) -> None:
    rows = [r.row() for r in results]
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(out / f"{RESULTS_NAME}.csv", buffer.getvalue().encode())
    payload = {
        "config": config.to_dict(),
        "split": split,
        "rounds": [{**r.row(), "test_summary": r.test_summary, "test_cases": r.test_rows, "history": r.train.history}
                   for r in results],
    }
    write_json_atomic(out / f"{RESULTS_NAME}.json", payload, default=str)
    write_bytes_atomic(out / f"{RESULTS_NAME}.md", (markdown + "\n").encode())


# --------------------------------------------------------------------------- rounds
def run_teacher_student(
    studies: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: RoundsConfig | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    on_event: Callable[[Event], None] | None = None,
    on_epoch: EpochCallback | None = None,
) -> RoundsResult:
    """Run the teacher and ``config.rounds`` student rounds on ``studies`` (module docstring).

    ``on_event`` receives ``{"stage": "split"|"train"|"pseudo-label"|"evaluate"|"done", "round": k, …}``;
    ``on_epoch`` is passed to :func:`~robustlabel.engine.train`.

    Under ``torch.distributed`` (e.g. ``torchrun … robustlabel teacher-student``) every rank
    calls this function: training is data parallel, the pool is sharded
    (:func:`~robustlabel.engine.pool_shards.label_pool`), rank 0 scores the held-out cases and
    sends the scores to the others, and only rank 0 writes the reports and sees ``on_event``.
    """
    config = config or RoundsConfig()
    ctx = current()
    get_loss(config.train.pseudo_loss, **config.train.resolved_pseudo_params)  # fail fast on a bad loss
    studies, out = Path(studies), Path(out_dir)
    emit = on_event if on_event is not None and ctx.is_main else (lambda event: None)
    before = clinician_label_hashes(studies)
    final_items = {item["case"]: item for item in studies_datalist(studies, sources=(FINAL,))}
    require_clinician_labels(list(final_items.values()), role=f"studies folder {studies}")
    split = split_cases(list(final_items), config.val_fraction, config.test_fraction, config.split_seed)
    out.mkdir(parents=True, exist_ok=True)
    _stable_split(out, split)
    emit({"stage": "split", "round": 0, **{k: len(v) for k, v in split.items()}})
    train_final = [final_items[c] for c in split["train"]]
    val_items = [final_items[c] for c in split["val"]]
    test_items = [final_items[c] for c in split["test"]]
    steps = SegmentationSteps(
        train_final, val_items, test_items, unlabeled_datalist(studies),
        StudiesSink(studies, label_dir=config.pseudo_dir), config.train,
        lambda job: out / f"round_{job.round}_{job.role}", select=config.select,
        pseudo_batch_size=config.pseudo_batch_size, save_confidence=config.save_confidence,
        resume=resume, progress=progress, on_epoch=on_epoch, on_event=emit,
    )
    results: list[RoundResult] = []

    def report(outcome: Outcome[Any, RoundResult]) -> None:
        results.append(outcome.result)
        if ctx.is_main:
            _write_reports(out, config, split, results, format_markdown(results, config))

    student = StudentSpec(config.train.pseudo_loss, config.train.pseudo_loss, config.train.pseudo_params)
    run_rounds(steps, [student], rounds=config.rounds, init=config.init, on_outcome=report)
    markdown = format_markdown(results, config)

    after = clinician_label_hashes(studies)
    if after != before:
        changed = sorted(set(before) ^ set(after) | {n for n in before if after.get(n) != before[n]})
        raise RuntimeError(f"clinician labels changed during the run: {changed}")
    emit({"stage": "done", "round": config.rounds, "results": str(out / f"{RESULTS_NAME}.json")})
    return RoundsResult(out_dir=out, split=split, rounds=results, markdown=markdown)

