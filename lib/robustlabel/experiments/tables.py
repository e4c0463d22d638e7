"""The tables of the paper reproductions: measurements in, CSV + JSON + Markdown out.

Every experiment reports through this module, so all tables look alike:

* :class:`Measurement` - one number of one run: ``(row, column, value, repeat)``, e.g.
  ``("GCE", "accuracy", 77.1, 0)`` or ``("BCE", "WT 30%", 0.851, 2)``.
* :func:`table_cells` - groups the measurements of each ``(row, column)`` cell over repeats
  into a :class:`CellSummary`: mean and sample standard deviation
  (:func:`robustlabel.metrics.statistics.mean_std`, ``ddof = 1``, undefined for ``n = 1``)
  next to the paper's value for that cell.
* :func:`cells_markdown` - ours as ``mean ± std`` beside the paper's value, written with
  :func:`robustlabel.markdown.markdown_table`.
* :func:`write_report` - writes ``<stem>.csv``, ``<stem>.json`` and ``<stem>.md`` atomically
  (:mod:`robustlabel.atomic`), with the machine it ran on
  (:func:`robustlabel.machine.environment_info`) and the ``--quick`` flag.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from robustlabel.atomic import write_json_atomic, write_text_atomic
from robustlabel.machine import environment_info
from robustlabel.markdown import markdown_table
from robustlabel.metrics.statistics import format_mean_std, mean_std

__all__ = [
    "MISSING",
    "CellSummary",
    "Measurement",
    "PaperValue",
    "ReportFiles",
    "cells_csv",
    "cells_markdown",
    "table_cells",
    "table_grid",
    "write_report",
]

#: a paper value: a number, or ``(mean, std)`` where the paper gives both
PaperValue = float | tuple[float, float]
#: the text of a cell without a value
MISSING = "—"


@dataclass(frozen=True)
class Measurement:
    """One number of one run: ``value`` of ``column`` for method ``row`` in repeat ``repeat``."""

    row: str
    column: str
    value: float
    repeat: int | str = 0


@dataclass(frozen=True)
class CellSummary:
    """The repeats of one ``(row, column)`` cell and the paper's value for it."""

    row: str
    column: str
    values: tuple[float, ...]
    paper: float | None = None
    paper_std: float | None = None

    @property
    def stats(self) -> dict[str, float]:
        """:func:`~robustlabel.metrics.statistics.mean_std` of :attr:`values` (NaN where undefined)."""
        return mean_std(self.values)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        """Mean of the repeats; ``None`` without any."""
        return _none_if_nan(self.stats["mean"])

    @property
    def std(self) -> float | None:
        """Sample standard deviation (``ddof = 1``); ``None`` for fewer than two repeats."""
        return _none_if_nan(self.stats["std"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "column": self.column,
            "mean": self.mean,
            "std": self.std,
            "n": self.n,
            "values": list(self.values),
            "paper": self.paper,
            "paper_std": self.paper_std,
        }


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def _paper_pair(value: PaperValue | None) -> tuple[float | None, float | None]:
    if value is None:
        return None, None
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"a paper value is a number or (mean, std), got {value!r}")
        return float(value[0]), float(value[1])
    return float(value), None


def _ordered(seen: Iterable[str], order: Sequence[str] | None) -> list[str]:
    seen = list(dict.fromkeys(seen))
    if order is None:
        return seen
    return list(order) + [name for name in seen if name not in order]


def table_cells(
    measurements: Iterable[Measurement],
    paper: Mapping[tuple[str, str], PaperValue] | None = None,
    rows: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
) -> list[CellSummary]:
    """One :class:`CellSummary` per ``(row, column)``, rows outer, in the given order.

    Args:
        measurements: every per-repeat number.
        paper: the paper's value per ``(row, column)``: a number or ``(mean, std)``.
        rows, columns: fix the order *and* the completeness of the table: a listed cell
            without any measurement appears with ``n = 0`` so that a missing result is visible.
            Unlisted rows/columns follow in order of appearance.

    Raises:
        ValueError: a value is not finite (the message names the cell and repeat), or a paper
            value is neither a number nor a pair.
    """
    measurements = list(measurements)
    paper = dict(paper or {})
    grouped: dict[tuple[str, str], list[float]] = {}
    for m in measurements:
        value = float(m.value)
        if not math.isfinite(value):
            raise ValueError(f"measurement ({m.row!r}, {m.column!r}, repeat {m.repeat!r}) is not finite: {m.value}")
        grouped.setdefault((m.row, m.column), []).append(value)
    row_names = _ordered([m.row for m in measurements] + [r for r, _ in paper], rows)
    column_names = _ordered([m.column for m in measurements] + [c for _, c in paper], columns)
    cells = []
    for row in row_names:
        for column in column_names:
            values = grouped.get((row, column), [])
            if not values and (row, column) not in paper and (rows is None or columns is None):
                continue
            ref, ref_std = _paper_pair(paper.get((row, column)))
            cells.append(CellSummary(row, column, tuple(values), ref, ref_std))
    return cells


def table_grid(cells: Sequence[CellSummary]) -> tuple[list[str], list[str], dict[tuple[str, str], CellSummary]]:
    """``(rows, columns, {(row, column): cell})`` of a :func:`table_cells` result, in its order."""
    rows = list(dict.fromkeys(c.row for c in cells))
    columns = list(dict.fromkeys(c.column for c in cells))
    return rows, columns, {(c.row, c.column): c for c in cells}


def cells_markdown(cells: Sequence[CellSummary], decimals: int = 2, row_header: str = "Method") -> str:
    """A Markdown table: per column, ``<column> (ours)`` as mean ± std (``(n=1)`` for a single
    repeat, :data:`MISSING` for none) and, where the paper has values, ``<column> (paper)``."""
    rows, columns, by_key = table_grid(cells)
    has_paper = {col: any(by_key[(r, col)].paper is not None for r in rows if (r, col) in by_key) for col in columns}
    header = [row_header]
    for col in columns:
        header.append(f"{col} (ours)")
        if has_paper[col]:
            header.append(f"{col} (paper)")
    lines = []
    for row in rows:
        line = [row]
        for col in columns:
            cell = by_key.get((row, col))
            line.append(format_mean_std(cell.stats, decimals, with_n="single", missing=MISSING) if cell else MISSING)
            if has_paper[col]:
                paper = {"mean": cell.paper, "std": cell.paper_std} if cell else None
                line.append(format_mean_std(paper, decimals, missing=MISSING))
        lines.append(line)
    return markdown_table(header, lines, align="l" + "r" * (len(header) - 1))


def _blank(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def cells_csv(cells: Sequence[CellSummary]) -> str:
    """CSV text, one line per cell: ``row, column, mean, std, n, values`` (``;``-joined), ``paper,
    paper_std``; undefined numbers are empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["row", "column", "mean", "std", "n", "values", "paper", "paper_std"])
    for c in cells:
        writer.writerow(
            [c.row, c.column, _blank(c.mean), _blank(c.std), c.n, ";".join(repr(v) for v in c.values),
             _blank(c.paper), _blank(c.paper_std)]
        )
    return buffer.getvalue()


@dataclass(frozen=True)
class ReportFiles:
    """Paths written by :func:`write_report`."""

    csv: Path
    json: Path
    markdown: Path
    cells: tuple[CellSummary, ...] = field(repr=False, default=())


def write_report(
    out_dir: str | os.PathLike,
    stem: str,
    *,
    title: str,
    measurements: Iterable[Measurement],
    paper: Mapping[tuple[str, str], PaperValue] | None = None,
    rows: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    quick: bool = False,
    device: Any = None,
    environment: Mapping[str, Any] | None = None,
    decimals: int = 2,
    row_header: str = "Method",
    unit: str = "",
    paper_source: str = "",
    notes: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> ReportFiles:
    """Write ``<stem>.csv``, ``<stem>.json`` and ``<stem>.md`` under ``out_dir``.

    Args:
        out_dir: the folder (created when missing).
        stem: the file name without suffix.
        title: heading of the Markdown file.
        measurements: every per-repeat number (all of them go to the JSON).
        paper: the paper's value per ``(row, column)``: a number or ``(mean, std)``.
        rows, columns: order and completeness of the table (see :func:`table_cells`).
        quick: whether the run used ``--quick`` settings (said loudly in the Markdown).
        device: the device the numbers were computed on (for :func:`~robustlabel.machine.environment_info`).
        environment: a ready :func:`~robustlabel.machine.environment_info` dict (overrides ``device``).
        decimals: digits after the point in the Markdown table.
        row_header: title of the first column.
        unit: e.g. ``"%"``; shown under the table.
        paper_source: where the paper's values come from, e.g. ``"Cui et al., Table 1"``.
        notes: extra Markdown bullet points (settings, data, caveats).
        extra: anything else for the JSON (config, per-run records, ...).

    Raises:
        ValueError: see :func:`table_cells`.
    """
    out_dir = Path(out_dir)
    measurements = list(measurements)
    cells = table_cells(measurements, paper, rows, columns)
    env = dict(environment) if environment is not None else environment_info(device)
    mode = "QUICK (reduced settings, numbers are NOT comparable to the paper)" if quick else "full"
    repeats = sorted({str(m.repeat) for m in measurements})

    md = [f"# {title}", ""]
    md.append(cells_markdown(cells, decimals, row_header))
    md.append("")
    legend = f"ours: mean ± sample std (ddof = 1) over repeats; `(n=1)`: a single repeat; `{MISSING}`: no value"
    if paper_source:
        legend += f"; paper: {paper_source}"
    if unit:
        legend += f"; unit: {unit}"
    md += [f"_{legend}._", ""]
    md.append(f"- **Mode:** {mode}")
    md.append(f"- **Repeats / seeds:** {', '.join(repeats) if repeats else 'none'}")
    md.append(f"- **Ran on:** {env.get('accelerator')} — device `{env.get('device')}`")
    md.append(
        f"- **Software:** torch {env.get('torch')}, MONAI {env.get('monai')}, Python {env.get('python')}, {env.get('platform')}"
    )
    md.append(f"- **Date:** {env.get('date')}")
    md += [f"- {note}" for note in notes]
    md.append("")

    payload = {
        "title": title,
        "quick": bool(quick),
        "unit": unit,
        "paper_source": paper_source,
        "environment": env,
        "notes": list(notes),
        "cells": [c.as_dict() for c in cells],
        "measurements": [asdict(m) for m in measurements],
        "extra": dict(extra or {}),
    }
    return ReportFiles(
        csv=write_text_atomic(out_dir / f"{stem}.csv", cells_csv(cells)),
        json=write_json_atomic(out_dir / f"{stem}.json", payload),
        markdown=write_text_atomic(out_dir / f"{stem}.md", "\n".join(md)),
        cells=tuple(cells),
    )
