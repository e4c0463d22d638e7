"""The ``robustlabel`` command line.

Each sub-command lives in its own module under :mod:`robustlabel.commands` and exposes
``HELP: str``, ``add_arguments(parser)`` and ``run(args) -> int``.  Modules are imported
lazily so that ``robustlabel --help`` stays fast and one broken command cannot break another.
"""

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
    parser = argparse.ArgumentParser(prog="robustlabel", description=__doc__.splitlines()[0])
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
