"""Write synthetic BraTS 2018-style cases (brain phantoms with nested tumour labels).

Usage::

    robustlabel synth-brats OUT [--cases 8] [--shape 64 64 48] [--seed 0]

writes ``OUT/Brats18_SYN_0001_1/Brats18_SYN_0001_1_{flair,t1,t1ce,t2,seg}.nii.gz``, ... .
The same ``--seed`` (and shape) always gives byte-identical files; case ``i`` does not depend
on ``--cases``.  The phantom model is described in :mod:`robustlabel.data.synthetic`.
Feed the result to ``robustlabel import-brats OUT STUDIES`` to build a MONAI Label studies folder.
"""

from __future__ import annotations

import argparse

from robustlabel.data.synthetic import DEFAULT_CASES, DEFAULT_SHAPE, write_synthetic_brats

HELP = "write synthetic BraTS 2018-style cases (phantoms) for demos and tests"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (case folders are created inside)")
    parser.add_argument("--cases", type=int, default=DEFAULT_CASES, help=f"number of cases (default {DEFAULT_CASES})")
    parser.add_argument("--shape", type=int, nargs=3, default=list(DEFAULT_SHAPE), metavar=("X", "Y", "Z"),
                        help="volume shape in voxels (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default 0)")


def run(args: argparse.Namespace) -> int:
    if args.seed < 0:
        raise SystemExit(f"--seed must be >= 0, got {args.seed}")
    if args.cases < 1:
        raise SystemExit(f"--cases must be >= 1, got {args.cases}")
    folders = write_synthetic_brats(args.out, cases=args.cases, shape=args.shape, seed=args.seed)
    print(f"wrote {len(folders)} synthetic BraTS cases of shape {tuple(args.shape)} to {args.out}")
    return 0
