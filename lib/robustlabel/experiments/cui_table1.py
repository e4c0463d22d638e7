"""Cui et al., "Semi-supervised Learning using Robust Loss", Table 1: CIFAR-10 with p = 10 % labels.

The teacher–student protocol (:func:`robustlabel.engine.teacher_student.run_rounds`) with
classifier steps (:class:`ClassifierSteps`), per seed ``s``:

* **Lower bound** = the teacher: ResNet-18 trained with CE on the labelled part ``L``;
* it pseudo-labels the unlabelled part ``U``: ``ŷ_j = argmax_k f_T(x_j)_k``;
* **students** CE, BCE (β-CE), GCE, SCE: CE on ``L`` and the row's loss on ``U`` with ``ŷ``
  (:func:`~robustlabel.losses.source_aware.source_aware_loss`, weighted by ``mode``);
* **Upper bound**: CE on ``L ∪ U`` with every true label (a teacher-only run of the same steps).

As in the paper nothing is held out by default; only ``grid`` holds out ``val_fraction`` of the
training set to choose β, q and (α, γ) by validation accuracy.  Every model of one seed starts
from the same initial weights (``torch.manual_seed(s)`` before it is built).

Outputs in ``out``: ``table1.{md,csv,json,png}``, ``runs.json`` (finished runs: re-running with
the same ``out`` skips them) and ``checkpoints/`` (interrupted runs resume from there).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from robustlabel.atomic import write_bytes_atomic
from robustlabel.data.cifar import ImageSet, load_cifar10, write_synthetic_cifar10
from robustlabel.data.cifar100 import random_subset
from robustlabel.data.splits import DataSplit, TrainingSet, make_training_set, split_indices
from robustlabel.engine.classify import ClassifierConfig, fit_classifier, pseudo_label, score_classifier
from robustlabel.engine.config import PRECISIONS, SELECTIONS
from robustlabel.engine.distributed import barrier, broadcast_object, current, run_as_rank
from robustlabel.engine.teacher_student import STUDENT, TEACHER, Job, Outcome, StudentSpec, run_rounds
from robustlabel.experiments.cli import prepare_out_dir
from robustlabel.experiments.cui_rows import LOWER, ROWS, STUDENTS, UPPER, Row
from robustlabel.experiments.figures import plot_ours_vs_paper
from robustlabel.experiments.store import ResultsStore, rank_zero_store
from robustlabel.experiments.tables import Measurement, write_report
from robustlabel.losses.hparams import PAPER_HPARAMS
from robustlabel.losses.source_aware import SOURCE_MODES, UNION, source_aware_loss
from robustlabel.machine import default_loader_workers, environment_info, resolve_device
from robustlabel.networks.resnet import cifar_resnet18

__all__ = [
    "FULL", "PAPER_TABLE1", "QUICK", "ClassifierSteps", "Table1Config", "held_out_fraction", "reproduce_table1",
    "run_table1", "table1_config",
]

#: the paper's test accuracy (%) per row (single numbers, no std given)
PAPER_TABLE1: dict[str, float] = {
    "Lower bound": 66.17, "CE": 69.62, "BCE": 79.53, "GCE": 77.68, "SCE": 78.74, "Upper bound": 89.31,
}
TEST_COLUMN = "Test accuracy"
VAL_COLUMN = "Val accuracy"
#: the dataset key of the paper's hyper-parameters (:data:`~robustlabel.losses.PAPER_HPARAMS`)
DATASET = "cifar10"
_PAPER = PAPER_HPARAMS[DATASET]
#: synthetic colour-blob images written in the CIFAR-10 layout (train, test)
SYNTHETIC_SIZES = (2500, 500)
#: seed of the fixed (seed-independent) train/test subsets
SUBSET_SEED = 12345

#: quick (CPU smoke test) and full (the paper) values of the settings left unset
QUICK: dict[str, Any] = {"epochs": 2, "train_subset": 2000, "test_subset": 500, "width": 0.25, "batch_size": 64,
                         "seeds": (0, 1), "threads": 1}
FULL: dict[str, Any] = {"epochs": 150, "train_subset": None, "test_subset": None, "width": 1.0, "batch_size": 128,
                        "seeds": (0, 1, 2), "threads": None}


@dataclass
class Table1Config:
    """Every setting of a Table-1 run (the script's options; :func:`table1_config` fills the
    quick or full defaults).

    Derived on construction: ``lr_milestones`` (``None``: ``[round(2/3 · epochs)]``, 100 of 150)
    and ``workers`` (``None``: 0 on CPU, up to 8 on CUDA).

    Raises:
        ValueError: not exactly one of ``data`` and ``synthetic``; ``select="best"`` without
            ``grid`` (the only run with a validation split); an unknown ``select``, ``mode`` or
            ``precision``.
    """

    out: Path
    data: Path | None = None
    synthetic: bool = False
    quick: bool = False
    overwrite: bool = False
    seeds: tuple[int, ...] = FULL["seeds"]
    train_subset: int | None = None
    test_subset: int | None = None
    labelled_fraction: float = 0.1
    val_fraction: float = 0.1
    epochs: int = FULL["epochs"]
    batch_size: int = FULL["batch_size"]
    lr: float = 0.1
    lr_milestones: tuple[int, ...] | None = None
    lr_gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    width: float = FULL["width"]
    device: str = "auto"
    select: str = SELECTIONS[0]
    mode: str = UNION
    precision: str = "fp32"
    workers: int | None = None
    threads: int | None = None
    beta: float = _PAPER["bce"]["beta"]
    q: float = _PAPER["gce"]["q"]
    sce: tuple[float, float] = (_PAPER["sce"]["alpha"], _PAPER["sce"]["gamma"])
    grid: bool = False
    grid_beta: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0)
    grid_q: tuple[float, ...] = (0.5, 0.7, 0.9)
    grid_sce: tuple[tuple[float, float], ...] = ((0.1, 0.01), (0.1, 1.0), (0.01, 1.0))

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.data = None if self.data is None else Path(self.data)
        if (self.data is None) == (not self.synthetic):
            raise ValueError("give exactly one of --data PATH (real CIFAR-10) or --synthetic")
        if self.select not in SELECTIONS or self.mode not in SOURCE_MODES or self.precision not in PRECISIONS:
            raise ValueError(f"select, mode, precision must be in {SELECTIONS}, {SOURCE_MODES}, {PRECISIONS}")
        if self.select == "best" and not self.grid:
            raise ValueError("--select best needs a validation split, which only --grid holds out")
        self.seeds = tuple(int(s) for s in self.seeds)
        if self.lr_milestones is None:
            self.lr_milestones = (max(1, round(self.epochs * 2 / 3)),)
        self.lr_milestones = tuple(int(m) for m in self.lr_milestones)
        if self.workers is None:
            self.workers = default_loader_workers(self.device)

    @property
    def classifier(self) -> ClassifierConfig:
        """The training settings of every model of the table."""
        return ClassifierConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, momentum=self.momentum,
            weight_decay=self.weight_decay, lr_milestones=tuple(self.lr_milestones), lr_gamma=self.lr_gamma,
            num_workers=int(self.workers), device=self.device, precision=self.precision,
        )


def table1_config(quick: bool = False, **options: Any) -> Table1Config:
    """A :class:`Table1Config`: ``options`` that are not ``None`` win over the :data:`QUICK` (with
    ``quick``) or :data:`FULL` values, which win over the dataclass defaults.

    Raises:
        ValueError: an option :class:`Table1Config` does not have, or from :class:`Table1Config`.
    """
    names = {f.name for f in fields(Table1Config)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ValueError(f"unknown Table 1 setting(s) {unknown}")
    values = {**(QUICK if quick else FULL), **{k: v for k, v in options.items() if v is not None}}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return Table1Config(quick=quick, **values)


def held_out_fraction(config: Table1Config) -> float:
    """The validation share actually held out: ``val_fraction`` with ``grid``, else 0 (the paper)."""
    return float(config.val_fraction) if config.grid else 0.0


def candidates(config: Table1Config, loss: str) -> list[dict[str, float]]:
    """The hyper-parameter settings tried for one pseudo-label loss (one unless ``grid``)."""
    if loss == "ce":
        return [{}]
    if loss == "bce":
        return [{"beta": b} for b in (config.grid_beta if config.grid else [config.beta])]
    if loss == "gce":
        return [{"q": q} for q in (config.grid_q if config.grid else [config.q])]
    if loss == "sce":
        return [{"alpha": a, "gamma": g} for a, g in (config.grid_sce if config.grid else [config.sce])]
    raise ValueError(f"no hyper-parameters known for loss {loss!r}")


def hparam_tag(params: Mapping[str, float]) -> str:
    """``"beta=5"``, ``"alpha=0.1,gamma=0.01"``; ``"default"`` without parameters."""
    return ",".join(f"{k}={v:g}" for k, v in params.items()) or "default"


def student_specs(config: Table1Config) -> list[tuple[Row, StudentSpec]]:
    """Every student run of one seed, in table order: ``(row, spec)``, ``spec.name`` =
    ``"<row key>/<hparam tag>"`` (its run key after ``seed<s>/``)."""
    return [(row, row.student(DATASET, params, name=f"{row.key}/{hparam_tag(params)}"))
            for row in STUDENTS for params in candidates(config, str(row.pseudo_loss))]


def run_keys(row: Row, seed: int, config: Table1Config) -> list[str]:
    """The keys in ``runs.json`` of every run behind one row and seed."""
    if row.kind == "student":
        return [f"seed{seed}/{spec.name}" for r, spec in student_specs(config) if r == row]
    return [f"seed{seed}/{row.key}"]


class ClassifierSteps:
    """The CIFAR-10 train / predict-pool / evaluate steps of one seed for
    :func:`~robustlabel.engine.teacher_student.run_rounds`.

    ``base`` is what the orchestration's teacher job trains: :data:`LOWER` (the labelled part;
    it pseudo-labels ``U``) or :data:`UPPER` (``L ∪ U`` with true labels, run without students).
    Models are ``nn.Module``; the pool is the students' :class:`TrainingSet` (``L`` with true
    labels + ``U`` with the teacher's pseudo-labels); results are ``runs.json`` records.

    The teacher's pseudo-labels go to ``checkpoints/seed<s>/pseudo_labels.npz`` (with their
    confidence) and its record gets ``pseudo_label_acc``, the share of correct pseudo-labels.
    A recorded teacher whose file exists is not rebuilt: the students read the file.
    """

    def __init__(self, config: Table1Config, train: ImageSet, test: ImageSet, store: ResultsStore, seed: int,
                 split: DataSplit, base: Row = LOWER) -> None:
        if base not in (LOWER, UPPER):
            raise ValueError(f"base must be the lower or the upper bound row, got {base.name!r}")
        self.config, self.classifier = config, config.classifier
        self.train_set, self.test_set, self.store = train, test, store
        self.seed, self.split, self.base = seed, split, base
        self.checkpoints = config.out / "checkpoints"
        self.pool_path = self.checkpoints / f"seed{seed}" / "pseudo_labels.npz"
        self.students = {spec.name: (row, spec) for row, spec in student_specs(config)}
        self._training: dict[str, dict[str, Any]] = {}
        self._pseudo: np.ndarray | None = None

    # ------------------------------------------------------------------ names
    def key(self, job: Job) -> str:
        """The run key of ``job`` in ``runs.json`` (and its checkpoint folder)."""
        return f"seed{self.seed}/{self.base.key if job.role == TEACHER else job.name}"

    def row(self, job: Job) -> Row:
        return self.base if job.role == TEACHER else self.students[job.name][0]

    def _pseudo_labelling(self, job: Job) -> bool:
        return job.role == TEACHER and self.base is LOWER

    # ------------------------------------------------------------------ steps
    def recorded(self, job: Job) -> dict[str, Any] | None:
        """The finished record of ``job``; the teacher's only with its pseudo-labels on disk."""
        record = self.store.get(self.key(job))
        if record is not None and self._pseudo_labelling(job) and not self.pool_path.exists():
            return None
        return record

    def train(self, job: Job, pool: TrainingSet | None, init: nn.Module | None) -> nn.Module | None:
        """Train (or resume, or load a finished) ``job``; ``None`` for a recorded teacher, whose
        pseudo-labels are read back by :meth:`predict_pool`."""
        if self._pseudo_labelling(job) and self.recorded(job) is not None:
            return None
        if job.role == STUDENT:
            if pool is None:
                raise ValueError(f"student {job.name!r} needs the pseudo-labelled pool")
            data = pool
        else:
            unlabelled = self.split.unlabelled if self.base is UPPER else None
            data = make_training_set(self.train_set.images, self.train_set.labels, self.split.labelled, unlabelled)
        # the teacher and the upper bound see true labels only: the mode does not change them
        loss = source_aware_loss(job.loss, job.params, mode=self.config.mode)
        key = self.key(job)
        network, self._training[key] = fit_classifier(
            self.build_network, data, loss, self.classifier, seed=self.seed, checkpoint_dir=self.checkpoints / key,
            description=key, select=self.config.select, val=self.eval_sets().get("val"))
        return network

    def predict_pool(self, teacher_job: Job, teacher: nn.Module | None) -> TrainingSet:
        """``L`` with true labels + ``U`` with the teacher's pseudo-labels (read back from
        ``pseudo_labels.npz`` when the teacher was recorded)."""
        if self._pseudo is None:
            self._pseudo = np.load(self.pool_path)["labels"]
        images, labels = self.train_set.images, self.train_set.labels
        return make_training_set(images, labels, self.split.labelled, self.split.unlabelled, self._pseudo)

    def evaluate(self, job: Job, model: nn.Module) -> dict[str, Any]:
        """The run record: test (and validation) accuracy, the training facts, the row; for the
        teacher, also its pseudo-labels of ``U`` (written to disk) and their accuracy."""
        record = {**score_classifier(model, self.eval_sets(), self.classifier), **self._training.pop(self.key(job))}
        row = self.row(job)
        record.update(seed=self.seed, row=row.name, hparams=dict(job.params or {}) if job.role == STUDENT else {})
        if self._pseudo_labelling(job):
            unlabelled = self.split.unlabelled
            labels, confidence = pseudo_label(model, self.train_set.images[unlabelled], self.classifier.eval_batch_size,
                                              self.classifier.torch_device, self.classifier.autocast_dtype)
            buffer = io.BytesIO()
            np.savez(buffer, labels=labels, confidence=confidence, unlabelled=unlabelled)
            if current().is_main:  # every rank holds the same teacher and labels; rank 0 writes them
                write_bytes_atomic(self.pool_path, buffer.getvalue())
            record["pseudo_label_acc"] = float(100.0 * np.mean(labels == self.train_set.labels[unlabelled]))
            self._pseudo = labels
        return record

    # ------------------------------------------------------------------ helpers
    def build_network(self) -> nn.Module:
        return cifar_resnet18(num_classes=len(self.train_set.class_names), widen_factor=self.config.width)

    def eval_sets(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        sets = {"test": (self.test_set.images, self.test_set.labels)}
        if len(self.split.val):
            sets["val"] = (self.train_set.images[self.split.val], self.train_set.labels[self.split.val])
        return sets

    def keep(self, outcome: Outcome) -> None:
        """``on_outcome`` of :func:`run_rounds`: store every run finished now."""
        if not outcome.recorded:
            self.store.put(self.key(outcome.job), outcome.result)


def run_seed(config: Table1Config, train: ImageSet, test: ImageSet, store: ResultsStore, seed: int) -> None:
    """Every row of Table 1 for one seed: the teacher and its students, then the upper bound
    (finished runs are skipped, interrupted ones resume)."""
    split = split_indices(len(train), config.labelled_fraction, held_out_fraction(config), seed)
    for base, students in ((LOWER, [spec for _, spec in student_specs(config)]), (UPPER, [])):
        steps = ClassifierSteps(config, train, test, store, seed, split, base)
        run_rounds(steps, students, on_outcome=steps.keep)


def selected_runs(store: ResultsStore, config: Table1Config, seed: int) -> dict[str, dict[str, Any]]:
    """Row name -> the finished run reported for ``seed`` (with ``grid``: the best validation accuracy)."""
    chosen: dict[str, dict[str, Any]] = {}
    for row in ROWS:
        runs = [store.get(key) for key in run_keys(row, seed, config) if key in store]
        if runs:
            chosen[row.name] = max(runs, key=lambda r: r.get("val_acc", r["test_acc"]))
    return chosen


def protocol_note(config: Table1Config) -> str:
    """The table-notes line naming every protocol choice (``select``, ``mode``, ``precision``,
    the validation split)."""
    modes = {"union": "union (one mean over the shuffled batch of true- and pseudo-labelled images)",
             "robust_all": "robust_all (the robust loss on the true-labelled images too)",
             "per_source": "per_source (1:1 batches, the two per-source means added)"}
    device = resolve_device(config.device)
    ran = config.classifier.precision_used
    held = (f"{held_out_fraction(config):.0%} of the training set held out for --grid" if config.grid
            else "no validation split (as the paper; only --grid holds one out)")
    scored = "the last epoch (as the paper)" if config.select == "last" else "the epoch of best validation accuracy"
    return (f"**Protocol:** --select {config.select}: scored = {scored}; --mode {modes[config.mode]}; --precision "
            f"{config.precision} (ran in {ran} on {device.type}); {held}")


def report(config: Table1Config, store: ResultsStore, sizes: Mapping[str, int], data_note: str) -> Path:
    """Write ``table1.{md,csv,json,png}``; returns the Markdown file."""
    measurements, notes, chosen_all = [], [], {}
    for seed in config.seeds:
        chosen = chosen_all[seed] = selected_runs(store, config, seed)
        for name, record in chosen.items():
            measurements.append(Measurement(name, TEST_COLUMN, record["test_acc"], seed))
            if "val_acc" in record:
                measurements.append(Measurement(name, VAL_COLUMN, record["val_acc"], seed))
    pseudo = [chosen_all[s][LOWER.name]["pseudo_label_acc"] for s in config.seeds if LOWER.name in chosen_all[s]]
    notes.append(f"**Data:** {data_note}; train {sizes['train']} (labelled {sizes['labelled']}, unlabelled "
                 f"{sizes['unlabelled']}, validation {sizes['val']}), test {sizes['test']}")
    notes.append(f"**Model / schedule:** ResNet-18 (CIFAR stem, MONAI, width x{config.width:g}), {config.epochs} epochs, "
                 f"batch {config.batch_size}, SGD lr {config.lr:g} x{config.lr_gamma:g} at {list(config.lr_milestones)}, "
                 f"momentum {config.momentum:g}, weight decay {config.weight_decay:g}, crop(pad 4) + flip")
    notes.append(protocol_note(config))
    if pseudo:
        notes.append(f"**Teacher pseudo-label accuracy on the unlabelled part:** {np.mean(pseudo):.2f} % "
                     f"(so {100 - np.mean(pseudo):.2f} % of the pseudo-labels are wrong)")
    for row in STUDENTS:
        if row.pseudo_loss != "ce":
            picked = {s: hparam_tag(chosen_all[s][row.name]["hparams"]) for s in config.seeds if row.name in chosen_all[s]}
            how = "chosen by validation accuracy" if config.grid else "fixed"
            notes.append(f"**{row.name} hyper-parameters ({how}):** " + "; ".join(f"seed {s}: {t}" for s, t in picked.items()))
    files = write_report(
        config.out, "table1",
        title="Cui et al. Table 1: CIFAR-10 test accuracy with 10 % labels (teacher–student, robust loss on pseudo-labels)",
        measurements=measurements,
        paper={(name, TEST_COLUMN): value for name, value in PAPER_TABLE1.items()},
        rows=[row.name for row in ROWS], columns=[TEST_COLUMN, VAL_COLUMN],
        quick=config.quick, environment=environment_info(config.device),
        unit="%", paper_source="Cui et al., Table 1 (single numbers, no std given)", notes=notes,
        extra={"settings": asdict(config), "runs": store.runs},
    )
    plot_ours_vs_paper(config.out / "table1.png", [c for c in files.cells if c.column == TEST_COLUMN],
                       ylabel="test accuracy (%)",
                       suptitle=f"{'SYNTHETIC data' if config.synthetic else 'CIFAR-10'}, "
                                f"{100 * config.labelled_fraction:g} % labels{' (QUICK)' if config.quick else ''}")
    return files.markdown


def run_table1(config: Table1Config, main_rank: bool = True) -> Path | None:
    """One rank's share of Table 1 (every rank trains data parallel, see
    :func:`robustlabel.engine.classify.train_classifier`); rank 0 prepares the output folder and
    the synthetic data and writes every file.  Returns the Markdown table (``None`` on other ranks).

    Raises:
        ValueError: results in ``out`` for other settings (:class:`ResultsStore`), a bad subset size.
        robustlabel.data.cifar.CifarFormatError: malformed CIFAR-10 files.
    """
    if main_rank:
        prepare_out_dir(config.out, overwrite=config.overwrite, threads=config.threads, remove=["checkpoints", "runs.json"])
    barrier()
    if not main_rank:
        prepare_out_dir(config.out, overwrite=False, threads=config.threads)
    data = config.data
    if config.synthetic:
        n_train, n_test = SYNTHETIC_SIZES
        written = write_synthetic_cifar10(config.out / "synthetic-data", n_train=n_train, n_test=n_test,
                                          seed=0) if main_rank else None
        data = broadcast_object(written)
        data_note = f"SYNTHETIC colour-blob images in the CIFAR-10 format ({data}), not CIFAR-10"
    else:
        data_note = f"CIFAR-10 from {data}"
    train, test = load_cifar10(data)
    train = random_subset(train, config.train_subset, SUBSET_SEED)
    test = random_subset(test, config.test_subset, SUBSET_SEED)
    split = split_indices(len(train), config.labelled_fraction, held_out_fraction(config), 0)
    sizes = {"train": len(train), "labelled": len(split.labelled), "unlabelled": len(split.unlabelled),
             "val": len(split.val), "test": len(test)}
    fingerprint = {
        "data": "synthetic" if config.synthetic else "cifar10", "n_train": len(train), "n_test": len(test),
        **{k: getattr(config, k) for k in ("labelled_fraction", "epochs", "batch_size", "lr", "lr_milestones",
                                           "lr_gamma", "momentum", "weight_decay", "width", "select", "mode",
                                           "precision")},
        "val_fraction": held_out_fraction(config),
    }
    store = rank_zero_store(config.out / "runs.json", fingerprint)
    for seed in config.seeds:
        run_seed(config, train, test, store, seed)
    barrier()
    return report(config, store, sizes, data_note) if main_rank else None


def reproduce_table1(config: Table1Config) -> Path | None:
    """Table 1 as one rank of the job (a single process outside ``torchrun``): :func:`run_table1`
    inside :func:`~robustlabel.engine.distributed.run_as_rank`."""
    return run_as_rank(run_table1, config, config.device)
