"""Ju 2017, Sec. 5.1.2: multiclass PU learning on CIFAR-10 + CIFAR-100 (Table 1, Fig. 5).

Eleven classes: ``0`` = non-relevant (CIFAR-100, by default all 50 000 training and 10 000
test images) and ``1..10`` = the CIFAR-10 classes (:mod:`robustlabel.data.cifar100`).  For
a labelled share ``π`` (0.5 in Table 1) of the relevant training images:

==========================  ==============================================================
annotation                  training set
==========================  ==============================================================
``R+N``                     every training image with its true label
``π(R+N)``                  a share ``π`` of every class (incl. 0), true labels
``πR+U``                    every image; P = ``π`` of each relevant class keeps its label,
                            the rest (U) is labelled 0
==========================  ==============================================================

Rows (Annotation / Loss, thesis Table 1): ``R+N / CrossEntropy``, ``π(R+N) / CrossEntropy`` and
``πR+U /`` CrossEntropy, ClassWeighted, SoftmaxLoss, BootstrapHard, with

* CrossEntropy: unweighted CE (the baselines);
* ClassWeighted: Eq. 7, ``w_0 = 0.5``, ``w_{k≥1} = 1``;
* SoftmaxLoss: Eq. 9 with the inverse-frequency weights of the observed labels
  (:func:`robustlabel.losses.inverse_frequency_weights`, mean 1);
* BootstrapHard: ``warmup`` epochs of CE with those frequency weights, then Eq. 11 with
  ``β = 0.8`` and the same weights (Reed et al.'s hard bootstrapping needs a non-random
  model for ``ŷ``; the thesis says "a few epochs").

Model: the 8-layer CNN of thesis Table 6 (:class:`robustlabel.networks.ThesisCNN`), trained
from scratch with Adam (lr 1e-4), batch 128, no augmentation, 100 epochs, by
:func:`robustlabel.engine.classify.train_classifier` (ignite/MONAI trainer, tqdm, atomic
per-epoch checkpoints, resume).  Each repeat draws a fresh P/U split (``seed``) and a fresh
initialisation shared by every row of that repeat.

Columns, on the test set with true labels: accuracy over the 11 classes, and precision,
recall and F1 of each relevant class one-vs-all, averaged over the 10 relevant classes
(thesis appendix C.2).  Fig. 5: mean F1 of ClassWeighted and SoftmaxLoss against ``π``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from robustlabel.data.cifar import ImageSet, load_cifar10
from robustlabel.data.cifar100 import (
    NON_RELEVANT,
    combine_relevant_and_nonrelevant,
    load_cifar100,
    pu_observed_labels,
    random_subset,
    stratified_subset,
)
from robustlabel.data.splits import TrainingSet, make_training_set
from robustlabel.engine.classify import ClassifierConfig, finished_epochs, predict_logits, train_classifier
from robustlabel.experiments.figures import PlotPanel, plot_ours_vs_paper, plot_panels
from robustlabel.experiments.store import ResultsStore
from robustlabel.experiments.tables import Measurement, table_grid, write_report
from robustlabel.losses import PixelwiseLoss, SourceAwareLoss, get_loss, inverse_frequency_weights
from robustlabel.machine import default_loader_workers, environment_info, resolve_device
from robustlabel.networks import ThesisCNN

NUM_CLASSES = 11
RELEVANT = tuple(range(1, NUM_CLASSES))
COLUMNS = ("accuracy", "mean precision", "mean recall", "mean F1")
TABLE_STEM = "cifar_pu_table1"
FIGURE_STEM = "cifar_pu_fig5"

#: annotation keys → how the thesis names them (``{p}`` is the labelled share in percent)
ANNOTATIONS = {"full": "R+N", "subset": "{p}%(R+N)", "pu": "{p}%R+U"}
#: loss keys → the thesis' names
LOSS_NAMES = {"ce": "CrossEntropy", "weighted": "ClassWeighted", "softmax": "SoftmaxLoss", "bootstrap": "BootstrapHard"}
#: Table 1 rows as (annotation, loss) in the thesis' order
TABLE_ROWS = (("full", "ce"), ("subset", "ce"), ("pu", "ce"), ("pu", "weighted"), ("pu", "softmax"), ("pu", "bootstrap"))
#: Fig. 5 compares these losses on ``πR+U``
FIGURE_LOSSES = ("weighted", "softmax")

#: thesis Table 1 (π = 0.5): accuracy, mean precision, mean recall, mean F1
THESIS_TABLE1: dict[tuple[str, str], tuple[float, float, float, float]] = {
    ("full", "ce"): (0.87, 0.88, 0.82, 0.85),
    ("subset", "ce"): (0.83, 0.84, 0.78, 0.80),
    ("pu", "ce"): (0.66, 0.94, 0.38, 0.49),
    ("pu", "weighted"): (0.78, 0.75, 0.75, 0.76),
    ("pu", "softmax"): (0.79, 0.74, 0.83, 0.78),
    ("pu", "bootstrap"): (0.80, 0.76, 0.81, 0.78),
}
THESIS_SOURCE = "Ju 2017, Table 1 (π = 50 %; the thesis gives std ≈ 0.01, not per cell)"


@dataclass(frozen=True)
class CifarPUConfig:
    """Every setting of the experiment; the defaults are the thesis' (or ours where it is silent).

    ``*_train`` / ``*_test``: use a fixed random subset of that many images (``None``: all).
    """

    labelled_fraction: float = 0.5
    figure_fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    repeats: tuple[int, ...] = (0, 1, 2)
    relevant_train: int | None = None
    relevant_test: int | None = None
    nonrelevant_train: int | None = None
    nonrelevant_test: int | None = None
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 0.0
    augment: bool = False
    nonrelevant_weight: float = 0.5
    bootstrap_beta: float = 0.8
    bootstrap_warmup: int = 5
    device: str = "auto"
    workers: int | None = None
    figure: bool = True

    def __post_init__(self) -> None:
        fractions = (self.labelled_fraction, *self.figure_fractions)
        if not all(0 < f <= 1 for f in fractions):
            raise ValueError(f"labelled fractions must lie in (0, 1], got {fractions}")
        if not self.repeats or len(set(self.repeats)) != len(self.repeats):
            raise ValueError(f"repeats must be distinct seeds, got {self.repeats}")
        if not 0 < self.bootstrap_warmup < self.epochs:
            raise ValueError(f"need 0 < bootstrap_warmup < epochs, got {self.bootstrap_warmup} and {self.epochs}")
        if not self.nonrelevant_weight >= 0:
            raise ValueError(f"nonrelevant_weight must be >= 0, got {self.nonrelevant_weight}")
        ClassifierConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr)  # validates them

    def classifier(self) -> ClassifierConfig:
        """The engine's training settings: Adam, no learning-rate steps, augmentation as configured."""
        workers = default_loader_workers(self.device) if self.workers is None else self.workers
        return ClassifierConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, optimizer="adam",
                                weight_decay=self.weight_decay, momentum=0.0, lr_milestones=(),
                                augment=self.augment, device=self.device, num_workers=workers)

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change a run's numbers (a results folder holds one fingerprint)."""
        keep = ("relevant_train", "relevant_test", "nonrelevant_train", "nonrelevant_test", "epochs", "batch_size", "lr",
                "weight_decay", "augment", "nonrelevant_weight", "bootstrap_beta", "bootstrap_warmup")
        return {k: getattr(self, k) for k in keep}


#: ``--quick``: a CPU smoke run of a few minutes over every row and three Fig. 5 points
QUICK = dict(relevant_train=300, relevant_test=150, nonrelevant_train=300, nonrelevant_test=150, epochs=4,
             batch_size=32, lr=1e-3, bootstrap_warmup=2, repeats=(0, 1), figure_fractions=(0.1, 0.5, 0.9))


def row_name(annotation: str, loss: str, fraction: float) -> str:
    """``"50%R+U / SoftmaxLoss"`` etc."""
    return f"{ANNOTATIONS[annotation].format(p=f'{100 * fraction:g}')} / {LOSS_NAMES[loss]}"


def run_key(annotation: str, loss: str, fraction: float, seed: int) -> str:
    """Key of one training run in ``runs.json`` (``R+N`` does not depend on the fraction)."""
    part = annotation if annotation == "full" else f"{annotation}{fraction:g}"
    return f"seed{seed}/{part}/{loss}"


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class PUData:
    """The combined 11-class train and test sets (true labels) and a note on where they came from."""

    train: ImageSet
    test: ImageSet
    sizes: dict[str, int] = field(default_factory=dict)

    def digest(self) -> str:
        """SHA-1 of the labels and of every 64th image of both sets: which data a results folder holds."""
        h = hashlib.sha1()
        for part in (self.train, self.test):
            h.update(np.ascontiguousarray(part.labels, dtype=np.int64).tobytes())
            h.update(np.ascontiguousarray(part.images[::64]).tobytes())
        return h.hexdigest()


def load_pu_data(cifar10: str | os.PathLike, cifar100: str | os.PathLike, config: CifarPUConfig) -> PUData:
    """Read both datasets, apply the configured subsets and combine them (non-relevant = 0)."""
    train10, test10 = load_cifar10(cifar10)
    train100, test100 = load_cifar100(cifar100)
    parts = {
        "relevant_train": random_subset(train10, config.relevant_train),
        "relevant_test": random_subset(test10, config.relevant_test),
        "nonrelevant_train": random_subset(train100, config.nonrelevant_train),
        "nonrelevant_test": random_subset(test100, config.nonrelevant_test),
    }
    return PUData(
        train=combine_relevant_and_nonrelevant(parts["relevant_train"], parts["nonrelevant_train"]),
        test=combine_relevant_and_nonrelevant(parts["relevant_test"], parts["nonrelevant_test"]),
        sizes={k: len(v) for k, v in parts.items()},
    )


def training_set(data: PUData, annotation: str, fraction: float, seed: int) -> TrainingSet:
    """The training images and labels of one annotation (see the module docstring)."""
    labels = data.train.labels
    if annotation == "full":
        return make_training_set(data.train.images, labels, np.arange(len(labels)))
    if annotation == "subset":
        return make_training_set(data.train.images, labels, stratified_subset(labels, fraction, seed))
    if annotation == "pu":
        observed, _ = pu_observed_labels(labels, fraction, seed)
        return make_training_set(data.train.images, observed, np.arange(len(labels)))
    raise ValueError(f"unknown annotation {annotation!r}; valid: {sorted(ANNOTATIONS)}")


# --------------------------------------------------------------------------- losses and metrics
def class_weights(loss: str, observed: torch.Tensor, config: CifarPUConfig) -> list[float] | None:
    """Row weights: none for CE, ``(w_0, 1, …, 1)`` for ClassWeighted, inverse frequency otherwise."""
    if loss == "ce":
        return None
    if loss == "weighted":
        return [config.nonrelevant_weight] + [1.0] * (NUM_CLASSES - 1)
    return inverse_frequency_weights(observed, NUM_CLASSES)


def _plain(loss: PixelwiseLoss) -> SourceAwareLoss:
    """Every label here is a "final" one: the same loss for both sources of the engine's trainer."""
    return SourceAwareLoss(clinician=loss, pseudo=loss)


def training_losses(loss: str, weights: list[float] | None, config: CifarPUConfig) -> list[tuple[int, SourceAwareLoss]]:
    """``[(last epoch, loss)]``: the loss used up to each epoch (two phases for BootstrapHard)."""
    if loss == "ce":
        return [(config.epochs, _plain(get_loss("ce")))]
    if loss == "weighted":
        return [(config.epochs, _plain(get_loss("weighted_ce", weights=weights)))]
    if loss == "softmax":
        return [(config.epochs, _plain(get_loss("cd_softmax", weights=weights)))]
    if loss == "bootstrap":
        return [(config.bootstrap_warmup, _plain(get_loss("weighted_ce", weights=weights))),
                (config.epochs, _plain(get_loss("hard_bootstrap", beta=config.bootstrap_beta, weights=weights)))]
    raise ValueError(f"unknown loss {loss!r}; valid: {sorted(LOSS_NAMES)}")


def pu_metrics(true: np.ndarray, predicted: np.ndarray, relevant: Sequence[int] = RELEVANT) -> dict[str, Any]:
    r"""Accuracy over all classes and one-vs-all precision, recall, F1 of each relevant class.

    .. math:: P_k = \frac{TP_k}{TP_k + FP_k},\quad R_k = \frac{TP_k}{TP_k + FN_k},\quad
              F_{1,k} = \frac{2 P_k R_k}{P_k + R_k},\qquad \text{mean } X = \frac{1}{10}\sum_{k=1}^{10} X_k

    (0 where a denominator is 0, as scikit-learn's ``zero_division=0``).
    """
    from sklearn.metrics import precision_recall_fscore_support

    true, predicted = np.asarray(true), np.asarray(predicted)
    precision, recall, f1, _ = precision_recall_fscore_support(true, predicted, labels=list(relevant), average=None,
                                                               zero_division=0)
    return {"accuracy": float(np.mean(true == predicted)), "mean precision": float(np.mean(precision)),
            "mean recall": float(np.mean(recall)), "mean F1": float(np.mean(f1)),
            "per_class": {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist()}}


# --------------------------------------------------------------------------- running
class CifarPUExperiment:
    """Runs, skips (finished, in ``runs.json``) or resumes (``checkpoints/<key>``) every run."""

    def __init__(self, data: PUData, config: CifarPUConfig, out: str | os.PathLike, progress: bool | None = None) -> None:
        self.data, self.config, self.out, self.progress = data, config, Path(out), progress
        self.store = ResultsStore(self.out / "runs.json", {**config.fingerprint(), "data_sha1": data.digest()})
        self.classifier = config.classifier()

    def planned(self) -> list[tuple[str, str, float, int]]:
        """Every ``(annotation, loss, fraction, seed)`` to train: Table 1, then the extra Fig. 5 points."""
        c = self.config
        runs = [(a, l, c.labelled_fraction, s) for s in c.repeats for a, l in TABLE_ROWS]
        if c.figure:
            runs += [("pu", l, f, s) for s in c.repeats for f in c.figure_fractions for l in FIGURE_LOSSES]
        unique = {run_key(*r): r for r in runs}
        return list(unique.values())

    def run_all(self) -> dict[str, dict[str, Any]]:
        todo = [r for r in self.planned() if run_key(*r) not in self.store]
        for annotation, loss, fraction, seed in tqdm(todo, desc="cifar_pu runs", disable=self.progress is False):
            self.store.put(run_key(annotation, loss, fraction, seed), self.train_one(annotation, loss, fraction, seed))
        return self.store.runs

    def train_one(self, annotation: str, loss: str, fraction: float, seed: int) -> dict[str, Any]:
        """Train one model (resuming from its checkpoint) and measure it on the test set."""
        key = run_key(annotation, loss, fraction, seed)
        data = training_set(self.data, annotation, fraction, seed)
        weights = class_weights(loss, data.labels, self.config)
        checkpoint = self.out / "checkpoints" / key
        torch.manual_seed(seed)
        network = ThesisCNN(num_classes=NUM_CLASSES)
        seconds, resumed_from = 0.0, finished_epochs(checkpoint)
        for last_epoch, phase_loss in training_losses(loss, weights, self.config):
            if finished_epochs(checkpoint) >= last_epoch and last_epoch < self.config.epochs:
                continue  # a finished warm-up phase
            summary = train_classifier(network, data, phase_loss, replace(self.classifier, epochs=last_epoch),
                                       checkpoint_dir=checkpoint, seed=seed, description=key, progress=self.progress)
            seconds += summary.seconds
        logits = predict_logits(network, self.data.test.images, self.classifier.eval_batch_size,
                                self.classifier.torch_device)
        record = pu_metrics(self.data.test.labels, logits.argmax(1).numpy())
        observed = data.labels.numpy()
        record.update(
            row=row_name(annotation, loss, fraction), annotation=annotation, loss=loss, fraction=fraction, seed=seed,
            weights=weights, train_size=len(data), n_labelled_relevant=int(np.sum(observed != NON_RELEVANT)),
            n_observed_nonrelevant=int(np.sum(observed == NON_RELEVANT)), epochs=self.config.epochs,
            seconds=round(seconds, 1), resumed_from_epoch=resumed_from, device=str(self.classifier.torch_device),
        )
        return record


# --------------------------------------------------------------------------- reporting
def _notes(config: CifarPUConfig, data: PUData, data_note: str, runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    s = data.sizes
    weights = {r["loss"]: r["weights"] for r in runs.values() if r["annotation"] == "pu" and r["weights"]
               and r["fraction"] == config.labelled_fraction and r["seed"] == config.repeats[0]}
    notes = [
        f"**Data:** {data_note}; train: {s['relevant_train']} relevant (CIFAR-10) + {s['nonrelevant_train']} "
        f"non-relevant (CIFAR-100); test: {s['relevant_test']} + {s['nonrelevant_test']}, true labels",
        f"**Split:** π = {100 * config.labelled_fraction:g} % of each relevant class keeps its label (P); the rest "
        "joins U with label 0; π(R+N) keeps π of every class with true labels; a fresh split per repeat (seed)",
        f"**Model / training:** thesis Table 6 CNN (1,341,739 parameters), from scratch, Adam lr {config.lr:g}, "
        f"weight decay {config.weight_decay:g}, {config.epochs} epochs, batch {config.batch_size}, "
        f"{'crop + flip augmentation' if config.augment else 'no augmentation'}",
        f"**Losses:** CrossEntropy unweighted; ClassWeighted w_0 = {config.nonrelevant_weight:g}, w_k = 1; "
        "SoftmaxLoss (Eq. 9) and BootstrapHard (Eq. 11) with inverse-frequency weights of the observed labels, "
        f"mean 1; BootstrapHard: β = {config.bootstrap_beta:g} after {config.bootstrap_warmup} warm-up epochs of "
        "CE with the same frequency weights",
        "**Weights used (first repeat at π):** " + "; ".join(
            f"{LOSS_NAMES[k]}: w_0 = {w[0]:.4f}, w_1..10 ∈ [{min(w[1:]):.4f}, {max(w[1:]):.4f}]" for k, w in weights.items()),
        "**Metrics:** accuracy over the 11 classes; precision, recall and F1 one-vs-all for each relevant class, "
        "averaged over the 10 relevant classes (0 where undefined)",
        "**Model note:** the thesis' Table 1 caption says \"2-layer multilayer perceptron\"; its text (Sec. 5.1.2) "
        "and Table 6 say the 8-layer CNN used here",
    ]
    return notes


def report(experiment: CifarPUExperiment, data_note: str, quick: bool = False) -> dict[str, Path]:
    """Write Table 1 (``cifar_pu_table1.{csv,json,md,png}``) and Fig. 5 (``cifar_pu_fig5.{csv,json,md,png}``)."""
    config, runs, out = experiment.config, experiment.store.runs, experiment.out
    environment = environment_info(config.device)
    label = (" (QUICK)" if quick else "") + (" (SYNTHETIC data)" if "SYNTHETIC" in data_note else "")
    measurements = []
    for annotation, loss in TABLE_ROWS:
        for seed in config.repeats:
            record = runs.get(run_key(annotation, loss, config.labelled_fraction, seed))
            if record:
                measurements += [Measurement(record["row"], col, record[col], seed) for col in COLUMNS]
    paper = {}
    if config.labelled_fraction == 0.5:
        paper = {(row_name(a, l, 0.5), col): v for (a, l), values in THESIS_TABLE1.items() for col, v in zip(COLUMNS, values)}
    notes = _notes(config, experiment.data, data_note, runs)
    table = write_report(
        out, TABLE_STEM, title=f"Ju 2017 Table 1: CIFAR-10 (relevant) + CIFAR-100 (non-relevant) PU classification{label}",
        measurements=measurements, paper=paper, rows=[row_name(a, l, config.labelled_fraction) for a, l in TABLE_ROWS],
        columns=list(COLUMNS), quick=quick, environment=environment, row_header="Annotation / Loss",
        paper_source=THESIS_SOURCE, notes=notes, extra={"config": asdict(config), "runs": runs},
    )
    files = {"table_csv": table.csv, "table_json": table.json, "table_md": table.markdown}
    files["table_png"] = plot_ours_vs_paper(out / f"{TABLE_STEM}.png", table.cells, ylabel="score",
                                            suptitle=f"Table 1, π = {100 * config.labelled_fraction:g} %{label}")
    if config.figure:
        fractions = sorted(set(config.figure_fractions))
        rows = [f"{100 * f:g}%" for f in fractions]
        points = [Measurement(f"{100 * f:g}%", LOSS_NAMES[l], runs[k]["mean F1"], s)
                  for f in fractions for l in FIGURE_LOSSES for s in config.repeats
                  if (k := run_key("pu", l, f, s)) in runs]
        fig = write_report(
            out, FIGURE_STEM, title=f"Ju 2017 Fig. 5: mean F1 against the share of relevant images labelled{label}",
            measurements=points, rows=rows, columns=[LOSS_NAMES[l] for l in FIGURE_LOSSES], quick=quick,
            environment=environment, row_header="labelled share π", decimals=3,
            notes=notes[:4] + ["The thesis shows Fig. 5 as a plot only (no numbers)."],
        )
        by_key = table_grid(fig.cells)[2]
        series = {LOSS_NAMES[l]: [by_key[(r, LOSS_NAMES[l])].mean for r in rows] for l in FIGURE_LOSSES}
        errors = {LOSS_NAMES[l]: [by_key[(r, LOSS_NAMES[l])].std for r in rows] for l in FIGURE_LOSSES}
        files["figure_png"] = plot_panels(
            out / f"{FIGURE_STEM}.png",
            [PlotPanel("πR+U: mean F1 over the 10 relevant classes", rows, series, errors, ylabel="mean F1",
                       xlabel="share π of relevant training images labelled")],
            kind="line", suptitle=f"Fig. 5{label}", panel_size=6.0)
        files.update(figure_csv=fig.csv, figure_md=fig.markdown)
    return files


def run(
    cifar10: str | os.PathLike,
    cifar100: str | os.PathLike,
    out: str | os.PathLike,
    config: CifarPUConfig = CifarPUConfig(),
    *,
    quick: bool = False,
    data_note: str | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Path]:
    """Load the data, train (or resume, or skip) every run, and write Table 1 and Fig. 5 under ``out``.

    Raises:
        robustlabel.data.cifar.CifarFormatError: a dataset is missing or malformed.
        ValueError: ``out`` holds results of different settings (and ``overwrite`` is false).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        (out / "runs.json").unlink(missing_ok=True)
    data = load_pu_data(cifar10, cifar100, config)
    experiment = CifarPUExperiment(data, config, out, progress)
    experiment.run_all()
    note = data_note or f"CIFAR-10 from {cifar10}, CIFAR-100 from {cifar100}"
    return report(experiment, note, quick)


def write_synthetic_data(root: str | os.PathLike, n_train: int = 2000, n_test: int = 600, seed: int = 0) -> tuple[Path, Path, str]:
    """Synthetic stand-ins in the exact CIFAR-10 and CIFAR-100 layouts under ``root`` (colour blobs
    as the relevant classes, stripes as the non-relevant ones), ``n_train`` / ``n_test`` of each.

    Returns ``(cifar-10 folder, cifar-100 folder, a note for the report)``.
    """
    from robustlabel.data.cifar import write_synthetic_cifar10
    from robustlabel.data.cifar100 import write_synthetic_cifar100

    root = Path(root)
    c10 = write_synthetic_cifar10(root, n_train=n_train, n_test=n_test, seed=seed)
    c100 = write_synthetic_cifar100(root, n_train=n_train, n_test=n_test, seed=seed + 100)
    return c10, c100, f"SYNTHETIC images in the CIFAR-10 / CIFAR-100 layouts ({root}), not CIFAR"
