"""Teacher–student training with a robust loss on pseudo-labels, evaluated on held-out cases.

Usage::

    robustlabel teacher-student --studies STUDIES [--loss gce] [--q 0.7 | --beta B | --alpha A --gamma G]
                                [--mode union|robust_all|per_source] [--select best|last]
                                [--init scratch|teacher] [--precision fp32|bf16|fp16]
                                [--rounds 1] [--epochs 1000] [--tiny] [--out DIR] [...]

``STUDIES`` is a folder made by ``robustlabel import-brats``.  Its clinician-labelled (``final``)
cases are split (seeded, ``--split-seed``) into 70 % training, 10 % validation and 20 % held-out
test cases (at least one each).  Round 0 trains a teacher with CE on the training cases; it
pseudo-labels every case without a ``final`` label (into ``labels/pseudo``, or ``--pseudo-dir``);
round k trains a student from scratch with CE on the clinician labels and ``--loss`` on the
pseudo-labels; with ``--rounds K > 1`` each student is the next teacher.  The WT/TC/ET Dice of
every round on the held-out cases is printed as a Markdown table and saved to
``OUT/results.{md,csv,json}``.  Clinician ``final`` files are never written.  Interrupted runs
resume (pass ``--no-resume`` to start over).

Loss hyper-parameters default to the seed paper's BraTS values (GCE q = 0.7; β-CE β = 0.001;
SCE α = 0.01, γ = 1.0).  Protocol choices (each named under the results table):

* ``--mode``: ``union`` (default; one mean over every voxel of the shuffled batch),
  ``robust_all`` (the robust loss on clinician samples too, the seed's ``train_cv.py``) or
  ``per_source`` (1:1 clinician/pseudo batches, the two per-source means added, the seed's
  ``train_2losses.py``);
* ``--select``: the checkpoint that pseudo-labels and is scored, ``best`` (best validation
  Dice, default) or ``last`` (the last epoch, as the seed paper);
* ``--init``: a student starts from ``scratch`` (default, the paper) or from the ``teacher``;
* ``--precision``: ``fp32`` (the seed), ``bf16`` or ``fp16`` autocast on CUDA (default: bf16
  where the GPU supports it, else fp16; CPU training always runs fp32, and with an autocast
  precision the CPU's pool pseudo-labelling runs in bf16 where the CPU has it natively; the
  **Protocol:** note says what ran).

Example (real BraTS 2018 data, the paper's p = 30 % setting with GCE; a GPU is advised)::

    robustlabel import-brats MICCAI_BraTS_2018_Data_Training studies --labeled-fraction 0.3 --seed 1
    robustlabel teacher-student --studies studies --loss gce --q 0.7 --rounds 1 --out ts-gce

Several GPUs (data-parallel training, the pool sharded over the ranks; NCCL on CUDA, gloo on
CPU) or several nodes: start the same command under torchrun.  ``--batch-size`` is per rank
(the global batch is ``N`` times it; ``--batch-size 1`` on 4 GPUs is the paper's batch 4)::

    torchrun --nproc-per-node 4 -m robustlabel.cli teacher-student --studies studies --batch-size 1 --out ts-gce

Example (quick CPU run on synthetic data)::

    robustlabel synth-brats syn --cases 12 --shape 32 32 32
    robustlabel import-brats syn studies --labeled-fraction 0.5
    robustlabel teacher-student --studies studies --tiny --epochs 2 --out ts-out
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from robustlabel.engine.config import INITS, PRECISIONS, SELECTIONS
from robustlabel.losses.source_aware import SOURCE_MODES

if TYPE_CHECKING:  # for the type hints only; the rounds module is imported when the command runs
    from robustlabel.engine.rounds import RoundsConfig, RoundsResult

HELP = "teacher-student rounds: CE teacher, pseudo-labels, student with a robust loss; held-out Dice table"

#: CLI flags → loss hyper-parameter names
LOSS_FLAGS: tuple[str, ...] = ("q", "beta", "alpha", "gamma", "A")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--studies", required=True, help="studies folder (from `robustlabel import-brats`)")
    parser.add_argument("--out", default="teacher-student-out", help="output folder (default: teacher-student-out)")
    loss = parser.add_argument_group("loss on pseudo-labels")
    loss.add_argument("--loss", default="gce", help="robust loss name: gce, bce (β-CE), sce, ce, ... (default gce)")
    loss.add_argument("--q", type=float, help="GCE exponent q (paper: 0.7)")
    loss.add_argument("--beta", type=float, help="β-CE β (paper: 0.001)")
    loss.add_argument("--alpha", type=float, help="SCE α (paper: 0.01)")
    loss.add_argument("--gamma", type=float, help="SCE γ (paper: 1.0)")
    loss.add_argument("--A", type=float, help="RCE/SCE clipped log 0 (default ln 1e-4)")
    loss.add_argument("--pseudo-weight", type=float, default=1.0, help="weight of the pseudo-label term (default 1)")
    loss.add_argument("--mode", choices=SOURCE_MODES, default=SOURCE_MODES[0],
                      help="how clinician and pseudo-label terms are weighted (default union)")
    rounds = parser.add_argument_group("rounds and split")
    rounds.add_argument("--rounds", type=int, default=1, help="student rounds (default 1)")
    rounds.add_argument("--val-fraction", type=float, default=0.1, help="validation share of final cases (default 0.1)")
    rounds.add_argument("--test-fraction", type=float, default=0.2, help="held-out share of final cases (default 0.2)")
    rounds.add_argument("--split-seed", type=int, default=0, help="seed of the split (default 0)")
    rounds.add_argument("--pseudo-dir", help="where pseudo-labels go (default STUDIES/labels/pseudo)")
    rounds.add_argument("--save-confidence", action="store_true", help="also store voxel-confidence maps")
    rounds.add_argument("--select", choices=SELECTIONS, default="best",
                        help="checkpoint that pseudo-labels and is scored: best validation Dice (default) or last epoch")
    rounds.add_argument("--init", choices=INITS, default="scratch",
                        help="student initialisation: scratch (default, the paper) or the teacher's weights")
    training = parser.add_argument_group("training")
    training.add_argument("--tiny", action="store_true", help="tiny TransBTS with 32³ crops (tests, CPU demos)")
    training.add_argument("--epochs", type=int, default=1000, help="epochs per round (default 1000, as the paper)")
    training.add_argument("--batch-size", type=int, default=4,
                          help="crops per step and rank (default 4; under torchrun the global batch is N times it)")
    training.add_argument("--lr", type=float, default=2e-4, help="initial learning rate (default 2e-4)")
    training.add_argument("--roi", type=int, nargs=3, metavar=("X", "Y", "Z"), help="crop size (default: network img_size)")
    training.add_argument("--val-interval", type=int, default=10, help="validate every N epochs (default 10)")
    training.add_argument("--sw-batch-size", type=int, default=4, help="sliding-window batch (default 4)")
    training.add_argument("--num-workers", type=int, default=4, help="data-loader workers (default 4)")
    training.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    training.add_argument("--device", default="auto", help="auto | cpu | cuda[:i] (default auto)")
    training.add_argument("--precision", choices=PRECISIONS,
                          help="fp32 | bf16 | fp16 on CUDA (default: bf16 where supported, else fp16); CPU training: "
                               "fp32, CPU pool pseudo-labelling: bf16 where native unless fp32")
    training.add_argument("--no-amp", action="store_true",
                          help="float32 everywhere, the CPU's pool included (same as --precision fp32)")
    training.add_argument("--no-resume", action="store_true", help="start every round over")
    training.add_argument("--no-progress", action="store_true", help="hide progress bars")


def loss_params(args: argparse.Namespace) -> dict[str, float] | None:
    """The loss hyper-parameters given on the command line (``None``: the paper's defaults)."""
    given = {name: getattr(args, name) for name in LOSS_FLAGS if getattr(args, name) is not None}
    return given or None


def precision_fields(args: argparse.Namespace) -> dict:
    """``amp``/``amp_dtype`` of ``--precision`` (``--no-amp`` = fp32; neither: autocast, dtype auto)."""
    from robustlabel.engine.config import precision_settings

    if args.no_amp and args.precision not in (None, "fp32"):
        raise SystemExit(f"teacher-student: --no-amp contradicts --precision {args.precision}")
    if args.no_amp or args.precision == "fp32":
        return precision_settings("fp32")
    return precision_settings(args.precision) if args.precision else {"amp": True, "amp_dtype": "auto"}


def rounds_config(args: argparse.Namespace) -> RoundsConfig:
    """The :class:`~robustlabel.engine.rounds.RoundsConfig` of parsed teacher-student options.

    Raises:
        ValueError: a setting the engine refuses (e.g. ``--rounds 0``).
        SystemExit: ``--no-amp`` with ``--precision bf16|fp16``.
    """
    from robustlabel.engine.config import TrainConfig
    from robustlabel.engine.rounds import RoundsConfig
    from robustlabel.networks import TINY_TRANSBTS

    train_config = TrainConfig(
        network=dict(TINY_TRANSBTS) if args.tiny else {},
        roi_size=tuple(args.roi) if args.roi else None,
        batch_size=args.batch_size, epochs=args.epochs, lr=args.lr,
        pseudo_loss=args.loss, pseudo_params=loss_params(args), pseudo_weight=args.pseudo_weight,
        val_interval=args.val_interval, sw_batch_size=args.sw_batch_size, num_workers=args.num_workers,
        seed=args.seed, device=args.device, mode=args.mode, **precision_fields(args),
    )
    return RoundsConfig(
        train=train_config, rounds=args.rounds, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
        split_seed=args.split_seed, pseudo_dir=args.pseudo_dir, save_confidence=args.save_confidence,
        select=args.select, init=args.init,
    )


def teacher_student(args: argparse.Namespace) -> RoundsResult:
    """Run :func:`~robustlabel.engine.rounds.run_teacher_student` with parsed teacher-student options
    (this rank's share in a ``torchrun`` job); progress events go to stderr unless ``--no-progress``.

    Raises:
        SystemExit: a bad setting (the engine's ``ValueError``), naming the command.
    """
    from robustlabel.engine.rounds import run_teacher_student

    try:
        return run_teacher_student(
            args.studies, args.out, rounds_config(args), resume=not args.no_resume, progress=not args.no_progress,
            on_event=None if args.no_progress else print_event,
        )
    except ValueError as exc:
        raise SystemExit(f"teacher-student: {exc}") from exc


def print_result(result: RoundsResult) -> None:
    """Print the held-out Dice table of a :class:`~robustlabel.engine.rounds.RoundsResult` and where it is saved."""
    print(result.markdown)
    print(f"\nresults: {result.out_dir / 'results.md'} (.csv, .json)")


def run(args: argparse.Namespace) -> int:
    from robustlabel.engine.distributed import run_as_rank

    return run_as_rank(_rounds, args, args.device)


def _rounds(args: argparse.Namespace, report: bool) -> int:
    """Run the rounds (every rank of a job); print the table when ``report`` (rank 0)."""
    result = teacher_student(args)
    if report:
        print_result(result)
    return 0


def print_event(event: dict) -> None:
    """One progress line per orchestration event on stderr: ``[round k] stage: key=value, ...``."""
    details = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("stage", "round"))
    print(f"[round {event['round']}] {event['stage']}: {details}", file=sys.stderr, flush=True)
