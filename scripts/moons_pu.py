#!/usr/bin/env python
"""Ju 2017, Sec. 5.1.1, Figs. 3 and 4: PU learning on two moons with a 2-layer MLP (6 units each).

Half of the positive points are labelled negative.  One model per loss (logistic, class-weighted
logistic 1 : 0.5, class-dependent sigmoid, the parametrised sigmoid of Sec. 6) plus a model on
the true labels; recall, precision and margin (mean distance of positive points to the
boundary) on fresh clean points, mean ± std over seeds:

    python scripts/moons_pu.py --out results/moons_pu

Outputs in --out: moons_pu.{csv,json,md}, moons_pu_fig3.png (marker size = per-class normalised
training loss) and moons_pu_fig4.png (marker size = per-class normalised |dloss/df|).
Seconds on a CPU; no --quick needed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from robustlabel.experiments.ju_moons import MoonsConfig, run

DEFAULTS = MoonsConfig()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULTS.seeds), help="one data sample and model per seed")
    p.add_argument("--n-per-class", type=int, default=DEFAULTS.n_per_class)
    p.add_argument("--noise", type=float, default=DEFAULTS.noise, help="std of make_moons' Gaussian noise")
    p.add_argument("--steps", type=int, default=DEFAULTS.steps, help="full-batch Adam steps per model")
    p.add_argument("--lr", type=float, default=DEFAULTS.lr)
    p.add_argument("--activation", default=DEFAULTS.activation, help="MLP activation (MONAI name, e.g. tanh, relu)")
    p.add_argument("--param-sigmoid", type=float, nargs=3, default=list(DEFAULTS.param_sigmoid),
                   metavar=("ALPHA", "BETA", "GAMMA"), help="α σ(βf)^γ for the negatives (extra panel)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    config = MoonsConfig(n_per_class=args.n_per_class, noise=args.noise, steps=args.steps, lr=args.lr,
                         activation=args.activation, seeds=tuple(args.seeds), param_sigmoid=tuple(args.param_sigmoid))
    files = run(args.out, config)
    print(files["markdown"].read_text())
    print(f"figures: {files['fig3']}, {files['fig4']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
