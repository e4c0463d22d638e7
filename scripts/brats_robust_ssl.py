#!/usr/bin/env python
"""Reproduce Table 2 and Fig. 3 of Cui et al., "Semi-supervised Learning using Robust Loss" (BraTS).

For each labelled share p of the training split (30, 50, 70 %) and each repeat: a TransBTS
teacher trained with CE on the labelled cases (lower bound) pseudo-labels the other training
cases; students CE / BCE / GCE / SCE use CE on the true labels and that loss on the
pseudo-labels; the upper bound uses every true label.  Mean test Dice (WT / TC / ET) over
repeats beside the paper's.  The protocol, the split and the choices below are described in
robustlabel.experiments.cui_table2, which runs the experiment.

Protocol choices (each is named in the table notes): --select last|best (default last, the
paper), --mode union|robust_all|per_source (default union), --precision fp32|bf16|fp16 (default
fp32, the seed), --init scratch|teacher (default scratch, the paper), --lr (default 2e-4).

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

    torchrun --nproc-per-node 4 scripts/brats_robust_ssl.py --data /data/MICCAI_BraTS_2018_Data_Training \\
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
import sys
from collections.abc import Sequence
from pathlib import Path

from robustlabel.engine.config import INITS, PRECISIONS, SELECTIONS, TrainConfig
from robustlabel.experiments.cui_table2 import PAPER_FRACTIONS, QUICK, reproduce_table2, table2_config
from robustlabel.losses.source_aware import SOURCE_MODES


def build_parser() -> argparse.ArgumentParser:
    """The options of :class:`~robustlabel.experiments.cui_table2.Table2Config` (unset: the
    --quick or full values, then the config's defaults), described by this docstring."""
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    options = vars(parser.parse_args(argv))
    options["progress"] = not options.pop("no_progress")
    try:
        config = table2_config(**options)
    except ValueError as exc:
        parser.error(str(exc))
    reproduce_table2(config)  # rank 0 prints the table
    return 0


if __name__ == "__main__":
    sys.exit(main())
