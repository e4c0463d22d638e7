#!/usr/bin/env python
"""Reproduce Table 2 and Fig. 3 of Cui et al., "Semi-supervised Learning using Robust Loss" (BraTS).

Protocol (Sec. 3.2).  The labelled cases are split once into train / validation / test
(BraTS 2018 training, 285 cases: the paper's 200 / 28 / 57; see "Split" below).  For each
labelled share p of the training split and each repeat r (a different labelled subset):

* Lower bound: a TransBTS teacher trained with CE on the p % labelled training cases;
* the teacher pseudo-labels the other (1 - p) % of the training split, whose true labels
  stay hidden;
* CE / BCE / GCE / SCE: students trained from scratch with CE on the true labels and CE,
  beta-CE (beta = 0.001), GCE (q = 0.7) or SCE (alpha = 0.01, gamma = 1) on the pseudo-labels;
* Upper bound (once per repeat): CE on 100 % of the training split with true labels.

Every model is scored on the held-out test split with its last epoch (--select last, the
default, as the seed paper, which used validation only to choose hyper-parameters) or with the
epoch of best mean WT/TC/ET validation Dice (--select best): Dice of WT = {1, 2, 4}, TC = {1, 4} and ET = {4} (the
paper's text says "ET (label 1)"; label 4 is the BraTS enhancing tumour).  The table gives
the mean (sample std) over repeats of each run's mean test Dice, beside the paper's Table 2.
The teacher of a (p, r) is trained once and serves all four students.  All training,
pseudo-labelling and evaluation run through robustlabel.engine.

Protocol choices (each is named in the table notes):

* --select last|best: the checkpoint that pseudo-labels and is scored (default last);
* --mode union|robust_all|per_source: how clinician and pseudo-label terms are weighted
  (default union: one mean over every voxel of the shuffled batch; robust_all: the robust loss
  on every sample, the seed's train_cv.py; per_source: 1:1 batches and the two per-source
  means added, the seed's train_2losses.py);
* --precision fp32|bf16|fp16: fp32 (default, as the seed) or autocast on CUDA;
* --init scratch|teacher: students start from random weights (default, the paper) or from
  their teacher's;
* --lr: Adam's initial learning rate (default 2e-4, the paper's).

Split: the case ids, sorted, are permuted with numpy.random.default_rng(--split-seed)
(robustlabel.engine.split_cases) with validation share 28/285 (about 9.8 %) and test share
57/285 (20 %), each rounded half up and at least one case: exactly 200 / 28 / 57 for the 285
BraTS 2018 training cases, the same proportions for any other count.  Labelled subset of
repeat r: the first floor(p*N + 1/2) training cases of a permutation drawn with seed r
(robustlabel.data.studies.select_labeled), so for one repeat the 30 % subset lies inside the
50 % one, which lies inside the 70 % one.

Real data (BraTS 2018 HGG/LGG, 2019-2021, 2023 or MSD Task01: anything that
robustlabel.data.brats.find_brats_cases reads).  The cases are imported once into OUT/studies
(gzipped 4-D float32 NIfTI; a 240x240x155 BraTS case is 143 MB before compression); cases
without a label take no part:

    python scripts/brats_robust_ssl.py --data /data/MICCAI_BraTS_2018_Data_Training \\
        --out results/brats_table2 --epochs 1000

    # The paper's settings are the defaults: full TransBTS, 128^3 crops, Adam (lr 2e-4,
    # poly decay), batch 4, 1000 epochs, p = 30 50 70 %, 3 repeats, validation every 10
    # epochs.  One run is one TransBTS training, so the full table is 3 x (3 x 5 + 1) = 48
    # runs of 1000 epochs (a GPU job); --fractions / --repeats select a part of it.

Several GPUs or nodes (torch.distributed, NCCL on CUDA, gloo on CPU): start the same command
under torchrun.  Every training is data parallel and every pool is sharded over the ranks;
rank 0 imports the data, scores the test split and writes every report.  --batch-size is per
rank, so the paper's batch 4 on 4 GPUs is --batch-size 1 (the global batch is N times it):

    torchrun --nproc-per-node 4 scripts/brats_robust_ssl.py --data /data/MICCAI_BraTS_2018_Data_Training \
        --out results/brats_table2 --batch-size 1

Smoke run on CPU (synthetic BraTS-like phantoms written into OUT, tiny TransBTS, 2 epochs;
the numbers are NOT comparable to the paper):

    python scripts/brats_robust_ssl.py --quick --out results/brats_table2_quick

Outputs in --out: table2.{md,csv,json}; fig3.png (mean test Dice vs p for each method, one
panel per region WT/TC/ET); fig3_paper.png (the same plot of the paper's Table 2); split.json;
runs.json (every finished (row, p, repeat) run); runs/ (engine run folders: checkpoints,
history, TensorBoard logs, pseudo-labels).  Re-running with the same --out skips the finished
runs and resumes interrupted training from the engine's last.pt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from robustlabel.data.labels import REGIONS
from robustlabel.data.studies import FINAL, PSEUDO, import_brats, read_manifest, select_labeled, studies_datalist
from robustlabel.data.synthetic import write_synthetic_brats
from robustlabel.engine import PseudoLabeller, StudiesSink, TrainConfig, evaluate_checkpoint, split_cases, train
from robustlabel.engine.checkpoint import BEST_NAME, LAST_NAME
from robustlabel.engine.distributed import (
    barrier,
    broadcast_object,
    current,
    rank_zero_store,
    run_as_rank,
)
from robustlabel.engine.pool_shards import label_pool
from robustlabel.engine.config import (
    INITS,
    PRECISIONS,
    SELECTIONS,
    SOURCE_MODES,
    precision_settings,
    precision_used,
    resolve_device,
)
from robustlabel.engine.pseudo_label import student_items
from robustlabel.engine.rounds import loss_label
from robustlabel.metrics.brats import BRATS_WORST_HD95
from robustlabel.engine.trainer import RESUMABLE_CHANGES
from robustlabel.losses import PAPER_HPARAMS
from robustlabel.networks import TINY_TRANSBTS
from robustlabel.reporting import (
    Measurement,
    PaperValue,
    PlotPanel,
    ResultsStore,
    atomic_write_json,
    environment_info,
    plot_panels,
    prepare_out_dir,
    write_report,
)

# --------------------------------------------------------------------------- the paper
#: BraTS 2018 training set and the paper's split of it (Sec. 3.2)
PAPER_N_CASES = 285
PAPER_SPLIT: dict[str, int] = {"train": 200, "val": 28, "test": 57}
VAL_FRACTION = PAPER_SPLIT["val"] / PAPER_N_CASES
TEST_FRACTION = PAPER_SPLIT["test"] / PAPER_N_CASES
#: labelled shares p (%) of Table 2
PAPER_FRACTIONS: tuple[int, ...] = (30, 50, 70)


@dataclass(frozen=True)
class Row:
    """One row of Table 2: ``kind`` is ``"teacher"`` (lower bound), ``"student"`` or ``"upper"``;
    a student uses ``pseudo_loss`` with the paper's BraTS hyper-parameters on pseudo-labels."""

    name: str
    key: str
    kind: str
    pseudo_loss: str | None = None

    @property
    def pseudo_params(self) -> dict[str, float]:
        """The paper's BraTS hyper-parameters of ``pseudo_loss`` (``{}`` for CE / no student)."""
        return dict(PAPER_HPARAMS["brats"].get(self.pseudo_loss or "", {}))


LOWER = Row("Lower bound", "lower", "teacher")
STUDENTS: tuple[Row, ...] = tuple(
    Row(name, loss, "student", loss) for name, loss in (("CE", "ce"), ("BCE", "bce"), ("GCE", "gce"), ("SCE", "sce"))
)
UPPER = Row("Upper bound", "upper", "upper")
ROWS: tuple[Row, ...] = (LOWER, *STUDENTS, UPPER)

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
#: --quick defaults and full (paper) defaults; explicit options win
QUICK: dict[str, Any] = {"epochs": 2, "batch_size": 2, "roi_size": [32], "repeats": 2, "val_interval": 1,
                         "cases": 12, "shape": [48]}
FULL: dict[str, Any] = {"epochs": 1000, "batch_size": 4, "roi_size": [128], "repeats": 3, "val_interval": 10}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a BraTS / MSD Task01 folder (anything find_brats_cases reads)")
    source.add_argument("--quick", action="store_true",
                        help="smoke test on synthetic phantoms written into OUT: "
                             + ", ".join(f"{k}={v}" for k, v in QUICK.items()) + ", tiny TransBTS")
    p.add_argument("--out", type=Path, required=True, help="output folder (results, run folders, imported studies)")
    p.add_argument("--fractions", type=int, nargs="+", default=list(PAPER_FRACTIONS), metavar="P",
                   help="labelled shares p of the training split, in %% (default 30 50 70)")
    p.add_argument("--repeats", type=int,
                   help="repeats with different labelled subsets, seeds 0..R-1 (default 3; quick 2)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split (default 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete OUT/runs.json and OUT/runs/ first (with --quick also the synthetic data and "
                        "its studies)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    tr = p.add_argument_group("training (engine TrainConfig)")
    tr.add_argument("--epochs", type=int, help="epochs per training run (default 1000; quick 2)")
    tr.add_argument("--batch-size", type=int, help="crops per step (default 4; quick 2)")
    tr.add_argument("--roi-size", type=int, nargs="+", metavar="S",
                    help="training crop = sliding window = TransBTS img_size, 1 or 3 multiples of 8 "
                         "(default 128; quick 32)")
    tr.add_argument("--val-interval", type=int, help="validate every N epochs (default 10; quick 1)")
    tr.add_argument("--lr", type=float, default=TrainConfig.lr, help="Adam's initial learning rate (default 2e-4)")
    tr.add_argument("--select", choices=SELECTIONS, default="last",
                    help="checkpoint that pseudo-labels and is scored: last epoch (default, the paper) or best "
                         "validation Dice")
    tr.add_argument("--mode", choices=SOURCE_MODES, default=SOURCE_MODES[0],
                    help="weighting of clinician and pseudo-label terms: union (default), robust_all (train_cv.py), "
                         "per_source (1:1 batches, train_2losses.py)")
    tr.add_argument("--precision", choices=PRECISIONS, default="fp32",
                    help="fp32 (default, the paper) or bf16 / fp16 autocast on CUDA (CPU always runs fp32)")
    tr.add_argument("--init", choices=INITS, default="scratch",
                    help="student initialisation: scratch (default, the paper) or the teacher's weights")
    tr.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    tr.add_argument("--num-workers", type=int, help="data-loader workers (default 0 on CPU, up to 8 on CUDA)")
    tr.add_argument("--threads", type=int,
                    help="torch intra-op CPU threads (default: torch's choice; quick on CPU: 1, as the tiny "
                         "network gains little from more and a busy shared CPU makes them many times slower)")
    qk = p.add_argument_group("synthetic data (--quick only)")
    qk.add_argument("--cases", type=int, help=f"synthetic cases (default {QUICK['cases']})")
    qk.add_argument("--shape", type=int, nargs="+", metavar="S",
                    help=f"synthetic volume size, 1 or 3 ints (default {QUICK['shape']})")
    return p


def _cube(values: Sequence[int], name: str) -> tuple[int, int, int]:
    if len(values) not in (1, 3):
        raise SystemExit(f"error: {name} takes 1 or 3 ints, got {list(values)}")
    return tuple(int(v) for v in (list(values) * 3 if len(values) == 1 else values))  # type: ignore[return-value]


def resolve_settings(args: argparse.Namespace) -> argparse.Namespace:
    """Fill unset options from the quick or full defaults and check them (``SystemExit`` naming the option)."""
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if not args.quick and (args.cases is not None or args.shape is not None):
        raise SystemExit("error: --cases / --shape only apply to --quick (synthetic data)")
    args.roi_size = _cube(args.roi_size, "--roi-size")
    if any(s < 8 or s % 8 for s in args.roi_size):
        raise SystemExit(f"error: --roi-size must be positive multiples of 8 (TransBTS downsamples x8), "
                         f"got {args.roi_size}")
    if args.quick:
        args.shape = _cube(args.shape, "--shape")
        if args.cases < 4:
            raise SystemExit(f"error: --cases must be >= 4 (train, labelled + unlabelled, val, test), got {args.cases}")
    for name in ("epochs", "batch_size", "repeats", "val_interval"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    bad = [f for f in args.fractions if not 0 < f < 100]
    if bad:
        raise SystemExit(f"error: --fractions must lie strictly between 0 and 100 (%), got {bad}")
    args.fractions = sorted(set(args.fractions))
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"error: --threads must be >= 1, got {args.threads}")
    if args.data is not None and not args.data.is_dir():
        raise SystemExit(f"error: --data {args.data} is not a folder")
    try:
        args.torch_device = resolve_device(args.device)
    except ValueError as exc:
        raise SystemExit(f"error: --device: {exc}") from exc
    if args.num_workers is None:
        args.num_workers = 0 if args.torch_device.type == "cpu" else min(8, max(1, (os.cpu_count() or 2) - 1))
    if args.threads is None and args.quick and args.torch_device.type == "cpu":
        args.threads = 1
    return args


def base_train_config(args: argparse.Namespace) -> TrainConfig:
    """The engine recipe shared by every run (the loss on pseudo-labels and the seed vary)."""
    network = {**TINY_TRANSBTS} if args.quick else {}
    network["img_size"] = list(args.roi_size)
    return TrainConfig(
        network=network, roi_size=args.roi_size, batch_size=args.batch_size, epochs=args.epochs, lr=args.lr,
        val_interval=args.val_interval, num_workers=args.num_workers, device=str(args.torch_device), mode=args.mode,
        **precision_settings(args.precision),
    )


def results_fingerprint(args: argparse.Namespace, config: TrainConfig, cases: Sequence[str], data_note: str) -> dict:
    """Every setting that changes the numbers (a results file of other settings is refused)."""
    recipe = {k: v for k, v in config.to_dict().items()
              if k not in RESUMABLE_CHANGES | {"seed", "pseudo_loss", "pseudo_params"}}
    return {
        "data": data_note,
        "cases_sha256": hashlib.sha256("\n".join(sorted(cases)).encode()).hexdigest(),
        "n_cases": len(cases),
        "split_seed": args.split_seed,
        "train": recipe,
        "select": args.select,
        "init": args.init,
        "precision": precision_used(config.amp, config.amp_dtype, args.torch_device),
    }


# --------------------------------------------------------------------------- data
SYNTHETIC_DIR = "synthetic-brats"
STUDIES_DIR = "studies"
#: describes the synthetic phantoms in SYNTHETIC_DIR (so a changed --cases / --shape is noticed)
SYNTHETIC_SETTINGS = "settings.json"


def prepare_studies(args: argparse.Namespace) -> tuple[Path, str]:
    """Import ``--data`` (or freshly written synthetic phantoms) into ``OUT/studies`` once.

    Every labelled case gets a ``final`` label there; which of them the experiment treats as
    unlabelled is decided per (p, repeat), without touching the studies folder.  Returns the
    studies folder and a description of the data.

    Raises:
        SystemExit: ``OUT/studies`` holds cases of another source or other synthetic settings.
    """
    studies = args.out / STUDIES_DIR
    if args.quick:
        source = (args.out / SYNTHETIC_DIR).resolve()
        settings = {"cases": args.cases, "shape": list(args.shape), "seed": 0}
        note = (f"SYNTHETIC BraTS-like phantoms ({args.cases} cases of {'x'.join(map(str, args.shape))} voxels, "
                "robustlabel.data.synthetic, seed 0), not BraTS")
    else:
        source, settings = args.data.resolve(), None
        note = str(source)
    try:
        manifest = read_manifest(studies)
    except FileNotFoundError:
        manifest = {}
    if manifest:
        stored = read_json(source / SYNTHETIC_SETTINGS) if settings is not None else None
        if manifest.get("source") != str(source) or stored != settings:
            raise SystemExit(
                f"error: {studies} was imported from {manifest.get('source')}"
                + (f" with synthetic settings {stored}" if settings is not None else "")
                + f", not from {source}" + (f" with {settings}" if settings is not None else "")
                + "; use another --out" + (" or --overwrite" if settings is not None else "")
            )
        return studies, note
    if settings is not None:
        write_synthetic_brats(source, cases=args.cases, shape=args.shape, seed=0, progress=not args.no_progress)
        atomic_write_json(source / SYNTHETIC_SETTINGS, settings)
    report = import_brats(source, studies, labeled_fraction=1.0, seed=0, progress=not args.no_progress,
                          labelled_only=True)
    print(report.format())
    return studies, note


def read_json(path: Path) -> Any:
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


class Table2Experiment:
    """Runs, skips or resumes every (row, p, repeat) of Table 2 and records it in ``store``."""

    def __init__(self, args: argparse.Namespace, studies: Path, split: dict[str, list[str]],
                 items: Mapping[str, dict[str, Any]], store: ResultsStore, config: TrainConfig) -> None:
        self.args, self.studies, self.split, self.items, self.store = args, studies, split, items, store
        self.config = config
        self.runs_dir = args.out / "runs"
        self.val_items = [items[c] for c in split["val"]]
        self.test_items = [items[c] for c in split["test"]]
        self.progress = not args.no_progress
        self.done = RunLog()
        self.bar = tqdm(total=len(args.fractions) * args.repeats * (1 + len(STUDENTS)) + args.repeats,
                        desc="table2", unit="run", disable=not (self.progress and current().is_main))

    # -- keys and folders
    @staticmethod
    def key(row: Row, repeat: int, percent: int | None = None) -> str:
        return f"r{repeat}/{row.key}" if percent is None else f"r{repeat}/p{percent}/{row.key}"

    def folder(self, repeat: int, percent: int | None = None) -> Path:
        return self.runs_dir / f"r{repeat}" / ("upper" if percent is None else f"p{percent}")

    def _skip(self, key: str) -> None:
        self.done.skipped.append(key)
        self.bar.update(1)

    # -- one engine run: train, then score the best checkpoint on the test split
    def _fit(self, key: str, row: Row, folder: Path, train_items: list[dict[str, Any]], config: TrainConfig,
             extra: Mapping[str, Any], pool_items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Train (resuming from ``folder/last.pt``), score ``best.pt`` on the test split (and, for
        a teacher, on the pool with its hidden true labels: the pseudo-labels' quality), record it."""
        start = time.perf_counter()
        self.bar.set_postfix_str(key)
        run = train(train_items, self.val_items, folder, config, resume=True, progress=self.progress)
        scored = run.checkpoint(self.args.select)
        rows, summary = self._evaluate(scored, self.test_items)
        record = {
            "row": row.name, **extra,
            "loss": loss_label(config, "student" if row.kind == "student" else "teacher"),
            "train_final": sum(i["source"] == FINAL for i in train_items),
            "train_pseudo": sum(i["source"] == PSEUDO for i in train_items),
            "checkpoint": str(scored), "select": self.args.select, "best_epoch": run.best_epoch,
            "val_mean_dice": run.best_metric,
            "epochs": len(run.history), "resumed_from_epoch": run.start_epoch,
            "train_time_s": round(sum(h.get("time_s", 0.0) for h in run.history), 2),
            "test_summary": summary, "test_cases": rows,
        }
        if pool_items is not None:
            record["pseudo_label_summary"] = self._evaluate(scored, pool_items)[1]
        record["wall_s"] = round(time.perf_counter() - start, 2)
        self.store.put(key, record)
        self.done.trained.append(key)
        self.bar.update(1)
        return record

    def _evaluate(self, checkpoint: Path, items: list[dict[str, Any]]) -> tuple[list[dict], dict]:
        """Scores of ``checkpoint`` on ``items``: computed by rank 0, sent to every rank."""
        scores = evaluate_checkpoint(checkpoint, items, device=str(self.args.torch_device),
                                     num_workers=self.args.num_workers, amp=self.config.amp,
                                     progress=self.progress) if current().is_main else None
        return broadcast_object(scores)

    # -- rows
    def run_upper(self, repeat: int) -> None:
        key = self.key(UPPER, repeat)
        if key in self.store:
            return self._skip(key)
        config = self.config.replace(seed=repeat, pseudo_loss="ce", pseudo_params={})
        self._fit(key, UPPER, self.folder(repeat), [self.items[c] for c in self.split["train"]], config,
                  {"p": None, "repeat": repeat})

    def _teacher(self, percent: int, repeat: int, labelled: list[str], pool: list[str]) -> Path:
        """The teacher (lower-bound) checkpoint of ``(percent, repeat)``: read back when recorded,
        else trained (or resumed) and recorded."""
        key, folder = self.key(LOWER, repeat, percent), self.folder(repeat, percent) / "teacher"
        selected = folder / (LAST_NAME if self.args.select == "last" else BEST_NAME)
        if key in self.store and selected.is_file():
            return selected
        config = self.config.replace(seed=repeat, pseudo_loss="ce", pseudo_params={})
        record = self._fit(key, LOWER, folder, [self.items[c] for c in labelled], config,
                           {"p": percent, "repeat": repeat, "labelled": labelled, "pool": pool},
                           pool_items=[self.items[c] for c in pool])
        return Path(record["checkpoint"])

    def _pseudo_items(self, teacher: Path, percent: int, repeat: int, labelled: list[str],
                      pool: list[str]) -> list[dict[str, Any]]:
        """Pseudo-label the pool with ``teacher`` (cases already labelled by it are skipped) and
        return the students' pseudo-label datalist items."""
        # every case of the studies folder has its true final label; the experiment hides those of
        # the pool, so only the labelled subset counts as clinician-labelled (protected)
        folder = self.folder(repeat, percent)
        hidden = frozenset(labelled)
        sink = StudiesSink(self.studies, label_dir=folder / "pseudo", confidence_dir=folder / "pseudo_confidence",
                           protected=hidden.__contains__)
        labeller = PseudoLabeller(teacher, device=str(self.args.torch_device), num_workers=self.args.num_workers,
                                  amp=self.config.amp, amp_dtype=self.config.amp_dtype)
        pool_items = [{"image": self.items[c]["image"], "case": c} for c in pool]
        results = label_pool(labeller, pool_items, sink, progress=self.progress)  # sharded over the ranks
        return student_items(pool_items, results, sink, strict=True)

    def run_fraction(self, percent: int, repeat: int) -> None:
        labelled, pool = labelled_subset(self.split["train"], percent, repeat)
        todo = [row for row in (LOWER, *STUDENTS) if self.key(row, repeat, percent) not in self.store]
        for row in (LOWER, *STUDENTS):
            if row not in todo:
                self._skip(self.key(row, repeat, percent))
        if not todo:
            return
        teacher = self._teacher(percent, repeat, labelled, pool)
        students = [row for row in todo if row.kind == "student"]
        if not students:
            return
        train_items = [self.items[c] for c in labelled] + self._pseudo_items(teacher, percent, repeat, labelled, pool)
        init = str(teacher) if self.args.init == "teacher" else None
        for row in students:
            config = self.config.replace(seed=repeat, pseudo_loss=row.pseudo_loss, pseudo_params=row.pseudo_params,
                                         init_checkpoint=init)
            self._fit(self.key(row, repeat, percent), row, self.folder(repeat, percent) / f"student_{row.key}",
                      train_items, config, {"p": percent, "repeat": repeat, "teacher": str(teacher)})

    def run(self) -> RunLog:
        try:
            for repeat in range(self.args.repeats):
                for percent in self.args.fractions:
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
        upper = store.get(Table2Experiment.key(UPPER, repeat))
        for percent in fractions:
            for row in ROWS:
                record = upper if row is UPPER else store.get(Table2Experiment.key(row, repeat, percent))
                if record is None:
                    continue
                for region in REGIONS:
                    value = record["test_summary"][f"dice_{region}"]["mean"]
                    out.append(Measurement(row.name, column(region, percent), value, repeat))
    return out


def pseudo_label_quality(store: ResultsStore, percent: int, repeats: int) -> dict[str, float] | None:
    """Mean over repeats of the teachers' Dice on the pool (their pseudo-labels against the hidden
    true labels) per region, or ``None`` until every repeat's teacher is recorded."""
    records = [store.get(Table2Experiment.key(LOWER, repeat, percent)) for repeat in range(repeats)]
    if not all(r is not None and "pseudo_label_summary" in r for r in records):
        return None
    return {region: sum(r["pseudo_label_summary"][f"dice_{region}"]["mean"] for r in records) / len(records)
            for region in REGIONS}


def report_notes(args: argparse.Namespace, store: ResultsStore, split: dict[str, list[str]], data_note: str,
                 config: TrainConfig) -> list[str]:
    """Markdown bullet points: data, split, subsets, model, schedule, pseudo-label quality."""
    n = sum(len(v) for v in split.values())
    how = ("the paper's split" if n == PAPER_N_CASES else
           f"proportional split: validation {VAL_FRACTION:.2%} and test {TEST_FRACTION:.0%} of the cases "
           "(28/285 and 57/285)")
    sizes = {p: labelled_subset(split["train"], p, 0) for p in args.fractions}
    hparams = PAPER_HPARAMS["brats"]
    network = f"tiny TransBTS {config.network}" if args.quick else "TransBTS"
    notes = [
        f"**Data:** {data_note}; {n} labelled cases",
        f"**Split (seed {args.split_seed}, {how}):** train {len(split['train'])} / validation {len(split['val'])} "
        f"/ test {len(split['test'])}; Dice on test",
        protocol_note(args, config),
        "**Labelled / pseudo-labelled training cases:** "
        + "; ".join(f"p = {p} %: {len(lab)} / {len(pool)}" for p, (lab, pool) in sizes.items())
        + " (a different labelled subset per repeat, seed = repeat)",
        f"**Model / schedule:** {network}, crop {'x'.join(map(str, args.roi_size))}, {config.epochs} epoch(s), "
        f"batch {config.batch_size}" + (f" per rank x {current().world_size} ranks" if current().world_size > 1 else "")
        + f", Adam lr {config.lr:g} with poly decay (power {config.poly_power:g}), weight "
        f"decay {config.weight_decay:g}, validation every {config.val_interval} epoch(s)",
        f"**Losses on pseudo-labels:** CE; BCE = beta-CE with beta = {hparams['bce']['beta']:g}; GCE with q = "
        f"{hparams['gce']['q']:g}; SCE with alpha = {hparams['sce']['alpha']:g}, gamma = {hparams['sce']['gamma']:g}; "
        "CE on the true labels in every row",
        "**Regions:** WT = {1, 2, 4}, TC = {1, 4}, ET = {4} (the paper's text says ET = label 1, a misprint)",
        "**Upper bound:** trained once per repeat on the whole training split; the same runs fill every p column",
        f"**CPU threads / data-loader workers (this invocation):** {torch.get_num_threads()} / {args.num_workers}",
    ]
    quality = {p: q for p in args.fractions if (q := pseudo_label_quality(store, p, args.repeats)) is not None}
    if quality:
        notes.append("**Pseudo-label Dice of the teachers on the pool (hidden true labels), mean over repeats:** "
                     + "; ".join(f"p = {p} %: " + ", ".join(f"{g} {d:.3f}" for g, d in q.items())
                                 for p, q in quality.items()))
    return notes


def protocol_note(args: argparse.Namespace, config: TrainConfig) -> str:
    """The table-notes line naming every protocol choice of the run (``--select``, ``--mode``,
    ``--precision``, ``--init``, ``--lr``)."""
    scored = ("the last epoch (as the paper; validation only reported)" if args.select == "last"
              else "the epoch of best mean validation Dice")
    modes = {"union": "union (one mean over every voxel of the shuffled batch)",
             "robust_all": "robust_all (the robust loss on clinician samples too, as the seed's train_cv.py)",
             "per_source": "per_source (1:1 clinician/pseudo batches, per-source means added, as the seed's "
                           "train_2losses.py)"}
    precision = precision_used(config.amp, config.amp_dtype, args.torch_device)
    return (f"**Protocol:** --select {args.select}: scored and pseudo-labelling checkpoint = {scored}; --mode "
            f"{modes[args.mode]}; --precision {args.precision} (ran in {precision} on {args.torch_device.type}); "
            f"--init {args.init} (students start from "
            f"{'random weights, as the paper' if args.init == 'scratch' else 'their teacher'}); --lr {config.lr:g}; "
            f"HD95 of a region missing from exactly one of prediction and truth = {BRATS_WORST_HD95} mm")


MeanStd = tuple[float | None, float | None]


def fig3_panels(by_cell: Mapping[tuple[str, str], MeanStd], fractions: Sequence[int]) -> list[PlotPanel]:
    """One panel per region: mean Dice (± std) vs p for every method, from ``{(row, column): (mean, std)}``."""
    panels = []
    for region in REGIONS:
        cells = {row.name: [by_cell.get((row.name, column(region, p)), (None, None)) for p in fractions]
                 for row in ROWS}
        cells = {name: values for name, values in cells.items() if any(mean is not None for mean, _ in values)}
        panels.append(PlotPanel(
            region, [f"{p}%" for p in fractions],
            series={name: [mean for mean, _ in values] for name, values in cells.items()},
            errors={name: [std for _, std in values] for name, values in cells.items()},
            ylabel="mean Dice (test)", xlabel="p (labelled share of the training split)",
        ))
    return panels


def write_outputs(args: argparse.Namespace, store: ResultsStore, split: dict[str, list[str]], data_note: str,
                  config: TrainConfig, done: RunLog) -> Path:
    """table2.{csv,json,md} and fig3.png / fig3_paper.png through robustlabel.reporting."""
    paper = paper_values(args.fractions)
    files = write_report(
        args.out, "table2",
        title="Cui et al. Table 2: BraTS test Dice (WT / TC / ET) vs labelled share p "
              "(teacher–student, robust loss on pseudo-labels)",
        measurements=collect_measurements(store, args.fractions, args.repeats),
        paper=paper, rows=[row.name for row in ROWS], columns=table_columns(args.fractions),
        quick=args.quick, environment=environment_info(args.torch_device), decimals=3,
        paper_source="Cui et al., Table 2 (mean (std) over 3 repeats; upper bound: one value per region)",
        unit="Dice", notes=report_notes(args, store, split, data_note, config),
        extra={"settings": {k: (v if isinstance(v, (int, float, str, list, tuple, type(None))) else str(v))
                            for k, v in vars(args).items()},
               "split": split, "this_invocation": {"trained": done.trained, "skipped": done.skipped},
               "runs": {k: {f: v for f, v in r.items() if f != "test_cases"} for k, r in store.runs.items()}},
    )
    ours = {(c.row, c.column): (c.mean, c.std) for c in files.cells}
    plot_panels(args.out / "fig3.png", fig3_panels(ours, args.fractions), kind="line",
                suptitle="Fig. 3 (ours" + (", QUICK synthetic run" if args.quick else "") + "): mean test Dice vs p")
    paper_fractions = [p for p in args.fractions if p in PAPER_FRACTIONS] or list(PAPER_FRACTIONS)
    paper_cells = {k: (v if isinstance(v, tuple) else (v, None)) for k, v in paper_values(paper_fractions).items()}
    plot_panels(args.out / "fig3_paper.png", fig3_panels(paper_cells, paper_fractions), kind="line",
                suptitle="Fig. 3 from the paper's Table 2 (Cui et al.)")
    return files.markdown


# --------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_as_rank(run, resolve_settings(args), args.device)


def run(args: argparse.Namespace, main_rank: bool = True) -> int:
    """The experiment; every rank of a job runs it, rank 0 prepares the data and reports."""
    if main_rank:
        prepare_out_dir(args.out, overwrite=args.overwrite, threads=args.threads,
                        remove=["runs", "runs.json"] + ([SYNTHETIC_DIR, STUDIES_DIR] if args.quick else []))
        studies, data_note = prepare_studies(args)
    else:
        prepare_out_dir(args.out, overwrite=False, threads=args.threads)
    studies, data_note = broadcast_object((studies, data_note) if main_rank else None)
    items = {item["case"]: item for item in studies_datalist(studies, sources=(FINAL,))}
    if not items:
        raise SystemExit(f"error: no labelled case could be imported into {studies} (see the import report above)")
    try:
        split = split_for_table2(list(items), args.split_seed)
        for p in args.fractions:
            labelled_subset(split["train"], p, 0)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from exc
    if main_rank:
        atomic_write_json(args.out / "split.json", split)
    config = base_train_config(args)
    store = rank_zero_store(args.out / "runs.json", results_fingerprint(args, config, list(items), data_note))
    done = Table2Experiment(args, studies, split, items, store, config).run()
    barrier()
    if not main_rank:
        return 0
    markdown = write_outputs(args, store, split, data_note, config, done)
    print(markdown.read_text())
    print(f"runs trained: {len(done.trained)}, skipped (finished earlier, read from {store.path}): {len(done.skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
