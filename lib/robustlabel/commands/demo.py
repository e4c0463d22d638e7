"""Start the MONAI Label server with the BraTS app on sample studies (tiny, CPU friendly),
or, with ``--loop``, run the teacher–student rounds on sample studies and print the Dice table.

Usage::

    robustlabel demo [--studies demo/studies] [--port 8000] [--cases 8] [--labeled-fraction 0.25]
                     [--shape 64 64 48] [--seed 0] [--max-epochs 20] [--full] [--dry-run]
    robustlabel demo --loop [--studies demo/loop-studies] [--cases 16] [--labeled-fraction 0.5]
                     [--shape 48 48 48] [--max-epochs 20] [--rounds 1] [--loss gce]

Unless ``--studies`` already holds a studies folder (``robustlabel_manifest.json``), it is
generated first: ``robustlabel synth-brats`` writes ``--cases`` synthetic BraTS cases next to it
(``<studies>/../brats_source``) and ``robustlabel import-brats`` imports them with a
``--labeled-fraction`` of ``final`` labels, the rest unlabelled.  Then the real server replaces
this process::

    python -m monailabel.main start_server --app apps/brats --studies <studies> -i 127.0.0.1 -p <port>
        --conf models transbts --conf tiny true --conf device auto --conf max_epochs 20
        --conf model_dir <studies>/../model

The tiny TransBTS (32³ windows) trains in seconds per epoch on a laptop CPU; ``--full`` serves
the full-size network instead.  The trained model goes to ``<studies>/../model`` so the
repository's app folder stays clean.  ``--dry-run`` prepares the studies, prints the command and
the next steps, and exits.

``--loop`` needs no server: it runs the teacher–student rounds of
``robustlabel teacher-student --tiny --lr 3e-3`` (the command line is printed; the rounds run in
this process through :func:`robustlabel.engine.rounds.run_teacher_student`) on the sample studies
(teacher on the ``final`` labels with CE, pseudo-labels for the rest, student with CE + the
robust loss) and prints WT/TC/ET Dice per round on held-out clinician-labelled cases; results
go to ``<studies>/../teacher-student``.

The studies are generated with :func:`robustlabel.data.synthetic.write_synthetic_brats` and
:func:`robustlabel.data.studies.import_brats`, the functions behind ``synth-brats`` and
``import-brats``; the equivalent command lines are printed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import robustlabel
from robustlabel.commands import teacher_student
from robustlabel.data.studies import import_brats
from robustlabel.data.synthetic import write_synthetic_brats

HELP = "generate sample studies and start the MONAI Label server with the BraTS app"

MANIFEST_NAME = "robustlabel_manifest.json"  # written by import-brats (robustlabel.data.studies)


def default_app_dir() -> Path:
    """The repository's ``apps/brats`` next to the installed (editable) package."""
    return Path(robustlabel.__file__).resolve().parents[2] / "apps" / "brats"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loop", action="store_true",
                        help="run the teacher-student rounds and print the Dice table instead of starting the server")
    parser.add_argument("--studies", default=None, help="studies folder (default demo/studies; --loop: demo/loop-studies)")
    parser.add_argument("--port", type=int, default=8000, help="server port (default %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="server address (default %(default)s)")
    parser.add_argument("--cases", type=int, default=None, help="synthetic cases to generate (default 8; --loop: 16)")
    parser.add_argument("--labeled-fraction", type=float, default=None, metavar="P",
                        help="share of cases imported with a final label (default 0.25; --loop: 0.5)")
    parser.add_argument("--shape", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                        help="volume shape of generated cases (default 64 64 48; --loop: 48 48 48)")
    parser.add_argument("--rounds", type=int, default=1, help="--loop: student rounds (default %(default)s)")
    parser.add_argument("--loss", default="gce", help="--loop: robust loss on pseudo-labels (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated cases (default %(default)s)")
    parser.add_argument("--max-epochs", type=int, default=20, help="epochs per train request (default %(default)s)")
    parser.add_argument("--full", action="store_true", help="serve the full-size TransBTS (GPU advised)")
    parser.add_argument("--app", default=None, help="app folder (default: the repository's apps/brats)")
    parser.add_argument("--dry-run", action="store_true", help="prepare the studies, print the command and exit")


def is_studies_folder(path: Path) -> bool:
    """Whether ``path`` is a studies folder built by ``import-brats``; a non-empty folder that is
    not one is an error (nothing is written into it)."""
    if (path / MANIFEST_NAME).is_file():
        return True
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise SystemExit(f"{path} exists but is not a robustlabel studies folder (no {MANIFEST_NAME}); "
                         f"pass an empty or new --studies folder")
    return False


def prepare_studies(args: argparse.Namespace) -> Path:
    """Generate synthetic cases and import them, unless the studies folder exists."""
    studies = Path(args.studies).resolve()
    if is_studies_folder(studies):
        print(f"using existing studies folder {studies}")
        return studies
    if args.cases < 1:
        raise SystemExit(f"--cases must be >= 1, got {args.cases}")
    if args.seed < 0:
        raise SystemExit(f"--seed must be >= 0, got {args.seed}")
    source = studies.parent / "brats_source"
    print("$ robustlabel " + shlex.join(["synth-brats", str(source), "--cases", str(args.cases), "--shape",
                                         *map(str, args.shape), "--seed", str(args.seed)]))
    folders = write_synthetic_brats(source, cases=args.cases, shape=args.shape, seed=args.seed)
    print(f"wrote {len(folders)} synthetic BraTS cases of shape {tuple(args.shape)} to {source}")
    print("$ robustlabel " + shlex.join(["import-brats", str(source), str(studies), "--labeled-fraction",
                                         str(args.labeled_fraction), "--seed", str(args.seed), "--no-progress"]))
    try:
        report = import_brats(source, studies, labeled_fraction=args.labeled_fraction, seed=args.seed, progress=False)
    except ValueError as exc:
        raise SystemExit(f"robustlabel import-brats failed: {exc}") from exc
    print(report.format())
    if not (report.labeled or report.unlabeled):
        raise SystemExit("robustlabel import-brats failed: no case imported")
    return studies


def server_command(args: argparse.Namespace, app: Path, studies: Path) -> list[str]:
    """The ``monailabel start_server`` command line (run with this Python's ``-m monailabel.main``,
    so the venv's MONAI Label is used even when ``python`` on PATH is another interpreter)."""
    conf = {
        "models": "transbts",
        "tiny": "false" if args.full else "true",
        "device": "auto",
        "max_epochs": str(args.max_epochs),
        "model_dir": str(studies.parent / "model"),
    }
    command = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app), "--studies", str(studies),
               "--host", args.host, "--port", str(args.port)]
    for key, value in conf.items():
        command += ["--conf", key, value]
    return command


def next_steps(url: str, max_epochs: int) -> str:
    """What to do once the server is up: 3D Slicer and REST/client calls."""
    json_header = '-H "Content-Type: application/json"'
    return f"""
MONAI Label server (robustlabel BraTS app) starting at {url}   (API docs: {url}/docs)

3D Slicer (MONAILabel extension): set the server to {url}, press the refresh button, choose
strategy "pseudo_uncertainty", click "Next Sample", run model "transbts", correct the
segments (necrosis = 1, edema = 2, enhancing tumor = 4; keep "unused (BraTS label 3)" empty),
"Submit Label" (tag final), then "Train".

REST (curl) or Python (monailabel.client.MONAILabelClient):
  curl {url}/info/
  curl -X POST "{url}/activelearning/pseudo_uncertainty" {json_header} -d '{{}}'
  curl -X POST "{url}/infer/transbts?image=<image id>&output=image" -o label.nii.gz
  curl -X POST "{url}/train/transbts" {json_header} -d '{{"max_epochs": {max_epochs}}}'            # teacher
  curl "{url}/train/"                                                                              # status
  curl -X POST "{url}/batch/infer/transbts?images=unlabeled" {json_header} -d '{{"label_tag": "pseudo"}}'
  curl "{url}/batch/infer"                                                                         # status
  curl -X POST "{url}/train/transbts" {json_header} -d '{{"use_pseudo": true, "pseudo_loss": "gce", "q": 0.7}}'  # student
  python -c "from monailabel.client import MONAILabelClient as C; print(C('{url}').next_sample('pseudo_uncertainty', {{}}))"
Stop the server with Ctrl+C.
"""


#: learning rate of the --loop demo's tiny TransBTS
LOOP_LR = 3e-3

#: defaults of (studies, cases, labeled_fraction, shape) for the server demo and for --loop
DEFAULTS = {
    False: ("demo/studies", 8, 0.25, [64, 64, 48]),
    True: ("demo/loop-studies", 16, 0.5, [48, 48, 48]),
}


def fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Options left unset take the defaults of the chosen mode (server or ``--loop``)."""
    for key, value in zip(("studies", "cases", "labeled_fraction", "shape"), DEFAULTS[args.loop]):
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def loop_options(args: argparse.Namespace, studies: Path) -> list[str]:
    """The ``robustlabel teacher-student`` options that ``--loop`` runs with."""
    return ["--studies", str(studies), "--tiny", "--loss", args.loss, "--lr", str(LOOP_LR),
            "--epochs", str(args.max_epochs), "--rounds", str(args.rounds), "--out", str(studies.parent / "teacher-student")]


def run_loop(args: argparse.Namespace, studies: Path) -> int:
    """Teacher–student rounds on the sample studies with the tiny network (no server)."""
    # The TransBTS recipe's lr 2e-4 is tuned for 1000 epochs of the full network; the tiny one
    # learns the synthetic studies in 20 epochs at 3e-3 (held-out WT Dice ~0.9, see
    # tests/engine/test_engine_learns_synthetic.py), which makes the demo's table meaningful.
    options = loop_options(args, studies)
    print("$ robustlabel " + shlex.join(["teacher-student", *options]), flush=True)
    if args.dry_run:
        return 0
    parser = argparse.ArgumentParser(prog="robustlabel teacher-student")
    teacher_student.add_arguments(parser)  # the command's defaults for everything --loop does not set
    teacher_student.print_result(teacher_student.teacher_student(parser.parse_args(options)))
    return 0


def run(args: argparse.Namespace) -> int:
    fill_defaults(args)
    if args.loop:
        return run_loop(args, prepare_studies(args))
    app = Path(args.app).resolve() if args.app else default_app_dir()
    if not (app / "main.py").is_file():
        raise SystemExit(f"no MONAI Label app at {app} (expected main.py); pass --app apps/brats from a repository checkout")
    studies = prepare_studies(args)
    command = server_command(args, app, studies)
    print(next_steps(f"http://{args.host}:{args.port}", args.max_epochs))
    print("$ " + shlex.join(command), flush=True)
    if args.dry_run:
        return 0
    os.execv(sys.executable, command)
    return 0  # pragma: no cover (execv does not return)
