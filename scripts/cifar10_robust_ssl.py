#!/usr/bin/env python
"""Reproduce Table 1 of Cui et al., "Semi-supervised Learning using Robust Loss" (CIFAR-10).

A ResNet-18 teacher is trained on p = 10 % of the training images with their labels (lower
bound); it pseudo-labels the other 90 %; students are trained on both, with CE on the true
labels and CE, β-CE (BCE), GCE or SCE on the pseudo-labels; the upper bound uses every true
label.  As in the paper, nothing is held out by default: 5k labelled and 45k pseudo-labelled
images, and the upper bound trains on all 50k.  Only --grid holds out a validation share
(--val-fraction, 10 %) for choosing q, β and (α, γ).  Test accuracy is reported as mean ± std
over --seeds, beside the paper.

Protocol choices (each is named in the table notes):

* --select last|best: score the last epoch (default, as the paper) or the epoch of best
  validation accuracy (needs the validation split of --grid);
* --mode union|robust_all|per_source: how true-label and pseudo-label terms are weighted
  (default union: one mean over the shuffled batch; robust_all: the robust loss on every
  sample; per_source: 1:1 batches, the two per-source means added);
* --precision fp32|bf16|fp16: fp32 (default, as the seed) or autocast on CUDA.

Real data (the official python version, nothing is downloaded):

    python scripts/cifar10_robust_ssl.py --data /path/to/cifar-10-batches-py --out results/cifar10

    # paper settings are the defaults: 150 epochs, SGD lr 0.1 -> 0.01 at epoch 100,
    # momentum 0.9, weight decay 1e-4, seeds 0 1 2; add --grid to select the loss
    # hyper-parameters on the validation split instead of using the paper's values.

Smoke run on CPU in a few minutes (2 epochs, 2000 train / 500 test images, ResNet-18 at
1/4 width), on real data or on synthetic images written in the CIFAR-10 format:

    python scripts/cifar10_robust_ssl.py --quick --data /path/to/cifar-10-batches-py --out results/cifar10-quick
    python scripts/cifar10_robust_ssl.py --quick --synthetic --out results/cifar10-quick

Several GPUs: the same command under torchrun trains every network data parallel (NCCL on
CUDA, gloo on CPU); --batch-size is per rank (the paper's batch on 4 GPUs is a quarter of it),
rank 0 writes every file:

    torchrun --nproc-per-node 4 scripts/cifar10_robust_ssl.py --data /path/to/cifar-10-batches-py \
        --out results/cifar10 --batch-size 32

Outputs in --out: table1.{md,csv,json,png} and runs.json (finished runs).  Re-running
with the same --out skips finished runs and resumes interrupted ones from checkpoints/.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robustlabel.data.cifar import ImageSet, load_cifar10, write_synthetic_cifar10
from robustlabel.data.nifti import write_bytes_atomic
from robustlabel.engine.config import PRECISIONS, SELECTIONS, SOURCE_MODES
from robustlabel.engine.distributed import (
    barrier,
    broadcast_object,
    current,
    rank_zero_store,
    run_as_rank,
)
from robustlabel.engine.classify import (
    ClassifierConfig,
    DataSplit,
    cifar_resnet18,
    fit_and_evaluate,
    make_training_set,
    pseudo_label,
    source_aware_loss,
    split_indices,
)
from robustlabel.machine import resolve_device
from robustlabel.losses import PAPER_HPARAMS
from robustlabel.reporting import (
    Measurement,
    ResultsStore,
    environment_info,
    parse_float_pair,
    plot_ours_vs_paper,
    prepare_out_dir,
    write_report,
)


@dataclass(frozen=True)
class Row:
    """One row of Table 1: how its model is trained and the paper's test accuracy (%)."""

    name: str
    kind: str  # "teacher" (labelled part only) | "student" (+ pseudo-labels) | "upper" (all true labels)
    key: str  # run key; for students also the get_loss name of the pseudo-label loss
    paper: float


ROWS = (
    Row("Lower bound", "teacher", "lower", 66.17),
    Row("CE", "student", "ce", 69.62),
    Row("BCE", "student", "bce", 79.53),
    Row("GCE", "student", "gce", 77.68),
    Row("SCE", "student", "sce", 78.74),
    Row("Upper bound", "upper", "upper", 89.31),
)
TEACHER = ROWS[0]
TEST_COLUMN = "Test accuracy"
VAL_COLUMN = "Val accuracy"

#: --quick defaults (explicit options still win)
QUICK = {"epochs": 2, "train_subset": 2000, "test_subset": 500, "width": 0.25, "batch_size": 64, "seeds": [0, 1],
         "threads": 1}
FULL = {"epochs": 150, "train_subset": None, "test_subset": None, "width": 1.0, "batch_size": 128, "seeds": [0, 1, 2],
        "threads": None}


def build_parser() -> argparse.ArgumentParser:
    paper = PAPER_HPARAMS["cifar10"]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("data")
    src.add_argument("--data", type=Path, help="cifar-10-batches-py folder (or its parent)")
    src.add_argument("--synthetic", action="store_true",
                     help="write and use synthetic colour-blob images in the CIFAR-10 format under OUT/synthetic-data")
    src.add_argument("--train-subset", type=int, help="use this many training images (fixed random subset)")
    src.add_argument("--test-subset", type=int, help="use this many test images (fixed random subset)")
    src.add_argument("--labelled-fraction", type=float, default=0.1, help="p: labelled share of the non-validation training set")
    src.add_argument("--val-fraction", type=float, default=0.1,
                     help="validation share of the training set held out with --grid (without --grid nothing is held "
                          "out, as in the paper)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seeds", type=int, nargs="+", help="one repeat per seed (split and initialisation); default 0 1 2")
    p.add_argument("--quick", action="store_true", help="smoke-test settings: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    p.add_argument("--overwrite", action="store_true", help="discard earlier results and checkpoints in --out")
    tr = p.add_argument_group("training")
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--lr", type=float, default=0.1)
    tr.add_argument("--lr-milestones", type=int, nargs="*", help="epochs where lr *= lr-gamma (default: 2/3 of --epochs, 100 of 150)")
    tr.add_argument("--lr-gamma", type=float, default=0.1)
    tr.add_argument("--momentum", type=float, default=0.9)
    tr.add_argument("--weight-decay", type=float, default=1e-4)
    tr.add_argument("--width", type=float, help="ResNet-18 width factor (1.0 = the paper's network)")
    tr.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    tr.add_argument("--select", choices=SELECTIONS, default="last",
                    help="score the last epoch (default, the paper) or the epoch of best validation accuracy "
                         "(needs --grid's validation split)")
    tr.add_argument("--mode", choices=SOURCE_MODES, default=SOURCE_MODES[0],
                    help="weighting of true-label and pseudo-label terms: union (default), robust_all, per_source")
    tr.add_argument("--precision", choices=PRECISIONS, default="fp32",
                    help="fp32 (default, the paper) or bf16 / fp16 autocast on CUDA (CPU always runs fp32)")
    tr.add_argument("--workers", type=int, help="data-loader workers (default 0 on CPU, up to 8 on CUDA)")
    tr.add_argument("--threads", type=int,
                    help="torch intra-op CPU threads (default: torch's; --quick: 1, which is several times "
                         "faster than 2 on a busy 2-core machine)")
    hp = p.add_argument_group("robust-loss hyper-parameters (defaults: the paper's CIFAR-10 values)")
    hp.add_argument("--beta", type=float, default=paper["bce"]["beta"], help="β of β-CE (BCE)")
    hp.add_argument("--q", type=float, default=paper["gce"]["q"], help="q of GCE")
    hp.add_argument("--sce", type=parse_float_pair, default=(paper["sce"]["alpha"], paper["sce"]["gamma"]),
                    metavar="ALPHA,GAMMA", help="α, γ of SCE")
    hp.add_argument("--grid", action="store_true", help="pick each loss' hyper-parameters by validation accuracy from the grids below")
    hp.add_argument("--grid-beta", type=float, nargs="+", default=[1.0, 2.0, 5.0, 10.0])
    hp.add_argument("--grid-q", type=float, nargs="+", default=[0.5, 0.7, 0.9])
    hp.add_argument("--grid-sce", type=parse_float_pair, nargs="+", default=[(0.1, 0.01), (0.1, 1.0), (0.01, 1.0)], metavar="ALPHA,GAMMA")
    return p


def resolve_settings(args: argparse.Namespace) -> argparse.Namespace:
    """Fill unset options from the --quick or full defaults and check the data source."""
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.lr_milestones is None:
        args.lr_milestones = [max(1, round(args.epochs * 2 / 3))]
    if args.workers is None:
        on_cuda = resolve_device(args.device).type == "cuda"
        args.workers = min(8, max(1, (os.cpu_count() or 2) - 1)) if on_cuda else 0
    if (args.data is None) == (not args.synthetic):
        raise SystemExit("error: give exactly one of --data PATH (real CIFAR-10) or --synthetic")
    if args.select == "best" and not args.grid:
        raise SystemExit("error: --select best needs a validation split, which only --grid holds out")
    return args


def held_out_fraction(args: argparse.Namespace) -> float:
    """The validation share actually held out: ``--val-fraction`` with ``--grid``, else 0 (the paper)."""
    return float(args.val_fraction) if args.grid else 0.0


def candidates(args: argparse.Namespace, loss: str) -> list[dict[str, float]]:
    """The hyper-parameter settings tried for one pseudo-label loss (one unless --grid)."""
    if loss == "ce":
        return [{}]
    if loss == "bce":
        return [{"beta": b} for b in (args.grid_beta if args.grid else [args.beta])]
    if loss == "gce":
        return [{"q": q} for q in (args.grid_q if args.grid else [args.q])]
    if loss == "sce":
        return [{"alpha": a, "gamma": g} for a, g in (args.grid_sce if args.grid else [args.sce])]
    raise ValueError(f"no hyper-parameters known for loss {loss!r}")


def hparam_tag(params: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in params.items()) or "default"


def run_keys(row: Row, seed: int, args: argparse.Namespace) -> list[tuple[str, dict[str, float]]]:
    """``(key in runs.json, loss hyper-parameters)`` of every run behind one row and seed."""
    if row.kind == "student":
        return [(f"seed{seed}/{row.key}/{hparam_tag(p)}", p) for p in candidates(args, row.key)]
    return [(f"seed{seed}/{row.key}", {})]


def subset(data: ImageSet, n: int | None) -> ImageSet:
    """A fixed (seed-independent) random subset of ``n`` items, or everything."""
    if n is None or n >= len(data):
        return data
    if n < 1:
        raise SystemExit(f"error: subset size must be >= 1, got {n}")
    return data.subset(np.sort(np.random.default_rng(12345).permutation(len(data))[:n]))


class Experiment:
    """Runs (or skips, or resumes) every row of Table 1 for one seed and records it."""

    def __init__(self, args: argparse.Namespace, train: ImageSet, test: ImageSet, store: ResultsStore) -> None:
        self.args, self.train, self.test, self.store = args, train, test, store
        self.config = ClassifierConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
            weight_decay=args.weight_decay, lr_milestones=tuple(args.lr_milestones), lr_gamma=args.lr_gamma,
            num_workers=args.workers, device=args.device, precision=args.precision,
        )
        self.checkpoints = args.out / "checkpoints"

    def build_network(self):
        return cifar_resnet18(num_classes=len(self.train.class_names), widen_factor=self.args.width)

    def _fit(self, key: str, data, loss, seed: int, split: DataSplit, extra: dict[str, Any]):
        eval_sets = {"test": (self.test.images, self.test.labels)}
        if len(split.val):
            eval_sets["val"] = (self.train.images[split.val], self.train.labels[split.val])
        network, record = fit_and_evaluate(self.build_network, data, loss, self.config, eval_sets, seed=seed,
                                           checkpoint_dir=self.checkpoints / key, description=key,
                                           select=self.args.select)
        record.update(seed=seed, **extra)
        return network, record

    def pseudo_labels(self, seed: int, split: DataSplit) -> np.ndarray:
        """Train (or load) the teacher = lower-bound row and return its pseudo-labels of the unlabelled part."""
        key = run_keys(TEACHER, seed, self.args)[0][0]
        path = self.checkpoints / f"seed{seed}" / "pseudo_labels.npz"
        if key in self.store and path.exists():
            return np.load(path)["labels"]
        data = make_training_set(self.train.images, self.train.labels, split.labelled)
        teacher, record = self._fit(key, data, source_aware_loss("ce"), seed, split, {"row": TEACHER.name, "hparams": {}})
        labels, confidence = pseudo_label(teacher, self.train.images[split.unlabelled], self.config.eval_batch_size,
                                          self.config.torch_device, self.config.autocast_dtype)
        buffer = io.BytesIO()
        np.savez(buffer, labels=labels, confidence=confidence, unlabelled=split.unlabelled)
        if current().is_main:  # every rank holds the same teacher and labels; rank 0 writes them
            write_bytes_atomic(path, buffer.getvalue())
        record["pseudo_label_acc"] = float(100.0 * np.mean(labels == self.train.labels[split.unlabelled]))
        self.store.put(key, record)
        return labels

    def run_seed(self, seed: int) -> None:
        split = split_indices(len(self.train), self.args.labelled_fraction, held_out_fraction(self.args), seed)
        pseudo = self.pseudo_labels(seed, split)
        images, labels = self.train.images, self.train.labels
        training_sets = {
            "student": make_training_set(images, labels, split.labelled, split.unlabelled, pseudo),
            "upper": make_training_set(images, labels, split.labelled, split.unlabelled),
        }
        for row in ROWS:
            if row.kind == "teacher":
                continue
            for key, params in run_keys(row, seed, self.args):
                if key not in self.store:
                    loss = source_aware_loss(row.key if row.kind == "student" else "ce", mode=self.args.mode, **params)
                    _, record = self._fit(key, training_sets[row.kind], loss, seed, split,
                                          {"row": row.name, "hparams": params})
                    self.store.put(key, record)


def selected_runs(store: ResultsStore, args: argparse.Namespace, seed: int) -> dict[str, dict[str, Any]]:
    """Row name -> the finished run reported for ``seed`` (with --grid: the best validation accuracy)."""
    chosen: dict[str, dict[str, Any]] = {}
    for row in ROWS:
        runs = [store.get(key) for key, _ in run_keys(row, seed, args) if key in store]
        if runs:
            chosen[row.name] = max(runs, key=lambda r: r.get("val_acc", r["test_acc"]))
    return chosen


def protocol_note(args: argparse.Namespace) -> str:
    """The table-notes line naming every protocol choice (``--select``, ``--mode``, ``--precision``,
    the validation split)."""
    modes = {"union": "union (one mean over the shuffled batch of true- and pseudo-labelled images)",
             "robust_all": "robust_all (the robust loss on the true-labelled images too)",
             "per_source": "per_source (1:1 batches, the two per-source means added)"}
    device = resolve_device(args.device)
    ran = "fp32" if device.type != "cuda" or args.precision == "fp32" else args.precision
    held = (f"{held_out_fraction(args):.0%} of the training set held out for --grid" if args.grid
            else "no validation split (as the paper; only --grid holds one out)")
    scored = "the last epoch (as the paper)" if args.select == "last" else "the epoch of best validation accuracy"
    return (f"**Protocol:** --select {args.select}: scored = {scored}; --mode {modes[args.mode]}; --precision "
            f"{args.precision} (ran in {ran} on {device.type}); {held}")


def report(args: argparse.Namespace, store: ResultsStore, sizes: dict[str, int], data_note: str) -> Path:
    measurements, notes, chosen_all = [], [], {}
    for seed in args.seeds:
        chosen = selected_runs(store, args, seed)
        chosen_all[seed] = chosen
        for name, record in chosen.items():
            measurements.append(Measurement(name, TEST_COLUMN, record["test_acc"], seed))
            if "val_acc" in record:
                measurements.append(Measurement(name, VAL_COLUMN, record["val_acc"], seed))
    pseudo = [chosen_all[s]["Lower bound"]["pseudo_label_acc"] for s in args.seeds if "Lower bound" in chosen_all[s]]
    notes.append(f"**Data:** {data_note}; train {sizes['train']} (labelled {sizes['labelled']}, unlabelled "
                 f"{sizes['unlabelled']}, validation {sizes['val']}), test {sizes['test']}")
    notes.append(f"**Model / schedule:** ResNet-18 (CIFAR stem, MONAI, width x{args.width:g}), {args.epochs} epochs, "
                 f"batch {args.batch_size}, SGD lr {args.lr:g} x{args.lr_gamma:g} at {args.lr_milestones}, momentum "
                 f"{args.momentum:g}, weight decay {args.weight_decay:g}, crop(pad 4) + flip")
    notes.append(protocol_note(args))
    if pseudo:
        notes.append(f"**Teacher pseudo-label accuracy on the unlabelled part:** {np.mean(pseudo):.2f} % "
                     f"(so {100 - np.mean(pseudo):.2f} % of the pseudo-labels are wrong)")
    for row in ROWS:
        if row.kind == "student" and row.key != "ce":
            picked = {s: hparam_tag(chosen_all[s][row.name]["hparams"]) for s in args.seeds if row.name in chosen_all[s]}
            how = "chosen by validation accuracy" if args.grid else "fixed"
            notes.append(f"**{row.name} hyper-parameters ({how}):** " + "; ".join(f"seed {s}: {t}" for s, t in picked.items()))
    files = write_report(
        args.out, "table1",
        title="Cui et al. Table 1: CIFAR-10 test accuracy with 10 % labels (teacher–student, robust loss on pseudo-labels)",
        measurements=measurements,
        paper={(row.name, TEST_COLUMN): row.paper for row in ROWS},
        rows=[row.name for row in ROWS], columns=[TEST_COLUMN, VAL_COLUMN],
        quick=args.quick, environment=environment_info(args.device),
        unit="%", paper_source="Cui et al., Table 1 (single numbers, no std given)", notes=notes,
        extra={"settings": vars(args),
               "runs": store.runs},
    )
    plot_ours_vs_paper(args.out / "table1.png", [c for c in files.cells if c.column == TEST_COLUMN],
                       ylabel="test accuracy (%)",
                       suptitle=f"{'SYNTHETIC data' if args.synthetic else 'CIFAR-10'}, "
                                f"{100 * args.labelled_fraction:g} % labels{' (QUICK)' if args.quick else ''}")
    return files.markdown


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_as_rank(run, resolve_settings(args), args.device)


def run(args: argparse.Namespace, main_rank: bool = True) -> int:
    """Every rank of a job runs the experiment (data-parallel training, see
    :func:`robustlabel.engine.classify.train_classifier`); rank 0 prepares the output folder and
    the synthetic data and writes every file."""
    if main_rank:
        prepare_out_dir(args.out, overwrite=args.overwrite, threads=args.threads, remove=["checkpoints", "runs.json"])
    barrier()
    if not main_rank:
        prepare_out_dir(args.out, overwrite=False, threads=args.threads)
    if args.synthetic:
        synthetic = write_synthetic_cifar10(args.out / "synthetic-data", n_train=2500, n_test=500,
                                            seed=0) if main_rank else None
        args.data = broadcast_object(synthetic)
        data_note = f"SYNTHETIC colour-blob images in the CIFAR-10 format ({args.data}), not CIFAR-10"
    else:
        data_note = f"CIFAR-10 from {args.data}"
    train, test = load_cifar10(args.data)
    train, test = subset(train, args.train_subset), subset(test, args.test_subset)
    split = split_indices(len(train), args.labelled_fraction, held_out_fraction(args), 0)
    sizes = {"train": len(train), "labelled": len(split.labelled), "unlabelled": len(split.unlabelled),
             "val": len(split.val), "test": len(test)}

    fingerprint = {
        "data": "synthetic" if args.synthetic else "cifar10", "n_train": len(train), "n_test": len(test),
        **{k: getattr(args, k) for k in ("labelled_fraction", "epochs", "batch_size", "lr",
                                         "lr_milestones", "lr_gamma", "momentum", "weight_decay", "width",
                                         "select", "mode", "precision")},
        "val_fraction": held_out_fraction(args),
    }
    store = rank_zero_store(args.out / "runs.json", fingerprint)
    experiment = Experiment(args, train, test, store)
    for seed in args.seeds:
        experiment.run_seed(seed)
    barrier()
    if not main_rank:
        return 0
    markdown = report(args, store, sizes, data_note)
    print(markdown.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
