"""robustlabel: teacher-student brain-tumour segmentation (TransBTS) with noise-robust losses on pseudo-labels.

Real data (BraTS 2018-2021 folders, MSD Task01_BrainTumour or BraTS 2023), 30 % clinician labels:

  robustlabel import-brats MICCAI_BraTS_2018_Data_Training studies --labeled-fraction 0.3 --seed 1
  robustlabel teacher-student --studies studies --loss gce --q 0.7 --out ts-gce
  robustlabel pseudo-label --studies studies --checkpoint ts-gce/round_0_teacher/best.pt

Protocol choices of teacher-student (named under its results table): --mode union|robust_all|per_source,
--select best|last, --init scratch|teacher, --precision fp32|bf16|fp16.

Serve the studies to 3D Slicer through MONAI Label:

  monailabel start_server --app apps/brats --studies studies --conf models transbts --conf device auto

Try it on synthetic cases first:  robustlabel demo --loop   (or: robustlabel demo)
Run `robustlabel COMMAND --help` for each command's options.
"""
# Each sub-command lives in its own module under robustlabel.commands and exposes
# HELP: str, add_arguments(parser) and run(args) -> int.  Modules are imported lazily so that
# `robustlabel --help` stays fast and one broken command cannot break another.  The module
# docstring above is the top-level --help text (first paragraph: description; rest: epilog).

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: sub-command name -> module under robustlabel.commands
COMMANDS: dict[str, str] = {
    "synth-brats": "synth_brats",
    "import-brats": "import_brats",
    "teacher-student": "teacher_student",
    "pseudo-label": "pseudo_label",
    "demo": "demo",
}


def _load(name: str):
    return importlib.import_module(f"robustlabel.commands.{COMMANDS[name]}")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    summary, _, usage = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(prog="robustlabel", description=summary, epilog=usage,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None if argv is None else next((a for a in argv if not a.startswith("-")), None)
    for name in COMMANDS:
        # Only the chosen command's module is imported (plus all of them for `--help`).
        if wanted is not None and wanted != name and wanted in COMMANDS:
            sub.add_parser(name)
            continue
        try:
            module = _load(name)
        except ModuleNotFoundError as exc:  # a command whose module is not installed
            sub.add_parser(name, help=f"(unavailable: {exc})")
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
