"""The one GitHub-Markdown table writer of robustlabel.

It sits at the bottom of the package (no imports from it) so that every layer can use it: the
teacher–student rounds in ``engine``, the paper tables in ``experiments.tables`` and the
benchmark scripts.  A table is a header, a separator line that sets each column's alignment,
and one line per row::

    | loss | ms | ratio |
    |:--|--:|--:|
    | GCE | 1.234 | 0.98 |
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ALIGNMENTS", "markdown_table"]

#: separator cell per alignment code: ``"l"`` left, ``"r"`` right, ``"-"`` the renderer's default (left)
ALIGNMENTS: dict[str, str] = {"l": ":--", "r": "--:", "-": "---"}


def _cell(value: object) -> str:
    """A cell's text: ``str(value)`` with ``|`` escaped and line breaks replaced by spaces."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[object], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """The lines of a Markdown table, joined by ``"\\n"`` (no trailing newline).

    Args:
        header: the column titles.
        rows: one sequence of cells per row, as many cells as ``header``; cells are written with
            ``str`` (format numbers before passing them, e.g. with
            :func:`robustlabel.metrics.statistics.format_mean_std`).
        align: one code of :data:`ALIGNMENTS` per column, e.g. ``"lrr"``; ``None``: all ``"-"``.

    Raises:
        ValueError: a row or ``align`` does not have one entry per column, or an unknown
            alignment code.
    """
    width = len(header)
    codes = "-" * width if align is None else align
    if len(codes) != width:
        raise ValueError(f"align has {len(codes)} codes for {width} columns: {align!r}")
    unknown = sorted(set(codes) - set(ALIGNMENTS))
    if unknown:
        raise ValueError(f"unknown alignment codes {unknown} (expected {sorted(ALIGNMENTS)})")
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join(ALIGNMENTS[c] for c in codes) + "|"]
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"row {i} has {len(row)} cells for {width} columns: {list(row)!r}")
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)
