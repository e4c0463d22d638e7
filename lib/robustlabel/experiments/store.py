"""Resumable results of the paper reproductions: a JSON file of finished runs.

A script asks the store before each run (:meth:`ResultsStore.get`: skip the run when present)
and records it after (:meth:`ResultsStore.put`, an atomic rewrite of the file through
:func:`robustlabel.atomic.write_json_atomic`), so an interrupted script loses at most the run in
progress.  :func:`rank_zero_store` is the store of a job of several ranks
(:mod:`robustlabel.engine.distributed`): every rank keeps the records, so every rank makes the
same skip/run decisions, and only rank 0 writes the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robustlabel.atomic import json_default, write_json_atomic
from robustlabel.engine.distributed import current

__all__ = ["ResultsStore", "rank_zero_store"]


def _plain(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` as plain JSON values (NumPy numbers → Python numbers, paths → strings)."""
    return json.loads(json.dumps(dict(obj), default=json_default))


class ResultsStore:
    """A JSON file of finished runs, ``{"config": {...}, "runs": {key: record}}``.

    ``config`` holds every setting that changes the numbers: opening an existing store with a
    different ``config`` raises instead of mixing results of different settings (use another
    output folder, or ``overwrite=True``).

    Args:
        path: the JSON file (created on the first :meth:`put`).
        config: the settings of the runs, JSON-encodable (NumPy values and paths allowed).
        overwrite: ignore an existing file (it is replaced on the first :meth:`put`).
        write: write the file on :meth:`put`; ``False`` keeps the records in memory only (the
            ranks other than 0 of a distributed job, see :func:`rank_zero_store`).

    Raises:
        ValueError: the existing file is not a store, or holds results for other settings (the
            message names the changed settings).
    """

    def __init__(
        self, path: str | os.PathLike, config: Mapping[str, Any], overwrite: bool = False, write: bool = True
    ) -> None:
        self.path = Path(path)
        self.write = bool(write)
        self.config = _plain(config)
        self.runs: dict[str, dict[str, Any]] = {}
        if self.path.exists() and not overwrite:
            try:
                stored = json.loads(self.path.read_text())
                stored_config, runs = stored["config"], stored["runs"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{self.path}: not a results file written by ResultsStore ({exc})") from exc
            if stored_config != self.config:
                changed = sorted(
                    k for k in set(stored_config) | set(self.config) if stored_config.get(k) != self.config.get(k)
                )
                raise ValueError(
                    f"{self.path} holds results for different settings (changed: {', '.join(changed)}); "
                    "use a new output folder or --overwrite"
                )
            self.runs = dict(runs)

    def __contains__(self, key: str) -> bool:
        return key in self.runs

    def get(self, key: str) -> dict[str, Any] | None:
        """The record of run ``key``, or ``None`` when it has not finished yet."""
        return self.runs.get(key)

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        """Keep ``record`` as run ``key`` and, when :attr:`write`, rewrite the file atomically."""
        self.runs[key] = _plain(record)
        if self.write:
            write_json_atomic(self.path, {"config": self.config, "runs": self.runs})


def rank_zero_store(path: str | os.PathLike, config: Mapping[str, Any], overwrite: bool = False) -> ResultsStore:
    """The :class:`ResultsStore` of a script that may run under ``torchrun``: every rank opens it
    and keeps the records; only rank 0 (``current().is_main``) writes (arguments as
    :class:`ResultsStore`)."""
    return ResultsStore(path, config, overwrite=overwrite, write=current().is_main)
