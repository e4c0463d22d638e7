"""Command-line options, data preparation and table notes shared by the two PASCAL VOC scripts
(``scripts/voc_pu_segmentation.py``, ``scripts/voc_transfer.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robustlabel.data.voc import VocSelection, load_voc_single_objects, write_synthetic_voc
from robustlabel.networks.fcn import HEAD_INITS

#: a synthetic VOC tree for --synthetic: images per class (train, val) and full-size (H, W)
SYNTHETIC = {"train_per_class": 4, "val_per_class": 2, "size": (192, 256)}

ALEXNET_NOTE = ("**Network:** FCN-AlexNet (FCN-32s: conv1 padding 100, fc6/fc7 as convolutions, 1x1 score, learned "
                "63x63/32 transposed convolution, crop offset 18) built on torchvision's AlexNet, which differs from the "
                "Caffe AlexNet of FCN: 64/192/384/256/256 convolution channels instead of 96/256/384/384/256, no "
                "grouped convolutions, no LRN; pooling in Caffe's ceil mode")
TEST_SET_NOTE = ("**Test set:** VOC2011 `val` (single-object images): the VOC2011 test labels are not public; "
                 "SBD images listed in VOC2011 val never enter training")


def add_common_arguments(parser: argparse.ArgumentParser, quick: Mapping[str, Any]) -> None:
    """Options of both scripts; unset ones are filled by :func:`resolve_common` from the
    ``--quick`` or full defaults."""
    data = parser.add_argument_group("data")
    data.add_argument("--voc", type=Path, help="VOC2011 devkit: TrainVal/VOCdevkit/VOC2011 (or a folder above it)")
    data.add_argument("--sbd", type=Path, help="optional SBD benchmark_RELEASE/dataset folder (extra training images)")
    data.add_argument("--synthetic", action="store_true",
                      help="write and use a tiny synthetic VOC2011 + SBD tree under OUT/synthetic-voc (no download)")
    data.add_argument("--synthetic-per-class", type=int, nargs=2, metavar=("TRAIN", "VAL"),
                      help=f"synthetic images per class (default {SYNTHETIC['train_per_class']} "
                           f"{SYNTHETIC['val_per_class']})")
    data.add_argument("--subsample", type=int, default=4, help="image down-sampling factor (thesis: 4)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke run, numbers NOT comparable to the thesis: "
                             + ", ".join(f"{k}={v}" for k, v in quick.items()))
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


def resolve_common(args: argparse.Namespace, quick: Mapping[str, Any], full: Mapping[str, Any]) -> argparse.Namespace:
    """Fill unset options from the quick/full defaults and check the data source."""
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if (args.voc is None) == (not args.synthetic):
        raise SystemExit("error: give exactly one of --voc PATH (real VOC2011) or --synthetic")
    if args.synthetic and args.sbd is not None:
        raise SystemExit("error: --sbd goes with --voc; --synthetic writes its own SBD tree")
    if args.alexnet_weights is not None and args.width != 1.0:
        raise SystemExit("error: --alexnet-weights needs --width 1 (ImageNet AlexNet channels)")
    return args


def prepare_data(args: argparse.Namespace) -> tuple[VocSelection, str]:
    """Write the synthetic tree when asked, read the single-object images; returns them and a
    Markdown note on the data."""
    voc, sbd = args.voc, args.sbd
    if args.synthetic:
        per_class = args.synthetic_per_class or (SYNTHETIC["train_per_class"], SYNTHETIC["val_per_class"])
        voc, sbd = write_synthetic_voc(args.out / "synthetic-voc", n_train_per_class=per_class[0],
                                       n_val_per_class=per_class[1], size=SYNTHETIC["size"], with_sbd=True, seed=0)
    selection = load_voc_single_objects(voc, sbd, subsample=args.subsample, progress=not args.no_progress)
    c = selection.counts
    source = f"SYNTHETIC VOC-layout images ({voc}), not PASCAL VOC" if args.synthetic else f"VOC2011 from {voc}"
    if sbd is not None:
        source += f" + SBD from {sbd}"
    note = (f"**Data:** {source}; single-object images kept: train {c['train']} (VOC {c['voc_train_single_object']} of "
            f"{c['voc_train_listed']}, SBD {c['sbd_train_single_object']} of {c['sbd_train_listed']}), test "
            f"{c['test']} (of {c['voc_val_listed']} VOC val); SBD images in VOC val excluded: "
            f"{c['sbd_excluded_in_voc_val']}; images subsampled by {args.subsample}")
    if selection.skipped:
        note += f"; **skipped unreadable files ({len(selection.skipped)}):** " + "; ".join(selection.skipped)
    return selection, note


def weights_note(args: argparse.Namespace, pretraining: bool) -> str:
    """Which initialisation the runs used."""
    what = "pre-training" if pretraining else "training"
    baseline = "; the RandomWeights baseline always starts from random weights" if pretraining else ""
    if args.alexnet_weights is not None:
        return (f"**Initialisation:** the {what} starts from the ImageNet AlexNet weights in {args.alexnet_weights} "
                f"(features, fc6, fc7), Xavier for the rest{baseline}")
    thesis = "" if pretraining else "; the thesis started from ImageNet AlexNet"
    return (f"**Initialisation:** random (Xavier) for every layer of the {what}, no ImageNet weights given "
            f"(--alexnet-weights){thesis}{baseline}")


def mode_label(args: argparse.Namespace) -> str:
    """Figure subtitle part: the data and whether the numbers are comparable to the thesis."""
    data = "SYNTHETIC data" if args.synthetic else "VOC2011"
    return f"{data}, QUICK — not comparable to the thesis" if args.quick or args.synthetic else data
