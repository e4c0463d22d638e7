"""Command-line helpers shared by every paper-reproduction script (``scripts/*.py``).

* :func:`prepare_out_dir` - the start of a run: torch's CPU thread count, the output folder,
  and with ``--overwrite`` the finished results removed so the run starts over;
* :func:`parse_float_pair` - argparse ``type`` for ``"A,B"`` options such as SCE's ``ALPHA,GAMMA``.

(The options of the two PASCAL VOC scripts live in :mod:`robustlabel.experiments.voc_cli`.)
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

__all__ = ["parse_float_pair", "prepare_out_dir"]


def prepare_out_dir(
    out: Path, *, overwrite: bool, remove: Sequence[str] = (), threads: int | None = None
) -> Path:
    """Start of every paper script: torch's CPU thread count, ``out`` created, and with
    ``overwrite`` the named entries of ``out`` (files or folders; finished results, run folders)
    deleted so the experiment starts over instead of resuming.

    Args:
        out: the output folder.
        overwrite: delete the entries ``remove`` of ``out``.
        remove: names inside ``out``.
        threads: ``torch.set_num_threads`` (``None``: leave it).
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for name in remove:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
    return out


def parse_float_pair(text: str) -> tuple[float, float]:
    """argparse ``type`` for ``"A,B"`` (e.g. SCE's ``ALPHA,GAMMA``): ``(float(A), float(B))``.

    Raises:
        argparse.ArgumentTypeError: not exactly two numbers separated by a comma.
    """
    try:
        first, second = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected two numbers as A,B (e.g. 0.1,0.01), got {text!r}") from exc
    return first, second
