"""Command-line options of the two PASCAL VOC scripts (``scripts/voc_pu_segmentation.py``,
``scripts/voc_transfer.py``) and their translation into the experiments' inputs: a
:class:`~.voc_data.VocData` and a config (:class:`~.ju_voc_segmentation.VocPUConfig`,
:class:`~.ju_voc_transfer.VocTransferConfig`).

An option given on the command line wins over its ``--quick`` setting, which wins over the
thesis default (the config's default).  The general helpers of every script are in
:mod:`robustlabel.experiments.cli`; these options stay apart because they import the VOC
experiments, which import that module.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from robustlabel.data.voc import FOLDS
from robustlabel.experiments import ju_voc_segmentation, ju_voc_transfer
from robustlabel.experiments.cli import parse_float_pair
from robustlabel.experiments.voc_data import SYNTHETIC_PER_CLASS, RunOptions, VocData
from robustlabel.networks.fcn import HEAD_INITS

#: torch CPU threads of a ``--quick`` run without ``--threads``
QUICK_THREADS = 1
ConfigT = TypeVar("ConfigT")


def add_common_arguments(parser: argparse.ArgumentParser, quick: Mapping[str, Any]) -> None:
    """Options of both scripts; ``quick`` is the experiment's ``--quick`` settings (for the help)."""
    data = parser.add_argument_group("data")
    data.add_argument("--voc", type=Path, help="VOC2011 devkit: TrainVal/VOCdevkit/VOC2011 (or a folder above it)")
    data.add_argument("--sbd", type=Path, help="optional SBD benchmark_RELEASE/dataset folder (extra training images)")
    data.add_argument("--synthetic", action="store_true",
                      help="write and use a tiny synthetic VOC2011 + SBD tree under OUT/synthetic-voc (no download)")
    data.add_argument("--synthetic-per-class", type=int, nargs=2, metavar=("TRAIN", "VAL"),
                      help="synthetic images per class (default {} {})".format(*SYNTHETIC_PER_CLASS))
    data.add_argument("--subsample", type=int, default=4, help="image down-sampling factor (thesis: 4)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke run, numbers NOT comparable to the thesis: "
                             + ", ".join(f"{k}={v}" for k, v in {**quick, "threads": QUICK_THREADS}.items()))
    parser.add_argument("--overwrite", action="store_true", help="discard finished runs in --out and start over")
    parser.add_argument("--repeats", type=int, help="repeats (seeds 0..R-1); thesis: 3")
    net = parser.add_argument_group("network and solver (defaults: FCN-AlexNet reference solver)")
    net.add_argument("--alexnet-weights", type=Path,
                     help="local torchvision ImageNet AlexNet state dict (alexnet-owt-*.pth); nothing is downloaded")
    net.add_argument("--width", type=float, help="channel multiplier (1 = AlexNet; < 1 only for smoke runs)")
    net.add_argument("--head-init", choices=HEAD_INITS, default="xavier",
                     help="initialisation of the upsampling layer (thesis: xavier; FCN reference: bilinear)")
    net.add_argument("--iter-size", type=int, help="images accumulated per SGD step (reference: 20)")
    net.add_argument("--lr", type=float, help="SGD learning rate (reference and default: 1e-4)")
    net.add_argument("--momentum", type=float, default=0.9)
    net.add_argument("--weight-decay", type=float, default=5e-4)
    net.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    net.add_argument("--threads", type=int, help="torch CPU threads (--quick: 1)")
    net.add_argument("--no-progress", action="store_true", help="no tqdm bars")


def add_segmentation_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """All options of ``scripts/voc_pu_segmentation.py`` (Table 2 / Fig. 6)."""
    add_common_arguments(parser, ju_voc_segmentation.QUICK)
    exp = parser.add_argument_group("Table 2")
    exp.add_argument("--iterations", type=int, help="SGD iterations (default 240000, see the notes)")
    exp.add_argument("--snapshot-every", type=int, help="snapshot interval (default 4000)")
    exp.add_argument("--unsegmented-p", type=float, default=0.5, help="probability that an object is unsegmented")
    exp.add_argument("--class-weights", type=parse_float_pair, metavar="BG,FG",
                     help="ClassWeighted weights (default: inverse label frequency of each repeat's training maps)")
    exp.add_argument("--examples", type=int, default=2, help="test images in Fig. 6")
    return parser


def add_transfer_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """All options of ``scripts/voc_transfer.py`` (Tables 3-5 / Fig. 7)."""
    add_common_arguments(parser, ju_voc_transfer.QUICK)
    exp = parser.add_argument_group("Tables 3-5 and Fig. 7")
    exp.add_argument("--folds", type=int, nargs="+", choices=sorted(FOLDS), help="folds to run (default 1 2 3 4)")
    exp.add_argument("--pretrain-iterations", type=int, help="default 240000")
    exp.add_argument("--pretrain-snapshot-every", type=int, help="default 4000 (state saved for resuming)")
    exp.add_argument("--finetune-iterations", type=int, help="default 12000")
    exp.add_argument("--finetune-snapshot-every", type=int,
                     help="default 2000, so that the last five snapshots exist (the thesis' 4000 gives three)")
    return parser


def data_and_config(args: argparse.Namespace, config_type: type[ConfigT],
                    quick: Mapping[str, Any]) -> tuple[VocData, ConfigT]:
    """The data source and the ``config_type`` config of parsed options: each config field takes
    the option of the same name when given, else its ``quick`` setting under ``--quick``, else
    the config's default.

    Raises:
        SystemExit: ``error: ...`` naming an inconsistent or out-of-range option.
    """
    values = dict(quick) if args.quick else {}
    values.update({f.name: getattr(args, f.name) for f in fields(config_type)  # type: ignore[arg-type]
                   if getattr(args, f.name, None) is not None})
    data_values = {"voc": args.voc, "sbd": args.sbd, "synthetic": args.synthetic, "subsample": args.subsample}
    if args.synthetic_per_class is not None:
        data_values["synthetic_per_class"] = tuple(args.synthetic_per_class)
    try:
        return VocData(**data_values), config_type(**values)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def run_options(args: argparse.Namespace) -> RunOptions:
    """How the experiment runs; ``--quick`` without ``--threads`` takes :data:`QUICK_THREADS`."""
    threads = args.threads if args.threads is not None else (QUICK_THREADS if args.quick else None)
    return RunOptions(quick=args.quick, overwrite=args.overwrite, threads=threads, progress=not args.no_progress)
