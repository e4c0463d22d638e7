#!/usr/bin/env python
"""Reproduce Table 2 and Fig. 6 of Ju 2017 (§5.2): foreground/background segmentation of PASCAL
VOC2011 single-object images with 50 % of the objects unsegmented, trained with the logistic,
class-weighted and class-dependent sigmoid losses (FCN-AlexNet).

Real data (nothing is downloaded; runs on the GPU when there is one):

    python scripts/voc_pu_segmentation.py --voc /data/TrainVal/VOCdevkit/VOC2011 \\
        --sbd /data/benchmark_RELEASE/dataset --alexnet-weights /data/alexnet-owt-7be5be79.pth \\
        --out results/voc_pu_segmentation

    # defaults are the thesis/FCN reference settings: 240,000 iterations of 20 images, a snapshot
    # every 4,000, 3 repeats, images subsampled by 4, SGD lr 1e-4, momentum 0.9, wd 5e-4.

CPU smoke run (a few minutes; numbers NOT comparable to the thesis) on synthetic images written
in the VOC2011 + SBD layouts:

    python scripts/voc_pu_segmentation.py --quick --synthetic --out results/voc_pu_segmentation-quick

Outputs in --out: table2.{md,csv,json,png}, fig6.png, runs.json (finished runs) and
predictions/.  Re-running with the same --out skips finished runs and resumes an interrupted
one from states/ (not written in --quick mode).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from robustlabel.experiments import voc_cli
from robustlabel.experiments.ju_voc_segmentation import QUICK, VocPUConfig, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = voc_cli.add_segmentation_arguments(parser).parse_args(argv)
    data, config = voc_cli.data_and_config(args, VocPUConfig, QUICK)
    markdown = run(data, args.out, config, voc_cli.run_options(args))
    print(markdown.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
