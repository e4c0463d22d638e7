"""Ju 2017, §5.2: foreground/background segmentation with 50 % of the objects unsegmented —
Table 2 and Fig. 6.

Every single-object training image of VOC2011 ``train`` (+ SBD) is labelled foreground /
background; in the *50%Unseg.* rows each object is left unsegmented (labelled background)
with probability ``p = 0.5``, seeded per repeat.  FCN-AlexNet (two classes) is trained with

* **LogisticLoss** — cross-entropy;
* **ClassWeighted** — Eq. 7 with ``w_k = N / (2 n_k)`` from the observed labels (``auto``) or
  given weights ``--class-weights BG,FG``;
* **SigmoidLoss** — the class-dependent sigmoid loss (Eq. 8, ``cd_sigmoid``) on ``f = z_1 − z_0``.

Each run is scored on the complete binary labels of the VOC2011 ``val`` single-object images at
every snapshot; a repeat reports the snapshot with the best mean IU among its last five (its
overall accuracy, mean recall and f.w. IU come from the same snapshot), and the table gives
mean ± std over repeats beside the thesis' Table 2.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from robustlabel.data.nifti import write_bytes_atomic
from robustlabel.data.voc import VOID, VocSample, VocSelection, binarise_objects, paint_objects, unsegment_objects
from robustlabel.experiments.voc_cli import (
    ALEXNET_NOTE,
    mode_label,
    TEST_SET_NOTE,
    add_common_arguments,
    prepare_data,
    resolve_common,
    weights_note,
)
from robustlabel.experiments.voc_fcn_training import (
    SOLVER_SOURCE,
    SolverConfig,
    best_of_last,
    build_fcn,
    build_loss,
    train_fcn,
)
from robustlabel.losses import inverse_frequency_weights
from robustlabel.metrics.segmentation import confusion_matrix, segmentation_scores
from robustlabel.reporting import (
    Measurement,
    ResultsStore,
    environment_info,
    parse_float_pair,
    plot_ours_vs_paper,
    prepare_out_dir,
    save_figure,
    write_report,
)


@dataclass(frozen=True)
class Row:
    """One row of Table 2."""

    name: str
    key: str
    unsegmented: bool
    loss: str  # a robustlabel.experiments.voc_fcn_training.LOSS_NAMES entry


ROWS = (
    Row("Complete / LogisticLoss", "complete_logistic", False, "logistic"),
    Row("50%Unseg. / LogisticLoss", "unseg_logistic", True, "logistic"),
    Row("50%Unseg. / ClassWeighted", "unseg_weighted", True, "class_weighted"),
    Row("50%Unseg. / SigmoidLoss", "unseg_sigmoid", True, "sigmoid"),
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
QUICK = {"iterations": 250, "snapshot_every": 50, "iter_size": 2, "lr": 1e-4, "width": 0.125, "repeats": 2, "threads": 1}
FULL = {"iterations": 240_000, "snapshot_every": 4000, "iter_size": 20, "lr": 1e-4, "width": 1.0, "repeats": 3,
        "threads": None}


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """All options of ``scripts/voc_pu_segmentation.py``."""
    add_common_arguments(parser, QUICK)
    exp = parser.add_argument_group("Table 2")
    exp.add_argument("--iterations", type=int, help="SGD iterations (default 240000, see the notes)")
    exp.add_argument("--snapshot-every", type=int, help="snapshot interval (default 4000)")
    exp.add_argument("--unsegmented-p", type=float, default=0.5, help="probability that an object is unsegmented")
    exp.add_argument("--class-weights", type=parse_float_pair, metavar="BG,FG",
                     help="ClassWeighted weights (default: inverse label frequency of each repeat's training maps)")
    exp.add_argument("--examples", type=int, default=2, help="test images in Fig. 6")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` with :func:`add_arguments` (for tests and the script)."""
    return add_arguments(argparse.ArgumentParser(description=__doc__)).parse_args(argv)


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


def run(args: argparse.Namespace) -> Path:
    """Train (or skip, or resume) every row × repeat, then write table2.{md,csv,json,png} and fig6.png.

    Returns:
        the Markdown table's path.
    """
    args = resolve_common(args, QUICK, FULL)
    out = prepare_out_dir(args.out, overwrite=args.overwrite, threads=args.threads,
                          remove=["runs.json", "states", "predictions"])
    selection, data_note = prepare_data(args)
    if not selection.train or not selection.test:
        raise SystemExit(f"error: no single-object images left (train {len(selection.train)}, test {len(selection.test)})")
    solver = SolverConfig(args.iterations, args.snapshot_every, args.iter_size, args.lr, args.momentum, args.weight_decay)
    fingerprint = {"data": "synthetic" if args.synthetic else str(args.voc), "sbd": str(args.sbd),
                   "n_train": len(selection.train), "n_test": len(selection.test), "subsample": args.subsample,
                   "width": args.width, "head_init": args.head_init, "weights": str(args.alexnet_weights),
                   "p": args.unsegmented_p, "class_weights": args.class_weights, **solver.as_dict()}
    store = ResultsStore(out / "runs.json", fingerprint)
    train_images = [s.image for s in selection.train]
    test_images = [s.image for s in selection.test]
    test_targets = binary_targets(selection.test, 0.0, None)
    todo = [(r, row) for r in range(args.repeats) for row in ROWS if f"r{r}/{row.key}" not in store]
    skipped = args.repeats * len(ROWS) - len(todo)
    with tqdm(total=len(todo) * solver.iterations, desc="Table 2", unit="it", disable=args.no_progress) as bar:
        for repeat, row in todo:
            key = f"r{repeat}/{row.key}"
            bar.set_postfix_str(key)
            targets = binary_targets(selection.train, args.unsegmented_p, repeat if row.unsegmented else None)
            weights = None
            if row.loss == "class_weighted":
                weights = list(args.class_weights) if args.class_weights else inverse_frequency_weights(
                    targets, 2, ignore_index=VOID, normalise="total")
            model = build_fcn(2, args.width, args.head_init, args.alexnet_weights, seed=repeat)
            state = None if args.quick else out / "states" / f"r{repeat}_{row.key}.pt"
            result = train_fcn(model, train_images, targets, build_loss(row.loss, 2, weights), solver, seed=repeat,
                               device=args.device, test=(test_images, test_targets, 2), keep_predictions=True,
                               state_path=state, progress=bar.update)
            _save_predictions(out / "predictions" / f"r{repeat}_{row.key}.npz", result.best_predictions)
            labelled = np.concatenate([t[t != VOID] for t in targets])
            store.put(key, {"row": row.name, "repeat": repeat, "loss": row.loss, "weights": weights,
                            "weights_source": None if weights is None else ("given" if args.class_weights else "auto"),
                            "foreground_fraction": float(labelled.mean()) if labelled.size else 0.0,
                            "history": result.history, "best": best_of_last(result.history)})
            if state is not None:
                state.unlink(missing_ok=True)
    print(f"runs trained: {len(todo)}, skipped (finished earlier): {skipped}")
    return report(args, store, selection, test_targets, data_note)


def report(args: argparse.Namespace, store: ResultsStore, selection: VocSelection, test_targets: list[np.ndarray],
           data_note: str) -> Path:
    """Write Table 2 (CSV/JSON/Markdown/PNG) and Fig. 6 from the finished runs."""
    measurements = []
    for r in range(args.repeats):
        for row in ROWS:
            record = store.get(f"r{r}/{row.key}")
            if record is not None:
                measurements += [Measurement(row.name, col, record["best"][k], r) for col, k in COLUMNS.items()]
    weights = {r: store.get(f"r{r}/unseg_weighted")["weights"] for r in range(args.repeats)
               if store.get(f"r{r}/unseg_weighted")}
    how = "given (--class-weights)" if args.class_weights else "inverse label frequency w_k = N/(2 n_k) of the repeat's training maps"
    notes = [
        data_note, ALEXNET_NOTE, weights_note(args, pretraining=False), TEST_SET_NOTE,
        f"**Solver:** {SOLVER_SOURCE}; here iter_size {args.iter_size}, lr {args.lr:g}, {args.iterations} iterations, "
        f"snapshot every {args.snapshot_every}; per repeat the best mean IU of the last five snapshots (other columns "
        "from that snapshot), mean ± std over repeats",
        "**Schedule:** §5.2 quotes both 240,000 (pre-training) and 12,000 (fine-tuning) iterations; this single-phase "
        "model uses 240,000 with a snapshot every 4,000 by default",
        f"**Annotation:** 50%Unseg. = each object labelled background with probability {args.unsegmented_p:g} "
        "(seeded per repeat and image); void (255) pixels are ignored by losses and metrics",
        f"**ClassWeighted weights (BG, FG):** {how}: " + "; ".join(
            f"repeat {r}: ({w[0]:.3f}, {w[1]:.3f})" for r, w in weights.items()),
        "**SigmoidLoss:** cd_sigmoid (thesis Eq. 8) on f = z_1 − z_0 of the two-class FCN",
        "**Fig. 6:** repeat 0; the test images where the SigmoidLoss model's image mean IU exceeds the LogisticLoss "
        "model's by most (the thesis also shows selected images)",
    ]
    paper = {(name, col): v for name, values in PAPER_TABLE2.items() for col, v in zip(COLUMNS, values)}
    files = write_report(
        args.out, "table2",
        title="Ju 2017 Table 2: VOC2011 foreground/background segmentation with 50 % of the objects unsegmented",
        measurements=measurements, paper=paper, rows=[r.name for r in ROWS], columns=list(COLUMNS),
        quick=args.quick, environment=environment_info(args.device), row_header="Annotation / Loss",
        paper_source="Ju 2017, Table 2 (single numbers)", notes=notes,
        extra={"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "selection": selection.counts, "skipped_files": selection.skipped, "runs": store.runs},
    )
    plot_ours_vs_paper(args.out / "table2.png", files.cells, ylabel="score",
                       suptitle=f"Table 2 — {mode_label(args)}")
    plot_examples(args, selection.test, test_targets)
    return files.markdown


def _image_mean_iu(target: np.ndarray, prediction: np.ndarray) -> float:
    hist = confusion_matrix(target, prediction, 2)
    return segmentation_scores(hist)["mean_iu"] if hist.sum() else 0.0


def plot_examples(args: argparse.Namespace, test: Sequence[VocSample], targets: Sequence[np.ndarray]) -> Path | None:
    """Fig. 6: image, true labels and the predictions of the three models for ``--examples`` test images."""
    folder = args.out / "predictions"
    paths = {key: folder / f"r0_{key}.npz" for key in ("unseg_logistic", "unseg_sigmoid", "complete_logistic")}
    if not all(p.is_file() for p in paths.values()):
        return None
    preds = {key: _load_predictions(p) for key, p in paths.items()}
    gain = [_image_mean_iu(t, s) - _image_mean_iu(t, lg)
            for t, s, lg in zip(targets, preds["unseg_sigmoid"], preds["unseg_logistic"])]
    chosen = list(np.argsort(gain)[::-1][: max(1, args.examples)])
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
    fig.suptitle(f"Fig. 6: example predictions (white = foreground, grey = void) — {mode_label(args)}", fontsize="small")
    fig.tight_layout()
    return save_figure(fig, args.out / "fig6.png", dpi=100)
