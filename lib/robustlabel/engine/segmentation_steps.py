"""The BraTS steps of the teacher–student orchestration (:mod:`.teacher_student`).

* **train**: :func:`~robustlabel.engine.train` (TransBTS, resumable) on the clinician-labelled
  items, plus, for a student, its teacher's pseudo-labels; the teacher uses CE only
  (``pseudo_loss="ce"``, weight 1), a student ``job.loss`` with ``job.params`` on the
  pseudo-labelled items, starting from scratch or from its teacher's selected checkpoint;
* **predict pool**: the teacher's selected checkpoint (``select``: ``"best"`` validation Dice or
  the ``"last"`` epoch) pseudo-labels the pool (:class:`~robustlabel.engine.PseudoLabeller`,
  with per-case uncertainty, sharded over the ranks by
  :func:`~robustlabel.engine.pool_shards.label_pool`) into a :class:`StudiesSink`;
* **evaluate**: WT/TC/ET Dice and HD95 of the selected checkpoint on the held-out test items
  (:func:`~robustlabel.engine.evaluate_checkpoint`, run by rank 0 and sent to every rank); a
  teacher is also scored on ``pool_truth`` when given (the pool's hidden true labels: the
  quality of its pseudo-labels).

Used by ``robustlabel teacher-student`` (:func:`robustlabel.engine.rounds.run_teacher_student`)
and by Cui et al.'s Table 2 (:mod:`robustlabel.experiments.cui_table2`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.studies import FINAL, PSEUDO
from .config import SELECTIONS, TrainConfig
from .distributed import broadcast_object, current
from .evaluate import evaluate_checkpoint
from .pool_shards import label_pool
from .pseudo_label import PseudoLabeller, StudiesSink, student_items
from .teacher_student import TEACHER, Job, TeacherStudentSteps
from .trainer import EpochCallback, TrainResult, train

Event = dict[str, Any]
Scores = tuple[list[dict[str, Any]], dict[str, dict[str, float]]]


@dataclass(frozen=True)
class PseudoPool:
    """A pool pseudo-labelled by one teacher: its checkpoint and the students' datalist items
    ``{"image", "label", "source": "pseudo", "case"}``."""

    teacher: Path
    items: list[dict[str, Any]]


@dataclass
class RoundResult:
    """One evaluated job: its training run, training-set counts and held-out scores.

    Attributes:
        round, role: the job's round (0: the teacher) and role.
        loss: :func:`loss_label` of the job's recipe.
        train_final, train_pseudo: clinician- and pseudo-labelled training items.
        train: the engine run.
        test_rows, test_summary: per-case scores and ``{metric: {"mean", "std", "n"}}`` on the test items.
        select: the scored checkpoint (``"best"`` or ``"last"``).
        pool_summary: a teacher's scores on the pool's hidden true labels (``None``: not scored).
    """

    round: int
    role: str
    loss: str
    train_final: int
    train_pseudo: int
    train: TrainResult
    test_rows: list[dict[str, Any]]
    test_summary: dict[str, dict[str, float]]
    select: str = "best"
    pool_summary: dict[str, dict[str, float]] | None = None

    @property
    def checkpoint(self) -> Path:
        """The scored checkpoint."""
        return self.train.checkpoint(self.select)

    def row(self) -> dict[str, Any]:
        """Flat summary: Dice/HD95 mean and std per region, validation score, checkpoint."""
        out: dict[str, Any] = {
            "round": self.round, "role": self.role, "loss": self.loss,
            "train_final": self.train_final, "train_pseudo": self.train_pseudo,
            "best_epoch": self.train.best_epoch, "val_mean_dice": self.train.best_metric,
        }
        for key, stats in self.test_summary.items():
            out[f"{key}_mean"], out[f"{key}_std"], out[f"{key}_n"] = stats["mean"], stats["std"], stats["n"]
        out["test_cases"] = len(self.test_rows)
        out["select"] = self.select
        out["checkpoint"] = str(self.checkpoint)
        return out


def loss_label(config: TrainConfig, role: str) -> str:
    """``"ce"`` for a teacher, else e.g. ``"ce + gce(q=0.7)"`` (``"ce + 0.5·gce(q=0.7)"`` with a
    pseudo-label weight of 0.5)."""
    if role == TEACHER:
        return "ce"
    params = ", ".join(f"{k}={v:g}" for k, v in sorted(config.resolved_pseudo_params.items()))
    weight = "" if config.pseudo_weight == 1 else f"{config.pseudo_weight:g}·"
    return f"ce + {weight}{config.pseudo_loss}({params})"


class SegmentationSteps(TeacherStudentSteps[TrainResult, PseudoPool, RoundResult]):
    """Train / predict-pool / evaluate of the BraTS teacher–student protocol (module docstring).

    Args:
        labelled: clinician-labelled training items (``source == "final"``).
        val: validation items (model selection for ``select="best"``).
        test: held-out items to score.
        pool: the items to pseudo-label, ``{"image", "case"}``.
        sink: where the pseudo-labels go.
        config: the training recipe of every job; a job sets its loss (and ``init_checkpoint``).
        run_dir: the engine run folder of a job.
        select: the checkpoint that pseudo-labels and is scored, ``"best"`` or ``"last"``.
        pseudo_batch_size: volumes per pseudo-labelling forward pass.
        save_confidence: also store voxel-confidence maps.
        strict: a pool case left without a pseudo-label is an error (else it is left out).
        pool_truth: the pool's items with their hidden true labels, to score teachers on.
        resume, progress, on_epoch: passed to :func:`~robustlabel.engine.train`.
        on_event: receives ``{"stage": "train" | "pseudo-label" | "evaluate", "round": k, ...}``
            (rank 0 only).

    Raises:
        ValueError: an unknown ``select``.
    """

    def __init__(
        self,
        labelled: Sequence[dict[str, Any]],
        val: Sequence[dict[str, Any]],
        test: Sequence[dict[str, Any]],
        pool: Sequence[dict[str, Any]],
        sink: StudiesSink,
        config: TrainConfig,
        run_dir: Callable[[Job], Path],
        *,
        select: str = "best",
        pseudo_batch_size: int = 2,
        save_confidence: bool = False,
        strict: bool = False,
        pool_truth: Sequence[dict[str, Any]] | None = None,
        resume: bool = True,
        progress: bool = True,
        on_epoch: EpochCallback | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        if select not in SELECTIONS:
            raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
        self.labelled, self.val, self.test = list(labelled), list(val), list(test)
        self.pool = [dict(item) for item in pool]
        self.pool_truth = None if pool_truth is None else list(pool_truth)
        self.sink, self.config, self.run_dir, self.select = sink, config, run_dir, select
        self.pseudo_batch_size, self.save_confidence, self.strict = pseudo_batch_size, save_confidence, strict
        self.resume, self.progress, self.on_epoch = resume, progress, on_epoch
        self.emit = on_event if on_event is not None and current().is_main else (lambda event: None)
        self._trained: dict[tuple[int, str], tuple[TrainConfig, list[dict[str, Any]]]] = {}

    def job_config(self, job: Job, init: TrainResult | None = None) -> TrainConfig:
        """The recipe of ``job``: CE alone (weight 1) for a teacher; ``job.loss`` with ``job.params``
        on the pseudo-labels for a student, from ``init``'s selected checkpoint when given."""
        if job.role == TEACHER:
            return self.config.replace(pseudo_loss="ce", pseudo_params={}, pseudo_weight=1.0)
        config = self.config.replace(pseudo_loss=job.loss, pseudo_params=job.params)
        return config if init is None else config.replace(init_checkpoint=str(init.checkpoint(self.select)))

    def train(self, job: Job, pool: PseudoPool | None, init: TrainResult | None) -> TrainResult:
        items = self.labelled + (pool.items if pool is not None else [])
        config = self.job_config(job, init)
        self._trained[(job.round, job.name)] = (config, items)
        self.emit({"stage": "train", "round": job.round, "role": job.role, "final": len(self.labelled),
                   "pseudo": len(items) - len(self.labelled)})
        return train(items, self.val, self.run_dir(job), config, resume=self.resume, progress=self.progress,
                     on_epoch=self.on_epoch)

    def predict_pool(self, teacher_job: Job, teacher: TrainResult) -> PseudoPool:
        checkpoint = teacher.checkpoint(self.select)
        self.emit({"stage": "pseudo-label", "round": teacher_job.round + 1, "teacher": str(checkpoint)})
        labeller = PseudoLabeller(
            checkpoint, device=self.config.device, batch_size=self.pseudo_batch_size,
            num_workers=self.config.num_workers, amp=self.config.amp, amp_dtype=self.config.amp_dtype,
            save_confidence=self.save_confidence,
        )
        results = label_pool(labeller, self.pool, self.sink, progress=self.progress)  # sharded over the ranks
        return PseudoPool(checkpoint, student_items(self.pool, results, self.sink, strict=self.strict))

    def score(self, checkpoint: Path, items: Sequence[dict[str, Any]]) -> Scores:
        """Scores of ``checkpoint`` on ``items``: computed by rank 0, sent to every rank."""
        scores = evaluate_checkpoint(checkpoint, items, device=self.config.device, num_workers=self.config.num_workers,
                                     amp=self.config.amp, progress=self.progress) if current().is_main else None
        return broadcast_object(scores)

    def evaluate(self, job: Job, model: TrainResult) -> RoundResult:
        config, items = self._trained[(job.round, job.name)]
        scored = model.checkpoint(self.select)
        self.emit({"stage": "evaluate", "round": job.round, "checkpoint": str(scored)})
        rows, summary = self.score(scored, self.test)
        pool_summary = (self.score(scored, self.pool_truth)[1]
                        if self.pool_truth is not None and job.role == TEACHER else None)
        return RoundResult(
            job.round, job.role, loss_label(config, job.role), sum(i.get("source") == FINAL for i in items),
            sum(i.get("source") == PSEUDO for i in items), model, rows, summary, self.select, pool_summary,
        )
