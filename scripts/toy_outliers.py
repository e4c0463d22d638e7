#!/usr/bin/env python
"""Reproduce Fig. 2 of Cui et al., "Semi-supervised Learning using Robust Loss": a toy example.

Three classes in 2-D, each a mixture of two Gaussians, plus a small mislabelled sub-cluster
in the bottom left whose points carry the label of the class on the far right.  A single-layer
perceptron (one ``nn.Linear(2, 3)``, softmax) is trained full-batch with Adam under CE, β-CE,
GCE and SCE.  CE bends its decision boundaries towards the outliers; the robust losses leave
them (almost) where a CE model trained without the outliers puts them.
The experiment is :mod:`robustlabel.experiments.cui_toy`.

    python scripts/toy_outliers.py --out results/toy
    python scripts/toy_outliers.py --out results/toy --beta 2 --q 0.9 --sce 0.1,1 --seeds 0 1 2 3 4

Outputs in --out: fig2_decision_regions.png (data panel + one panel per loss, first seed) and
toy_table.{md,csv,json}: accuracy on a fresh clean test set drawn from the three classes, and
the share of the training outliers each model classifies with their wrong label.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from robustlabel.experiments.cli import parse_float_pair
from robustlabel.experiments.cui_toy import FULL, QUICK, ToyConfig, run_toy, toy_config

DEFAULTS = {f.name: f.default for f in fields(ToyConfig)}


def build_parser() -> argparse.ArgumentParser:
    """The options of :class:`~robustlabel.experiments.cui_toy.ToyConfig` (unset: its defaults)."""
    d = DEFAULTS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seeds", type=int, nargs="+",
                   help=f"one data set + initialisation per seed (default {FULL['seeds']}; quick: {QUICK['seeds']})")
    p.add_argument("--quick", action="store_true", help=f"fewer Adam steps ({QUICK['steps']}) and seeds {QUICK['seeds']}")
    p.add_argument("--n-per-class", type=int, help=f"default {d['n_per_class']}")
    p.add_argument("--n-outliers", type=int, help=f"size of the mislabelled sub-cluster (default {d['n_outliers']})")
    p.add_argument("--n-test", type=int, help=f"clean test points per class (default {d['n_test']})")
    p.add_argument("--steps", type=int, help=f"full-batch Adam steps (default {FULL['steps']})")
    p.add_argument("--lr", type=float, help=f"default {d['lr']}")
    p.add_argument("--beta", type=float, help=f"β of β-CE (default {d['beta']:g})")
    p.add_argument("--q", type=float, help=f"q of GCE (default {d['q']:g})")
    p.add_argument("--sce", type=parse_float_pair, metavar="ALPHA,GAMMA", help="α, γ of SCE (default {:g},{:g})".format(*d["sce"]))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    print(run_toy(toy_config(**vars(build_parser().parse_args(argv)))).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
