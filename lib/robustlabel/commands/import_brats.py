"""Import a BraTS dataset into a MONAI Label studies folder.

Usage::

    robustlabel import-brats SRC STUDIES [--labeled-fraction 1.0] [--seed 0] [--labelled-only] [--no-progress]

``SRC`` is a BraTS 2018–2021 folder tree (``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii[.gz]``,
BraTS 2018's ``HGG/``/``LGG/`` included), an MSD Task01_BrainTumour folder (``dataset.json``,
``imagesTr/``, ``labelsTr/``) or a BraTS 2023 tree (``<case>/<case>-{t2f,t1n,t1c,t2w,seg}.nii.gz``);
the layout is detected and the labels are converted to BraTS values {0, 1, 2, 4}.

``STUDIES`` receives, per valid case, the 3-D FLAIR ``<case>.nii.gz`` (the image MONAI Label lists
and Slicer shows), the 4-D ``modalities/<case>.nii.gz`` (channels flair, t1ce, t1, t2) and, for a
seeded random ``--labeled-fraction`` of the labelled cases, ``labels/final/<case>.nii.gz``; plus
``robustlabel_manifest.json``.  Every written file keeps the source image's qform/sform codes and
units.  Source cases without a label (MSD ``imagesTs``) are imported as unlabelled pool cases, or
left out with ``--labelled-only``.  Invalid cases (corrupt files, missing modality, geometry mismatch,
bad label values, NaN voxels) are skipped and listed with their reasons at the end; an existing
``labels/final`` file is never overwritten (that case is refused).  Exit status 0 when at least
one case was imported, 1 otherwise.  See :mod:`robustlabel.data.studies` for the details.

Example (paper setting p = 30 %)::

    robustlabel import-brats MICCAI_BraTS_2018_Data_Training studies --labeled-fraction 0.3 --seed 1
"""

from __future__ import annotations

import argparse

from robustlabel.data.studies import import_brats

HELP = "import BraTS 2018-2021 / MSD Task01 / BraTS 2023 data into a MONAI Label studies folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="BraTS source folder")
    parser.add_argument("studies", help="studies folder to create or extend (the MONAI Label datastore)")
    parser.add_argument("--labeled-fraction", type=float, default=1.0, metavar="P",
                        help="fraction in [0, 1] of the labelled cases whose label is imported as 'final' (default 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the labelled-case selection (default 0)")
    parser.add_argument("--labelled-only", action="store_true",
                        help="import only source cases that have a label (leave out MSD imagesTs and other "
                             "unlabelled cases; default: import them as unlabelled pool cases)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.labeled_fraction <= 1.0:
        raise SystemExit(f"--labeled-fraction must lie in [0, 1], got {args.labeled_fraction}")
    try:
        report = import_brats(args.src, args.studies, labeled_fraction=args.labeled_fraction,
                              seed=args.seed, progress=not args.no_progress,
                              labelled_only=args.labelled_only)
    except ValueError as exc:
        raise SystemExit(f"import-brats: {exc}") from exc
    print(report.format())
    return 0 if (report.labeled or report.unlabeled) else 1
