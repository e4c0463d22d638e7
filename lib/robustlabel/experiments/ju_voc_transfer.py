"""Ju 2017, §5.3: representations learned under label noise, transferred — Tables 3, 4, 5 and Fig. 7.

For each fold (:data:`robustlabel.data.voc.FOLDS`), FCN-AlexNet is **pre-trained** on the
single-object training images of the 15 classes outside the fold with one of the label
variants of :data:`PRETRAININGS`, then its ``features``/``fc6``/``fc7`` are copied into a new
6-class FCN whose score and upsampling layers are re-initialised (Xavier) and which is
**fine-tuned** on the fold's 5 classes with true labels and cross-entropy.  The fine-tuning
performance is the mean IU on the fold's test images (VOC2011 ``val``), at each of the last five
fine-tuning snapshots of every repeat: the tables give mean ± std over repeats × snapshots per
fold, and the average over folds, beside the thesis' values.  ``RandomWeights`` fine-tunes
from random weights without pre-training.  A pre-trained model is shared by every row that uses
it (``TrueLabels`` of Table 3 is ``CompleteLabels`` of Table 4; the thesis prints the same
numbers for both).

Choices (stated in the table notes):

* **Table 5 (dog as the only target) in fold 3:** dog is one of fold 3's fine-tuning classes, so
  a dog-target pre-training would train on the fine-tuning category; those cells are not
  computed ("—"), and Table 5's average is over the other folds.
* **VOC super-categories in fold 3:** person is a fine-tuning class of fold 3, so its 15
  pre-training classes form three super-categories (animal, vehicle, indoor), not four; Fig. 7
  still plots them at "4 categories".
* **SigmoidalLoss** (Table 4) pre-trains the 16-class FCN with the class-dependent loss for
  the background class, thesis Eq. 9 (``cd_softmax``: ``1 − p_0`` for background pixels,
  ``−log p_y`` otherwise), the multiclass form of Eq. 8.

Entry point: :func:`run` with a :class:`~.voc_data.VocData` and a :class:`VocTransferConfig`
(``scripts/voc_transfer.py`` builds both from its options, :mod:`.voc_cli`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from robustlabel.data.voc import (
    FOLDS,
    VOC_CLASSES,
    VocSample,
    VocSelection,
    binarise_objects,
    categorise_objects,
    class_index,
    contiguous_labels,
    false_positive_objects,
    paint_objects,
    pretraining_classes,
    random_grouping,
    randomise_object_labels,
    super_category_grouping,
    unsegment_objects,
)
from robustlabel.engine.checkpoint import atomic_torch_save
from robustlabel.experiments.cli import prepare_out_dir
from robustlabel.experiments.figures import PlotPanel, plot_panels, save_figure
from robustlabel.experiments.store import ResultsStore
from robustlabel.experiments.tables import Measurement, write_report
from robustlabel.experiments.voc_data import TEST_SET_NOTE, RunOptions, VocData, mode_label, prepare_data, run_settings
from robustlabel.experiments.voc_fcn_training import (
    ALEXNET_NOTE,
    SOLVER_SOURCE,
    FcnConfig,
    SolverConfig,
    build_fcn,
    build_loss,
    train_fcn,
)
from robustlabel.machine import environment_info
from robustlabel.metrics.statistics import mean_std

DOG = class_index("dog")
#: a labelling of one image's objects: (objects {instance: VOC class}, pre-training classes, rng) -> labels
Labeller = Callable[[Mapping[int, int], Sequence[int], np.random.Generator], dict[int, int]]


@dataclass(frozen=True)
class Pretraining:
    """One pre-training variant: how the objects are labelled, how many classes, which loss."""

    key: str
    description: str
    loss: str = "logistic"
    needs_dog: bool = False
    grouping: str | int | None = None  # "super" or k for a random grouping into k


def _true(objects, classes, rng):
    index = contiguous_labels(classes)
    return {i: index[c] for i, c in objects.items()}


def _random(fraction: float) -> Labeller:
    def label(objects, classes, rng):
        return _true(randomise_object_labels(objects, classes, fraction, rng), classes, rng)
    return label


LABELLERS: dict[str, Labeller] = {
    "true": _true,
    "all_random": _random(1.0),
    "half_random": _random(0.5),
    "binary": lambda objects, classes, rng: binarise_objects(objects),
    "half_unseg": lambda objects, classes, rng: unsegment_objects(_true(objects, classes, rng), 0.5, rng),
    "no_fp": lambda objects, classes, rng: false_positive_objects(objects, [DOG], 0.0, rng),
    "half_fp": lambda objects, classes, rng: false_positive_objects(objects, [DOG], 0.5, rng),
}

PRETRAININGS: dict[str, Pretraining] = {p.key: p for p in (
    Pretraining("true", "15 classes, true labels"),
    Pretraining("all_random", "15 classes, every object's class replaced by a random other class"),
    Pretraining("half_random", "15 classes, each object's class replaced by a random other class with p = 0.5"),
    Pretraining("binary", "foreground/background"),
    Pretraining("half_unseg", "15 classes, each object unsegmented with p = 0.5, cross-entropy"),
    Pretraining("half_unseg_sigmoid", "15 classes, each object unsegmented with p = 0.5, class-dependent loss (Eq. 9)",
                loss="sigmoid"),
    Pretraining("no_fp", "dog vs background; objects of the other 14 classes background", needs_dog=True),
    Pretraining("half_fp", "dog vs background; each object of the other 14 classes foreground with p = 0.5",
                needs_dog=True),
    Pretraining("super", "VOC super-categories of the 15 classes", grouping="super"),
    Pretraining("rc4", "a seeded random grouping of the 15 classes into 4", grouping=4),
    Pretraining("rc7", "a seeded random grouping of the 15 classes into 7", grouping=7),
    Pretraining("rc11", "a seeded random grouping of the 15 classes into 11", grouping=11),
)}
RANDOM_WEIGHTS = "RandomWeights"


@dataclass(frozen=True)
class Table:
    """One of Tables 3–5: row name -> pre-training key (``None``: RandomWeights) and thesis values."""

    stem: str
    title: str
    rows: tuple[tuple[str, str | None], ...]
    paper: Mapping[str, tuple[tuple[float, float], ...]]  # row -> (fold1..fold4, average) as (mean, std)


_RW = ((0.29, 0.01), (0.29, 0.03), (0.27, 0.01), (0.30, 0.02), (0.29, 0.02))
_TRUE = ((0.29, 0.01), (0.36, 0.01), (0.29, 0.01), (0.37, 0.01), (0.33, 0.01))
TABLES = (
    Table("table3", "Ju 2017 Table 3: fine-tuning mean IU of representations pre-trained with mislabelled objects",
          ((RANDOM_WEIGHTS, None), ("TrueLabels", "true"), ("AllRandomLabels", "all_random"),
           ("HalfRandomLabels", "half_random"), ("BinarizedLabels", "binary")),
          {RANDOM_WEIGHTS: _RW, "TrueLabels": _TRUE,
           "AllRandomLabels": ((0.29, 0.01), (0.33, 0.03), (0.26, 0.01), (0.28, 0.01), (0.29, 0.01)),
           "HalfRandomLabels": ((0.27, 0.01), (0.33, 0.02), (0.25, 0.01), (0.29, 0.01), (0.29, 0.01)),
           "BinarizedLabels": ((0.30, 0.02), (0.35, 0.01), (0.29, 0.02), (0.35, 0.03), (0.32, 0.02))}),
    Table("table4", "Ju 2017 Table 4: fine-tuning mean IU of representations pre-trained with 50 % unsegmented objects",
          ((RANDOM_WEIGHTS, None), ("CompleteLabels", "true"), ("HalfUnsegmented", "half_unseg"),
           ("SigmoidalLoss", "half_unseg_sigmoid")),
          {RANDOM_WEIGHTS: _RW, "CompleteLabels": _TRUE,
           "HalfUnsegmented": ((0.26, 0.01), (0.30, 0.03), (0.28, 0.03), (0.32, 0.02), (0.29, 0.02)),
           "SigmoidalLoss": ((0.30, 0.01), (0.37, 0.01), (0.31, 0.02), (0.34, 0.02), (0.33, 0.02))}),
    Table("table5", "Ju 2017 Table 5: fine-tuning mean IU of representations pre-trained with false-positive objects "
          "(dog the only target)",
          ((RANDOM_WEIGHTS, None), ("NoFalsePositive", "no_fp"), ("HalfFalsePositive", "half_fp")),
          {RANDOM_WEIGHTS: _RW,
           "NoFalsePositive": ((0.26, 0.01), (0.37, 0.03), (0.27, 0.01), (0.33, 0.04), (0.31, 0.02)),
           "HalfFalsePositive": ((0.27, 0.01), (0.34, 0.01), (0.30, 0.01), (0.32, 0.01), (0.31, 0.01))}),
)
#: Fig. 7: number of pre-training categories -> pre-training (None: random weights), and the random groupings
FIG7_LINE = ((0, None), (1, "binary"), (4, "super"), (15, "true"))
FIG7_RANDOM = ((4, "rc4"), (7, "rc7"), (11, "rc11"))
AVERAGE = "Average mean IU"


@dataclass(frozen=True)
class VocTransferConfig(FcnConfig):
    """Every setting of Tables 3–5 / Fig. 7 besides the data; the defaults are the thesis' (the
    FCN-AlexNet reference solver, :class:`~.voc_fcn_training.FcnConfig`).

    Attributes:
        folds: the folds to run (:data:`robustlabel.data.voc.FOLDS`), kept sorted and unique.
        pretrain_iterations, pretrain_snapshot_every: the pre-training (240,000; a snapshot, i.e.
            a resumable state, every 4,000).
        finetune_iterations, finetune_snapshot_every: the fine-tuning (12,000; every 2,000, so
            that the last five snapshots exist: the thesis' 4,000 gives three).

    Raises:
        ValueError: an unknown fold, no fold, or a setting out of range.
    """

    folds: tuple[int, ...] = tuple(sorted(FOLDS))
    pretrain_iterations: int = 240_000
    pretrain_snapshot_every: int = 4000
    finetune_iterations: int = 12_000
    finetune_snapshot_every: int = 2000

    def __post_init__(self) -> None:
        super().__post_init__()
        folds = tuple(sorted(dict.fromkeys(int(f) for f in self.folds)))
        if not folds or any(f not in FOLDS for f in folds):
            raise ValueError(f"folds must be some of {sorted(FOLDS)}, got {self.folds}")
        object.__setattr__(self, "folds", folds)
        self.pretrain_solver()  # validates the iteration counts
        self.finetune_solver()

    def pretrain_solver(self) -> SolverConfig:
        """The SGD settings of a pre-training."""
        return self.solver_config(self.pretrain_iterations, self.pretrain_snapshot_every)

    def finetune_solver(self) -> SolverConfig:
        """The SGD settings of a fine-tuning."""
        return self.solver_config(self.finetune_iterations, self.finetune_snapshot_every)

    def solver_fingerprint(self) -> dict[str, float]:
        """The solver part of a results folder's fingerprint."""
        keys = ("pretrain_iterations", "pretrain_snapshot_every", "finetune_iterations", "finetune_snapshot_every",
                "iter_size", "lr", "momentum", "weight_decay")
        return {k: getattr(self, k) for k in keys}


#: ``--quick``: a CPU smoke run of a few minutes (numbers not comparable to the thesis), folds 1 and 3
QUICK = {"pretrain_iterations": 100, "pretrain_snapshot_every": 100, "finetune_iterations": 60,
         "finetune_snapshot_every": 12, "iter_size": 2, "lr": 1e-4, "width": 0.125, "repeats": 1, "folds": [1, 3]}


def pretraining_labels(pretraining: Pretraining, samples: Sequence[VocSample], fold: int,
                       seed: int) -> tuple[list[np.ndarray], int, dict[int, int] | None]:
    """Label maps of ``samples`` under ``pretraining`` for ``fold``; the number of classes
    (background included) and the grouping used, if any.  Object decisions use one generator per
    image seeded ``[seed, fold, image index]``; a random grouping uses ``[seed, fold, k]``."""
    classes = pretraining_classes(fold)
    grouping = None
    if pretraining.grouping == "super":
        grouping = super_category_grouping(classes)
    elif pretraining.grouping is not None:
        k = int(pretraining.grouping)
        grouping = random_grouping(classes, k, np.random.default_rng([seed, fold, k]))
    maps = []
    for index, s in enumerate(samples):
        rng = np.random.default_rng([seed, fold, index])
        if grouping is not None:
            labels = categorise_objects(s.objects, grouping)
        else:
            labels = LABELLERS[pretraining.key.removesuffix("_sigmoid")](s.objects, classes, rng)
        maps.append(paint_objects(s.class_map, s.instance_map, labels))
    if grouping is not None:
        n_classes = max(grouping.values()) + 1
    elif pretraining.key in ("binary", "no_fp", "half_fp"):
        n_classes = 2
    else:
        n_classes = len(classes) + 1
    return maps, n_classes, grouping


def fold_labels(samples: Sequence[VocSample], fold: int) -> list[np.ndarray]:
    """True labels of the fold's 5 classes as 1–5 (fine-tuning and test maps)."""
    index = contiguous_labels(FOLDS[fold])
    return [paint_objects(s.class_map, s.instance_map, {i: index[c] for i, c in s.objects.items()}) for s in samples]


def unavailable(pretraining: str | None, fold: int) -> str | None:
    """Why a (pre-training, fold) cell cannot be computed as the thesis describes, or ``None``."""
    if pretraining is not None and PRETRAININGS[pretraining].needs_dog and DOG in FOLDS[fold]:
        return "dog, the only target, is a fine-tuning class of fold 3"
    return None


class TransferExperiment:
    """Pre-trains (once per variant, fold and repeat), fine-tunes and records every run."""

    def __init__(self, config: VocTransferConfig, selection: VocSelection, store: ResultsStore, out: Path,
                 quick: bool = False) -> None:
        self.config, self.selection, self.store = config, selection, store
        self.pre_solver = config.pretrain_solver()
        self.ft_solver = config.finetune_solver()
        self.models = out / "models"
        self.states = None if quick else out / "states"
        #: quick mode keeps pre-trained weights in memory instead of writing them to models/
        self.cache: dict[str, dict[str, torch.Tensor]] | None = {} if quick else None

    def needed(self) -> list[str | None]:
        keys: list[str | None] = [None]
        for table in TABLES:
            keys += [k for _, k in table.rows]
        keys += [k for _, k in FIG7_LINE + FIG7_RANDOM]
        return list(dict.fromkeys(keys))

    def todo(self) -> tuple[list[tuple[int, int, str | None]], int]:
        """Fine-tuning runs still to do and the iterations they need (pre-training included)."""
        runs, iterations = [], 0
        for r in range(self.config.repeats):
            for fold in self.config.folds:
                for key in self.needed():
                    if unavailable(key, fold) or f"r{r}/f{fold}/ft/{key or 'random'}" in self.store:
                        continue
                    runs.append((r, fold, key))
                    iterations += self.ft_solver.iterations
                    if key is not None and not self._have_pretrained(r, fold, key):
                        iterations += self.pre_solver.iterations
        return runs, iterations

    def _pretrained_path(self, repeat: int, fold: int, key: str) -> Path:
        return self.models / f"r{repeat}_f{fold}_{key}.pt"

    def _have_pretrained(self, repeat: int, fold: int, key: str) -> bool:
        if f"r{repeat}/f{fold}/pre/{key}" not in self.store:
            return False
        if self.cache is not None:
            return self._pretrained_path(repeat, fold, key).name in self.cache
        return self._pretrained_path(repeat, fold, key).is_file()

    def _state(self, name: str) -> Path | None:
        return None if self.states is None else self.states / f"{name}.pt"

    def pretrained(self, repeat: int, fold: int, key: str, progress: Callable[[int], None]) -> dict[str, torch.Tensor]:
        """The transferable weights of a pre-training, trained now unless saved earlier."""
        path = self._pretrained_path(repeat, fold, key)
        run_key = f"r{repeat}/f{fold}/pre/{key}"
        if self._have_pretrained(repeat, fold, key):
            if self.cache is not None:
                return self.cache[path.name]
            return torch.load(path, map_location="cpu", weights_only=True)
        samples = self.selection.of_classes("train", pretraining_classes(fold))
        maps, n_classes, grouping = pretraining_labels(PRETRAININGS[key], samples, fold, repeat)
        model = build_fcn(n_classes, self.config.width, self.config.head_init, self.config.alexnet_weights, seed=repeat)
        state = self._state(f"r{repeat}_f{fold}_pre_{key}")
        result = train_fcn(model, [s.image for s in samples], maps,
                           build_loss(PRETRAININGS[key].loss, n_classes), self.pre_solver, seed=repeat,
                           device=self.config.device, state_path=state, progress=progress)
        weights = {k: v.cpu() for k, v in model.transferable_state_dict().items()}
        if self.cache is not None:
            self.cache[path.name] = weights
        else:
            atomic_torch_save(weights, path)
        self.store.put(run_key, {"pretraining": key, "fold": fold, "repeat": repeat, "n_train": len(samples),
                                 "n_classes": n_classes, "grouping": grouping, "history": result.history})
        if state is not None:
            state.unlink(missing_ok=True)
        return weights

    def finetune(self, repeat: int, fold: int, key: str | None, progress: Callable[[int], None]) -> None:
        """Fine-tune on the fold's 5 classes from ``key``'s pre-training (or random weights) and record it."""
        weights = None if key is None else self.pretrained(repeat, fold, key, progress)
        train = self.selection.of_classes("train", FOLDS[fold])
        test = self.selection.of_classes("test", FOLDS[fold])
        if not train or not test:
            raise SystemExit(f"error: fold {fold} has {len(train)} training and {len(test)} test images")
        model = build_fcn(len(FOLDS[fold]) + 1, self.config.width, self.config.head_init, None, seed=1000 + repeat)
        if weights is not None:
            model.load_transferable(weights)
        name = key or "random"
        state = self._state(f"r{repeat}_f{fold}_ft_{name}")
        result = train_fcn(model, [s.image for s in train], fold_labels(train, fold), build_loss("logistic", 6),
                           self.ft_solver, seed=repeat, device=self.config.device,
                           test=([s.image for s in test], fold_labels(test, fold), 6), state_path=state,
                           progress=progress)
        self.store.put(f"r{repeat}/f{fold}/ft/{name}", {
            "pretraining": key, "fold": fold, "repeat": repeat, "n_train": len(train), "n_test": len(test),
            "history": result.history, "last_five_mean_iu": [h["mean_iu"] for h in result.history[-5:]],
            "last_five_iterations": [h["iteration"] for h in result.history[-5:]]})
        if state is not None:
            state.unlink(missing_ok=True)


def run(
    data: VocData,
    out: str | os.PathLike,
    config: VocTransferConfig = VocTransferConfig(),
    options: RunOptions = RunOptions(),
) -> Path:
    """Run (or skip, or resume) every fine-tuning and its pre-training, then write the tables and Fig. 7.

    Args:
        data: where the images come from.
        out: the output folder (``runs.json`` of finished runs, ``models/``, ``states/``).
        config: the experiment's settings.
        options: quick mode, overwrite, threads, progress bars.

    Returns:
        the folder with table3/4/5 and fig7 outputs.

    Raises:
        FileNotFoundError: ``data.voc`` holds no VOC2011 devkit.
        ValueError: ``out`` holds runs of other settings.
        SystemExit: a fold without training or test images.
    """
    out = prepare_out_dir(Path(out), overwrite=options.overwrite, threads=options.threads,
                          remove=["runs.json", "states", "models"])
    selection, data_note = prepare_data(data, out, options.progress)
    fingerprint = {**data.fingerprint(selection), **config.network_fingerprint(), **config.solver_fingerprint()}
    store = ResultsStore(out / "runs.json", fingerprint)
    experiment = TransferExperiment(config, selection, store, out, options.quick)
    runs, iterations = experiment.todo()
    total = config.repeats * sum(1 for f in config.folds for k in experiment.needed() if not unavailable(k, f))
    with tqdm(total=iterations, desc="Tables 3-5", unit="it", disable=not options.progress) as bar:
        for repeat, fold, key in runs:
            bar.set_postfix_str(f"r{repeat} fold{fold} {key or 'random'}")
            experiment.finetune(repeat, fold, key, bar.update)
    print(f"fine-tuning runs trained: {len(runs)}, skipped (finished earlier): {total - len(runs)}")
    report(out, data, config, store, selection, data_note, options)
    return out


def _fold_column(fold: int) -> str:
    return f"Fold{fold}"


def table_measurements(store: ResultsStore, rows: Sequence[tuple[str, str | None]], folds: Sequence[int],
                       repeats: int) -> list[Measurement]:
    """Per row and fold: the last five fine-tuning mean IUs of each repeat; the average column:
    per repeat and snapshot, the mean over the folds that have a value."""
    measurements = []
    for name, key in rows:
        per_point: dict[tuple[int, int], list[float]] = {}
        for fold in folds:
            for r in range(repeats):
                record = store.get(f"r{r}/f{fold}/ft/{key or 'random'}")
                if record is None:
                    continue
                for j, value in enumerate(record["last_five_mean_iu"]):
                    measurements.append(Measurement(name, _fold_column(fold), value, f"r{r}s{j}"))
                    per_point.setdefault((r, j), []).append(value)
        measurements += [Measurement(name, AVERAGE, float(np.mean(v)), f"r{r}s{j}") for (r, j), v in per_point.items()]
    return measurements


def report(out: Path, data: VocData, config: VocTransferConfig, store: ResultsStore, selection: VocSelection,
           data_note: str, options: RunOptions = RunOptions()) -> list[Path]:
    """Write table3/4/5.{md,csv,json,png}, fig7.{md,csv,json} and fig7.png under ``out``."""
    columns = [_fold_column(f) for f in FOLDS] + [AVERAGE]
    not_run = [f for f in FOLDS if f not in config.folds]
    common = [
        data_note, ALEXNET_NOTE, config.weights_note(pretraining=True), TEST_SET_NOTE,
        f"**Solver:** {SOLVER_SOURCE}; here iter_size {config.iter_size}, lr {config.lr:g}; pre-training "
        f"{config.pretrain_iterations} iterations, fine-tuning {config.finetune_iterations} iterations with a snapshot "
        f"every {config.finetune_snapshot_every} (the thesis' 4,000 would leave three snapshots, not five); fine-tuning "
        "starts from the pre-trained features/fc6/fc7 with the score and upsampling layers re-initialised (Xavier)",
        "**Cells:** mean ± std of the fine-tuning mean IU on the fold's test images over repeats × the last five "
        "fine-tuning snapshots; the average column averages the folds per repeat and snapshot",
        "**Folds:** " + "; ".join(f"fold {f}: " + ", ".join(VOC_CLASSES[c - 1] for c in FOLDS[f]) for f in FOLDS)
        + (f"; not run here (--folds): {', '.join(map(str, not_run))} — their cells are '—'" if not_run else ""),
    ]
    extra_notes = {
        "table3": ["**Random labels:** an object's class is replaced by a uniformly drawn other pre-training class, "
                   "for every object (AllRandomLabels) or each with probability 0.5 (HalfRandomLabels)"],
        "table4": ["**CompleteLabels** is the TrueLabels pre-training of Table 3 (the thesis prints identical numbers)",
                   "**SigmoidalLoss:** the 16-class pre-training uses thesis Eq. 9 (cd_softmax: 1 − p_0 on "
                   "background pixels), the multiclass form of the sigmoid loss; HalfUnsegmented uses cross-entropy"],
        "table5": ["**Fold 3:** not computed ('—'): dog, the only target category, is one of fold 3's fine-tuning "
                   "classes, so a dog-target pre-training would train on a fine-tuning category; the average is over "
                   "the other folds run",
                   "**HalfFalsePositive:** each object of the other 14 pre-training classes is segmented as "
                   "foreground with probability 0.5; NoFalsePositive labels them background"],
    }
    written = []
    label = mode_label(data, options.quick)
    for table in TABLES:
        measurements = table_measurements(store, table.rows, config.folds, config.repeats)
        paper = {(row, col): value for row, values in table.paper.items() for col, value in zip(columns, values)}
        files = write_report(
            out, table.stem, title=table.title, measurements=measurements, paper=paper,
            rows=[name for name, _ in table.rows], columns=columns, quick=options.quick,
            environment=environment_info(config.device), row_header="Pre-trained model",
            paper_source=f"Ju 2017, Table {table.stem[-1]} (mean ± std)", notes=common + extra_notes[table.stem],
            extra={"settings": run_settings(data, config, options, out),
                   "selection": selection.counts, "runs": {k: v for k, v in store.runs.items() if "/ft/" in k}},
        )
        cells = [c for c in files.cells if c.column == AVERAGE]
        plot_panels(out / f"{table.stem}.png", [PlotPanel(
            f"{table.stem}: {AVERAGE}", [c.row for c in cells],
            {"ours": [c.mean for c in cells], "thesis": [c.paper for c in cells]},
            {"ours": [c.std for c in cells], "thesis": [c.paper_std for c in cells]}, ylabel="mean IU")],
            suptitle=label)
        written.append(files.markdown)
    written.append(fig7(out, config, store, common, quick=options.quick, label=label))
    return written


def fig7(out: Path, config: VocTransferConfig, store: ResultsStore, notes: list[str], *, quick: bool = False,
         label: str = "") -> Path:
    """Fig. 7: fine-tuning mean IU against the number of pre-training categories (a line through
    0, 1, 4, 15) and the random groupings RC4, RC7, RC11 as isolated error bars; per point the
    mean and std over repeats × last five snapshots of each fold, averaged over folds; ``label``
    ends the title (:func:`~.voc_data.mode_label`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{k} ({'RandomWeights' if key is None else PRETRAININGS[key].description})", key) for k, key in FIG7_LINE]
    rows += [(f"RC{k}", key) for k, key in FIG7_RANDOM]
    measurements = table_measurements(store, rows, config.folds, config.repeats)
    columns = [_fold_column(f) for f in FOLDS] + [AVERAGE]
    files = write_report(
        out, "fig7", title="Ju 2017 Fig. 7: fine-tuning mean IU against the number of pre-training categories",
        measurements=measurements, rows=[r for r, _ in rows], columns=columns, quick=quick,
        environment=environment_info(config.device), row_header="Pre-training categories", notes=notes + [
            "**Super-categories:** VOC's person/animal/vehicle/indoor restricted to the 15 pre-training classes; "
            "fold 3 (person is a fine-tuning class) has three, plotted at 4 like the other folds",
            "**Random groupings:** a seeded random partition of the 15 classes into 4, 7 or 11 non-empty groups per "
            "repeat and fold",
            "**Figure:** per point, the mean and std over repeats × snapshots of each fold, averaged over folds "
            "(the thesis gives no numbers for Fig. 7)"])

    def point(key: str | None) -> tuple[float, float] | None:
        means, stds = [], []
        for fold in config.folds:
            stats = mean_std(v for r in range(config.repeats)
                             for v in (store.get(f"r{r}/f{fold}/ft/{key or 'random'}") or {}).get("last_five_mean_iu", []))
            if stats["n"]:
                means.append(stats["mean"])
                stds.append(stats["std"] if stats["n"] > 1 else 0.0)
        return (float(np.mean(means)), float(np.mean(stds))) if means else None

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    line = [(k, point(key)) for k, key in FIG7_LINE]
    line = [(k, p) for k, p in line if p is not None]
    if line:
        ax.errorbar([k for k, _ in line], [p[0] for _, p in line], yerr=[p[1] for _, p in line], marker="o",
                    capsize=3, label="0: random weights, 1: binary, 4: VOC super-categories, 15: true classes")
    for k, key in FIG7_RANDOM:
        p = point(key)
        if p is not None:
            ax.errorbar([k + 0.3], [p[0]], yerr=[p[1]], marker="s", linestyle="none", capsize=3, color="tab:red",
                        label="random categorisation (RC)" if k == FIG7_RANDOM[0][0] else None)
            ax.annotate(f"RC{k}", (k + 0.3, p[0]), textcoords="offset points", xytext=(5, 5), fontsize="small")
    ax.set_xticks([0, 1, 4, 7, 11, 15])
    ax.set_xlabel("number of pre-training categories")
    ax.set_ylabel("fine-tuning mean IU")
    ax.set_title(f"Fig. 7 (folds {', '.join(map(str, config.folds))}) — {label}", fontsize="small")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    save_figure(fig, out / "fig7.png", dpi=110)
    return files.markdown
