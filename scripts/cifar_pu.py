#!/usr/bin/env python
"""Ju 2017, Table 1 and Fig. 5: multiclass PU learning on CIFAR-10 (ten relevant classes) +
CIFAR-100 (one non-relevant class), with the 8-layer CNN of thesis Table 6.

Real data (the official python versions, nothing is downloaded), thesis settings by default
(Adam lr 1e-4, 100 epochs, batch 128, no augmentation, 3 repeats, π = 50 % for Table 1 and
10 ... 90 % for Fig. 5; runs on the GPU when there is one):

    python scripts/cifar_pu.py --cifar10 /path/to/cifar-10-batches-py --cifar100 /path/to/cifar-100-python --out results/cifar_pu

CPU smoke run of a few minutes over every row (300 + 300 training images, 150 + 150 test
images, 4 epochs, batch 32, lr 1e-3, 2 warm-up epochs, 2 repeats, three Fig. 5 points),
labelled QUICK, on real data or on synthetic images written in the two layouts:

    python scripts/cifar_pu.py --quick --cifar10 /path/to/cifar-10-batches-py --cifar100 /path/to/cifar-100-python --out results/cifar_pu_quick
    python scripts/cifar_pu.py --quick --synthetic --out results/cifar_pu_quick

Outputs in --out: cifar_pu_table1.{md,csv,json,png}, cifar_pu_fig5.{md,csv,json,png} and
runs.json.  Re-running with the same --out skips finished runs and resumes interrupted ones
from checkpoints/.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import torch

from robustlabel.experiments.ju_cifar_pu import QUICK, CifarPUConfig, run, write_synthetic_data

DEFAULTS = CifarPUConfig()
#: options mapped one to one onto CifarPUConfig fields: (flag, type, nargs, help)
OPTIONS = {
    "labelled_fraction": (float, None, "π of Table 1 (the thesis' numbers are shown for 0.5 only)"),
    "figure_fractions": (float, "+", "π values of Fig. 5"),
    "repeats": (int, "+", "one P/U split and initialisation per seed"),
    "relevant_train": (int, None, "use this many CIFAR-10 training images (default all)"),
    "relevant_test": (int, None, "use this many CIFAR-10 test images (default all)"),
    "nonrelevant_train": (int, None, "subsample the non-relevant CIFAR-100 training images (default all 50000)"),
    "nonrelevant_test": (int, None, "subsample the non-relevant CIFAR-100 test images (default all 10000)"),
    "epochs": (int, None, "training epochs"),
    "batch_size": (int, None, "batch size"),
    "lr": (float, None, "Adam learning rate"),
    "weight_decay": (float, None, "Adam weight decay"),
    "nonrelevant_weight": (float, None, "ClassWeighted: weight of class 0"),
    "bootstrap_beta": (float, None, "β of the hard bootstrapping loss"),
    "bootstrap_warmup": (int, None, "epochs of frequency-weighted CE before hard bootstrapping"),
    "device": (str, None, "auto | cpu | cuda | cuda:N"),
    "workers": (int, None, "data-loader workers (default 0 on CPU, up to 8 on CUDA)"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cifar10", type=Path, help="cifar-10-batches-py folder (or its parent)")
    p.add_argument("--cifar100", type=Path, help="cifar-100-python folder (or its parent)")
    p.add_argument("--synthetic", action="store_true", help="write and use synthetic images in both layouts under OUT/synthetic-data")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--quick", action="store_true", help="CPU smoke settings: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    p.add_argument("--overwrite", action="store_true", help="discard earlier results and checkpoints in --out")
    p.add_argument("--augment", action="store_true", help="random crop + flip (the thesis uses none)")
    p.add_argument("--no-figure", action="store_true", help="Table 1 only, skip the Fig. 5 runs")
    p.add_argument("--threads", type=int, help="torch CPU threads (--quick: 1)")
    for name, (kind, nargs, text) in OPTIONS.items():
        default = getattr(DEFAULTS, name)
        p.add_argument("--" + name.replace("_", "-"), type=kind, nargs=nargs, help=f"{text} (default {default})")
    return p


def config_from(args: argparse.Namespace) -> CifarPUConfig:
    """Explicit options win over the --quick settings, which win over the thesis defaults."""
    values = dict(QUICK) if args.quick else {}
    values.update({k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None})
    names = {f.name for f in fields(CifarPUConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    return CifarPUConfig(augment=args.augment, figure=not args.no_figure, **values)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.synthetic == (args.cifar10 is not None or args.cifar100 is not None) or (
            not args.synthetic and (args.cifar10 is None or args.cifar100 is None)):
        raise SystemExit("error: give --cifar10 PATH and --cifar100 PATH (real data), or --synthetic")
    config = config_from(args)
    threads = args.threads if args.threads is not None else (1 if args.quick else None)
    if threads is not None:
        torch.set_num_threads(threads)
    note = None
    if args.synthetic:
        args.cifar10, args.cifar100, note = write_synthetic_data(args.out / "synthetic-data")
    files = run(args.cifar10, args.cifar100, args.out, config, quick=args.quick, data_note=note, overwrite=args.overwrite)
    print(files["table_md"].read_text())
    if "figure_md" in files:
        print(files["figure_md"].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
