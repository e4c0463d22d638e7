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
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from robustlabel.engine.config import PRECISIONS, SELECTIONS
from robustlabel.experiments.cli import parse_float_pair
from robustlabel.experiments.cui_table1 import QUICK, Table1Config, reproduce_table1, table1_config
from robustlabel.losses.source_aware import SOURCE_MODES

DEFAULTS = {f.name: f.default for f in fields(Table1Config)}


def build_parser() -> argparse.ArgumentParser:
    """The options of :class:`~robustlabel.experiments.cui_table1.Table1Config` (unset: the
    --quick or full values, then the config's defaults)."""
    d = DEFAULTS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("data")
    src.add_argument("--data", type=Path, help="cifar-10-batches-py folder (or its parent)")
    src.add_argument("--synthetic", action="store_true",
                     help="write and use synthetic colour-blob images in the CIFAR-10 format under OUT/synthetic-data")
    src.add_argument("--train-subset", type=int, help="use this many training images (fixed random subset)")
    src.add_argument("--test-subset", type=int, help="use this many test images (fixed random subset)")
    src.add_argument("--labelled-fraction", type=float,
                     help=f"p: labelled share of the non-validation training set (default {d['labelled_fraction']})")
    src.add_argument("--val-fraction", type=float,
                     help=f"validation share of the training set held out with --grid (default {d['val_fraction']}; "
                          "without --grid nothing is held out, as in the paper)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seeds", type=int, nargs="+", help="one repeat per seed (split and initialisation); default 0 1 2")
    p.add_argument("--quick", action="store_true", help="smoke-test settings: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    p.add_argument("--overwrite", action="store_true", help="discard earlier results and checkpoints in --out")
    tr = p.add_argument_group("training")
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--lr", type=float, help=f"default {d['lr']}")
    tr.add_argument("--lr-milestones", type=int, nargs="*", help="epochs where lr *= lr-gamma (default: 2/3 of --epochs, 100 of 150)")
    tr.add_argument("--lr-gamma", type=float, help=f"default {d['lr_gamma']}")
    tr.add_argument("--momentum", type=float, help=f"default {d['momentum']}")
    tr.add_argument("--weight-decay", type=float, help=f"default {d['weight_decay']}")
    tr.add_argument("--width", type=float, help="ResNet-18 width factor (1.0 = the paper's network)")
    tr.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N")
    tr.add_argument("--select", choices=SELECTIONS,
                    help="score the last epoch (default, the paper) or the epoch of best validation accuracy "
                         "(needs --grid's validation split)")
    tr.add_argument("--mode", choices=SOURCE_MODES,
                    help="weighting of true-label and pseudo-label terms: union (default), robust_all, per_source")
    tr.add_argument("--precision", choices=PRECISIONS,
                    help="fp32 (default, the paper) or bf16 / fp16 autocast on CUDA (CPU always runs fp32)")
    tr.add_argument("--workers", type=int, help="data-loader workers (default 0 on CPU, up to 8 on CUDA)")
    tr.add_argument("--threads", type=int,
                    help="torch intra-op CPU threads (default: torch's; --quick: 1, which is several times "
                         "faster than 2 on a busy 2-core machine)")
    hp = p.add_argument_group("robust-loss hyper-parameters (defaults: the paper's CIFAR-10 values)")
    hp.add_argument("--beta", type=float, help=f"β of β-CE (BCE), default {d['beta']:g}")
    hp.add_argument("--q", type=float, help=f"q of GCE, default {d['q']:g}")
    hp.add_argument("--sce", type=parse_float_pair, metavar="ALPHA,GAMMA", help="α, γ of SCE, default {:g},{:g}".format(*d["sce"]))
    hp.add_argument("--grid", action="store_true", help="pick each loss' hyper-parameters by validation accuracy from the grids below")
    hp.add_argument("--grid-beta", type=float, nargs="+", help=f"default {d['grid_beta']}")
    hp.add_argument("--grid-q", type=float, nargs="+", help=f"default {d['grid_q']}")
    hp.add_argument("--grid-sce", type=parse_float_pair, nargs="+", metavar="ALPHA,GAMMA", help=f"default {d['grid_sce']}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = table1_config(**vars(args))
    except ValueError as exc:
        parser.error(str(exc))
    markdown = reproduce_table1(config)
    if markdown is not None:  # rank 0
        print(markdown.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
