"""Ju 2017, §5.2: foreground/background segmentation with 50 % of the objects unsegmented —
Table 2 and Fig. 6.

Every single-object training image of VOC2011 ``train`` (+ SBD) is labelled foreground /
background; in the *50%Unseg.* rows each object is left unsegmented (labelled background)
with probability ``p = 0.5``, seeded per repeat.  FCN-AlexNet (two classes) is trained with

* **LogisticLoss** — cross-entropy;
* **ClassWeighted** — Eq. 7 with ``w_k = N / (2 n_k)`` from the observed labels (``auto``) or
  given weights ``class_weights = (BG, FG)`` (``--class-weights BG,FG``);
* **SigmoidLoss** — the class-dependent sigmoid loss (Eq. 8, ``cd_sigmoid``) on ``f = z_1 − z_0``.

Each run is scored on the complete binary labels of the VOC2011 ``val`` single-object images at
every snapshot; a repeat reports the snapshot with the best mean IU among its last five (its
overall accuracy, mean recall and f.w. IU come from the same snapshot), and the table gives
mean ± std over repeats beside the thesis' Table 2.

Entry point: :func:`run` with a :class:`~.voc_data.VocData` and a :class:`VocPUConfig`
(``scripts/voc_pu_segmentation.py`` builds both from its options, :mod:`.voc_cli`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from robustlabel.atomic import write_bytes_atomic
from robustlabel.data.voc import VOID, VocSample, VocSelection, binarise_objects, paint_objects, unsegment_objects
from robustlabel.experiments.cli import prepare_out_dir
from robustlabel.experiments.figures import plot_ours_vs_paper, save_figure
from robustlabel.experiments.store import ResultsStore
from robustlabel.experiments.tables import Measurement, write_report
from robustlabel.experiments.voc_data import TEST_SET_NOTE, RunOptions, VocData, mode_label, prepare_data, run_settings
from robustlabel.experiments.voc_fcn_training import (
    ALEXNET_NOTE,
    SOLVER_SOURCE,
    FcnConfig,
    SolverConfig,
    best_of_last,
    build_fcn,
    build_loss,
    train_fcn,
)
from robustlabel.losses import inverse_frequency_weights
from robustlabel.machine import environment_info
from robustlabel.metrics.segmentation import confusion_matrix, segmentation_scores


@dataclass(frozen=True)
class SegmentationRow:
    """One row of Ju (2017) Table 2: the training set (complete or 50 % unsegmented) and the loss."""

    name: str
    key: str
    unsegmented: bool
    loss: str  # a robustlabel.experiments.voc_fcn_training.LOSS_NAMES entry


ROWS = (
    SegmentationRow("Complete / LogisticLoss", "complete_logistic", False, "logistic"),
    SegmentationRow("50%Unseg. / LogisticLoss", "unseg_logistic", True, "logistic"),
    SegmentationRow("50%Unseg. / ClassWeighted", "unseg_weighted", True, "class_weighted"),
    SegmentationRow("50%Unseg. / SigmoidLoss", "unseg_sigmoid", True, "sigmoid"),
)
#: table column -> key of robustlabel.metrics.segmentation.segmentation_scores
COLUMNS = {"overall acc.": "overall_acc", "mean rec.": "mean_recall", "f.w. IU": "fw_iu", "mean IU": "mean_iu"}
#: thesis Table 2 (single numbers)
PAPER_TABLE2 = {
    "Complete / LogisticLoss": (0.90, 0.85, 0.82, 0.75),
    "50%Unseg. / LogisticLoss": (0.85, 0.68, 0.73, 0.60),
    "50%Unseg. / ClassWeighted": (0.84, 0.71, 0.73, 0.62),
    "50%Unseg. / SigmoidLoss": (0.83, 0.75, 0.72, 0.62),
}


@dataclass(frozen=True)
class VocPUConfig(FcnConfig):
    """Every setting of Table 2 / Fig. 6 besides the data; the defaults are the thesis' (the
    FCN-AlexNet reference solver, :class:`~.voc_fcn_training.FcnConfig`).

    Attributes:
        iterations: SGD iterations of each run (§5.2: 240,000).
        snapshot_every: snapshot (test evaluation) interval (4,000).
        unsegmented_p: probability that an object is left unsegmented in the *50%Unseg.* rows.
        class_weights: ClassWeighted weights ``(BG, FG)``; ``None``: the inverse label frequency of
            each repeat's training maps.
        examples: test images in Fig. 6.

    Raises:
        ValueError: a setting out of range.
    """

    iterations: int = 240_000
    snapshot_every: int = 4000
    unsegmented_p: float = 0.5
    class_weights: tuple[float, float] | None = None
    examples: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        self.solver()  # validates iterations and snapshot_every
        if not 0.0 <= float(self.unsegmented_p) <= 1.0:
            raise ValueError(f"unsegmented_p must lie in [0, 1], got {self.unsegmented_p}")
        if self.class_weights is not None:
            object.__setattr__(self, "class_weights", tuple(float(w) for w in self.class_weights))
            if len(self.class_weights) != 2 or min(self.class_weights) < 0:
                raise ValueError(f"class_weights must be two weights (BG, FG) >= 0, got {self.class_weights}")

    def solver(self) -> SolverConfig:
        """The SGD settings of every run."""
        return self.solver_config(self.iterations, self.snapshot_every)


#: ``--quick``: a CPU smoke run of a few minutes (numbers not comparable to the thesis)
QUICK = {"iterations": 250, "snapshot_every": 50, "iter_size": 2, "lr": 1e-4, "width": 0.125, "repeats": 2}


def binary_targets(samples: Sequence[VocSample], p_unsegmented: float, seed: int | None) -> list[np.ndarray]:
    """Foreground/background maps; with ``seed`` each object is unsegmented with probability ``p``
    (a generator per image, seeded ``[seed, image index]``)."""
    maps = []
    for index, s in enumerate(samples):
        labels = binarise_objects(s.objects)
        if seed is not None:
            labels = unsegment_objects(labels, p_unsegmented, np.random.default_rng([seed, index]))
        maps.append(paint_objects(s.class_map, s.instance_map, labels))
    return maps


def _save_predictions(path: Path, predictions: list[np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, *predictions)
    write_bytes_atomic(path, buffer.getvalue())


def _load_predictions(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def run(
    data: VocData,
    out: str | os.PathLike,
    config: VocPUConfig = VocPUConfig(),
    options: RunOptions = RunOptions(),
) -> Path:
    """Train (or skip, or resume) every row × repeat, then write table2.{md,csv,json,png} and fig6.png.

    Args:
        data: where the images come from.
        out: the output folder (``runs.json`` of finished runs, ``predictions/``, ``states/``).
        config: the experiment's settings.
        options: quick mode, overwrite, threads, progress bars.

    Returns:
        the Markdown table's path.

    Raises:
        FileNotFoundError: ``data.voc`` holds no VOC2011 devkit.
        ValueError: ``out`` holds runs of other settings.
        SystemExit: no single-object training or test image is left.
    """
    out = prepare_out_dir(Path(out), overwrite=options.overwrite, threads=options.threads,
                          remove=["runs.json", "states", "predictions"])
    selection, data_note = prepare_data(data, out, options.progress)
    if not selection.train or not selection.test:
        raise SystemExit(f"error: no single-object images left (train {len(selection.train)}, test {len(selection.test)})")
    solver = config.solver()
    fingerprint = {**data.fingerprint(selection), **config.network_fingerprint(), "p": config.unsegmented_p,
                   "class_weights": config.class_weights, **solver.as_dict()}
    store = ResultsStore(out / "runs.json", fingerprint)
    train_images = [s.image for s in selection.train]
    test_images = [s.image for s in selection.test]
    test_targets = binary_targets(selection.test, 0.0, None)
    todo = [(r, row) for r in range(config.repeats) for row in ROWS if f"r{r}/{row.key}" not in store]
    skipped = config.repeats * len(ROWS) - len(todo)
    with tqdm(total=len(todo) * solver.iterations, desc="Table 2", unit="it", disable=not options.progress) as bar:
        for repeat, row in todo:
            key = f"r{repeat}/{row.key}"
            bar.set_postfix_str(key)
            targets = binary_targets(selection.train, config.unsegmented_p, repeat if row.unsegmented else None)
            weights = None
            if row.loss == "class_weighted":
                weights = list(config.class_weights) if config.class_weights else inverse_frequency_weights(
                    targets, 2, ignore_index=VOID, normalise="total")
            model = build_fcn(2, config.width, config.head_init, config.alexnet_weights, seed=repeat)
            state = None if options.quick else out / "states" / f"r{repeat}_{row.key}.pt"
            result = train_fcn(model, train_images, targets, build_loss(row.loss, 2, weights), solver, seed=repeat,
                               device=config.device, test=(test_images, test_targets, 2), keep_predictions=True,
                               state_path=state, progress=bar.update)
            _save_predictions(out / "predictions" / f"r{repeat}_{row.key}.npz", result.best_predictions)
            labelled = np.concatenate([t[t != VOID] for t in targets])
            store.put(key, {"row": row.name, "repeat": repeat, "loss": row.loss, "weights": weights,
                            "weights_source": None if weights is None else ("given" if config.class_weights else "auto"),
                            "foreground_fraction": float(labelled.mean()) if labelled.size else 0.0,
                            "history": result.history, "best": best_of_last(result.history)})
            if state is not None:
                state.unlink(missing_ok=True)
    print(f"runs trained: {len(todo)}, skipped (finished earlier): {skipped}")
    return report(out, data, config, store, selection, test_targets, data_note, options)


def report(out: Path, data: VocData, config: VocPUConfig, store: ResultsStore, selection: VocSelection,
           test_targets: list[np.ndarray], data_note: str, options: RunOptions = RunOptions()) -> Path:
    """Write Table 2 (CSV/JSON/Markdown/PNG) and Fig. 6 under ``out`` from the finished runs."""
    measurements = []
    for r in range(config.repeats):
        for row in ROWS:
            record = store.get(f"r{r}/{row.key}")
            if record is not None:
                measurements += [Measurement(row.name, col, record["best"][k], r) for col, k in COLUMNS.items()]
    weights = {r: store.get(f"r{r}/unseg_weighted")["weights"] for r in range(config.repeats)
               if store.get(f"r{r}/unseg_weighted")}
    how = ("given (--class-weights)" if config.class_weights
           else "inverse label frequency w_k = N/(2 n_k) of the repeat's training maps")
    notes = [
        data_note, ALEXNET_NOTE, config.weights_note(pretraining=False), TEST_SET_NOTE,
        f"**Solver:** {SOLVER_SOURCE}; here iter_size {config.iter_size}, lr {config.lr:g}, {config.iterations} "
        f"iterations, snapshot every {config.snapshot_every}; per repeat the best mean IU of the last five snapshots "
        "(other columns from that snapshot), mean ± std over repeats",
        "**Schedule:** §5.2 quotes both 240,000 (pre-training) and 12,000 (fine-tuning) iterations; this single-phase "
        "model uses 240,000 with a snapshot every 4,000 by default",
        f"**Annotation:** 50%Unseg. = each object labelled background with probability {config.unsegmented_p:g} "
        "(seeded per repeat and image); void (255) pixels are ignored by losses and metrics",
        f"**ClassWeighted weights (BG, FG):** {how}: " + "; ".join(
            f"repeat {r}: ({w[0]:.3f}, {w[1]:.3f})" for r, w in weights.items()),
        "**SigmoidLoss:** cd_sigmoid (thesis Eq. 8) on f = z_1 − z_0 of the two-class FCN",
        "**Fig. 6:** repeat 0; the test images where the SigmoidLoss model's image mean IU exceeds the LogisticLoss "
        "model's by most (the thesis also shows selected images)",
    ]
    paper = {(name, col): v for name, values in PAPER_TABLE2.items() for col, v in zip(COLUMNS, values)}
    files = write_report(
        out, "table2",
        title="Ju 2017 Table 2: VOC2011 foreground/background segmentation with 50 % of the objects unsegmented",
        measurements=measurements, paper=paper, rows=[r.name for r in ROWS], columns=list(COLUMNS),
        quick=options.quick, environment=environment_info(config.device), row_header="Annotation / Loss",
        paper_source="Ju 2017, Table 2 (single numbers)", notes=notes,
        extra={"settings": run_settings(data, config, options, out),
               "selection": selection.counts, "skipped_files": selection.skipped, "runs": store.runs},
    )
    label = mode_label(data, options.quick)
    plot_ours_vs_paper(out / "table2.png", files.cells, ylabel="score", suptitle=f"Table 2 — {label}")
    plot_examples(out, selection.test, test_targets, config.examples, label)
    return files.markdown


def _image_mean_iu(target: np.ndarray, prediction: np.ndarray) -> float:
    hist = confusion_matrix(target, prediction, 2)
    return segmentation_scores(hist)["mean_iu"] if hist.sum() else 0.0


def plot_examples(out: Path, test: Sequence[VocSample], targets: Sequence[np.ndarray], examples: int,
                  label: str) -> Path | None:
    """Fig. 6 (``out/fig6.png``): image, true labels and the predictions of the three models of
    repeat 0 for ``examples`` test images; ``label`` ends the title (:func:`~.voc_data.mode_label`)."""
    folder = out / "predictions"
    paths = {key: folder / f"r0_{key}.npz" for key in ("unseg_logistic", "unseg_sigmoid", "complete_logistic")}
    if not all(p.is_file() for p in paths.values()):
        return None
    preds = {key: _load_predictions(p) for key, p in paths.items()}
    gain = [_image_mean_iu(t, s) - _image_mean_iu(t, lg)
            for t, s, lg in zip(targets, preds["unseg_sigmoid"], preds["unseg_logistic"])]
    chosen = list(np.argsort(gain)[::-1][: max(1, examples)])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = ["image", "true labels", "LogisticLoss\n(50% unseg.)", "SigmoidLoss\n(50% unseg.)",
              "LogisticLoss\n(complete)"]
    fig, axes = plt.subplots(len(chosen), 5, figsize=(10, 2.1 * len(chosen)), squeeze=False)
    for row, i in enumerate(chosen):
        target = np.where(targets[i] == VOID, 0.5, targets[i]).astype(float)
        panels = [test[i].image, target] + [preds[k][i] for k in ("unseg_logistic", "unseg_sigmoid", "complete_logistic")]
        for col, (ax, panel) in enumerate(zip(axes[row], panels)):
            ax.imshow(panel, cmap=None if col == 0 else "gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[col], fontsize="small")
        axes[row][0].set_ylabel(test[i].image_id, fontsize="x-small")
    fig.suptitle(f"Fig. 6: example predictions (white = foreground, grey = void) — {label}", fontsize="small")
    fig.tight_layout()
    return save_figure(fig, out / "fig6.png", dpi=100)
