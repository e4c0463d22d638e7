#!/usr/bin/env python
"""Ju 2017, Fig. 2: the weighted logistic loss (α = 1, β = 0.5) and the class-dependent sigmoid
loss, and their derivatives with respect to the model output f ∈ (−5, 5), for each class.

The losses are the library's (robustlabel.losses), the derivatives come from autograd:

    python scripts/pu_loss_curves.py --out results/pu_loss_curves

Outputs in --out: pu_loss_curves.{csv,json,md,png}.  Runs in about a second on a CPU.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from robustlabel.experiments.ju_loss_curves import WEIGHTED_ALPHA, WEIGHTED_BETA, run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--points", type=int, default=101, help="values of f on [-5, 5]")
    p.add_argument("--alpha", type=float, default=WEIGHTED_ALPHA, help="weight of the positive class (Eq. 6)")
    p.add_argument("--beta", type=float, default=WEIGHTED_BETA, help="weight of the negative class (Eq. 6)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    files = run(args.out, points=args.points, alpha=args.alpha, beta=args.beta)
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
