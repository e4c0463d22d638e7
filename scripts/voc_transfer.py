#!/usr/bin/env python
"""Reproduce Tables 3, 4, 5 and Fig. 7 of Ju 2017 (§5.3): FCN-AlexNet pre-trained on 15 PASCAL
VOC2011 categories with noisy labels (random labels, binarised, unsegmented objects with the
logistic or the class-dependent loss, false positives, categorised), fine-tuned on the other 5
categories of each fold, scored by mean IU on the fold's VOC2011 val images.

Real data (nothing is downloaded; runs on the GPU when there is one):

    python scripts/voc_transfer.py --voc /data/TrainVal/VOCdevkit/VOC2011 \\
        --sbd /data/benchmark_RELEASE/dataset --out results/voc_transfer

    # defaults: folds 1-4, 3 repeats, pre-training 240,000 and fine-tuning 12,000 iterations of
    # 20 images (fine-tuning snapshot every 2,000 so that the last five exist), random initial
    # weights for pre-training unless --alexnet-weights PATH is given.

CPU smoke run (a few minutes; numbers NOT comparable to the thesis) on synthetic images written
in the VOC2011 + SBD layouts, folds 1 and 3:

    python scripts/voc_transfer.py --quick --synthetic --out results/voc_transfer-quick

Outputs in --out: table3/table4/table5.{md,csv,json,png}, fig7.{md,csv,json,png}, runs.json
(finished runs) and models/ (pre-trained weights, reused by every row that shares them; kept
in memory in --quick mode).  Re-running with the same --out skips finished runs and resumes
interrupted ones from states/ (not written in --quick mode).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from robustlabel.experiments import voc_cli
from robustlabel.experiments.ju_voc_transfer import QUICK, VocTransferConfig, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = voc_cli.add_transfer_arguments(parser).parse_args(argv)
    data, config = voc_cli.data_and_config(args, VocTransferConfig, QUICK)
    out = run(data, args.out, config, voc_cli.run_options(args))
    for stem in ("table3", "table4", "table5", "fig7"):
        print((out / f"{stem}.md").read_text(), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
