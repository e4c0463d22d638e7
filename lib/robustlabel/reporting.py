"""Results, tables and figures of the paper-reproduction scripts.

Every script in ``scripts/`` reports through this module, so all tables look alike:

* :class:`Measurement` — one number of one run: ``(row, column, value, repeat)``, e.g.
  ``("GCE", "accuracy", 77.1, 0)`` or ``("BCE", "WT 30%", 0.851, 2)``.
* :func:`summarize` — groups the measurements of each ``(row, column)`` cell over repeats:

  .. math:: \\bar x = \\frac1n\\sum_i x_i, \\qquad s = \\sqrt{\\frac{1}{n-1}\\sum_i (x_i-\\bar x)^2}

  (the sample standard deviation, ``ddof = 1``; undefined for ``n = 1``), next to the paper's
  value for that cell.
* :func:`write_report` — writes ``<stem>.csv``, ``<stem>.json`` and ``<stem>.md`` (ours as
  ``mean ± std`` beside the paper's value), with the machine it ran on and the ``--quick`` flag.
* :func:`plot_panels` / :func:`plot_ours_vs_paper` — grouped bar or line figures;
  :func:`plot_decision_regions` — 2-D classifier panels (toy figures).
* :class:`ResultsStore` — the resumable JSON of finished runs that lets a script skip rows
  and seeds it already has.

Every file is written atomically (:func:`robustlabel.data.nifti.write_bytes_atomic`: a
temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robustlabel.data.nifti import write_bytes_atomic, write_json_atomic
from robustlabel.machine import describe_machine, resolve_device

#: a paper value: a number, or ``(mean, std)`` where the paper gives both
PaperValue = float | tuple[float, float]


# --------------------------------------------------------------------------- atomic files
def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """UTF-8 text through a temporary file in the same folder and ``os.replace``."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Pretty-printed JSON (NumPy scalars/arrays and paths allowed), written atomically."""
    return write_json_atomic(path, obj, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Save a matplotlib figure atomically (format from the suffix of ``path``) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return write_bytes_atomic(path, buffer.getvalue())


# --------------------------------------------------------------------------- command line
def prepare_out_dir(
    out: Path, *, overwrite: bool, remove: Sequence[str] = (), threads: int | None = None
) -> Path:
    """Start of every paper script: torch's CPU thread count, ``out`` created, and with
    ``overwrite`` the named entries of ``out`` (files or folders; finished results, run folders)
    deleted so the experiment starts over instead of resuming."""
    import shutil

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
    """argparse ``type`` for ``"A,B"`` (e.g. SCE's ``ALPHA,GAMMA``): ``(float(A), float(B))``."""
    import argparse

    try:
        first, second = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected two numbers as A,B (e.g. 0.1,0.01), got {text!r}") from exc
    return first, second


# --------------------------------------------------------------------------- environment
def environment_info(device: Any = None) -> dict[str, Any]:
    """Where and when a result was computed: :func:`robustlabel.machine.describe_machine` plus
    the full UTC time, Python, platform, MONAI and the CUDA device name.

    Args:
        device: the ``torch.device`` (or its string) the run used; ``None``/``"auto"`` records
            the default choice (CUDA when available).
    """
    import torch

    machine = describe_machine("cpu")
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": machine["cpu"],
        "cpu_count": machine["cpu_count"],
        "torch": machine["torch"],
        "cuda_available": torch.cuda.is_available(),
    }
    try:
        import monai

        info["monai"] = monai.__version__
    except ImportError:  # pragma: no cover - MONAI is a hard dependency
        info["monai"] = None
    device = resolve_device("auto" if device is None else device)
    info["device"] = str(device)
    if device.type == "cuda" and torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(device)
        info["cuda_version"] = torch.version.cuda
        info["accelerator"] = info["cuda_device"]
    else:
        info["accelerator"] = f"CPU: {info['cpu']} ({info['cpu_count']} logical cores), no GPU used"
    return info


# --------------------------------------------------------------------------- measurements
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
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (``ddof = 1``); ``None`` for fewer than two repeats."""
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else None

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


def summarize(
    measurements: Iterable[Measurement],
    paper: Mapping[tuple[str, str], PaperValue] | None = None,
    rows: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
) -> list[CellSummary]:
    """One :class:`CellSummary` per ``(row, column)``, rows outer, in the given order.

    ``rows`` / ``columns`` fix the order *and* the completeness of the table: a listed cell
    without any measurement appears with ``n = 0`` so that a missing result is visible.
    Values that are not finite raise a ``ValueError`` naming the cell.
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


def format_mean_std(mean: float | None, std: float | None, n: int | None = None, decimals: int = 2) -> str:
    """``"77.12 ± 0.31"``; ``"77.12 (n=1)"`` for a single repeat; ``"—"`` for no value."""
    if mean is None:
        return "—"
    text = f"{mean:.{decimals}f}"
    if std is not None:
        return f"{text} ± {std:.{decimals}f}"
    return f"{text} (n=1)" if n == 1 else text


def _grid(cells: Sequence[CellSummary]) -> tuple[list[str], list[str], dict[tuple[str, str], CellSummary]]:
    rows = list(dict.fromkeys(c.row for c in cells))
    columns = list(dict.fromkeys(c.column for c in cells))
    return rows, columns, {(c.row, c.column): c for c in cells}


def markdown_table(cells: Sequence[CellSummary], decimals: int = 2, row_header: str = "Method") -> str:
    """A GitHub Markdown table: per column, ``<column> (ours)`` as mean ± std and ``<column> (paper)``."""
    rows, columns, by_key = _grid(cells)
    has_paper = {col: any(by_key[(r, col)].paper is not None for r in rows if (r, col) in by_key) for col in columns}
    header = [row_header]
    for col in columns:
        header.append(f"{col} (ours)")
        if has_paper[col]:
            header.append(f"{col} (paper)")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":--"] + ["--:"] * (len(header) - 1)) + "|"]
    for row in rows:
        line = [row]
        for col in columns:
            cell = by_key.get((row, col))
            line.append(format_mean_std(cell.mean, cell.std, cell.n, decimals) if cell else "—")
            if has_paper[col]:
                line.append(format_mean_std(cell.paper, cell.paper_std, None, decimals) if cell else "—")
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def _csv_text(cells: Sequence[CellSummary]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["row", "column", "mean", "std", "n", "values", "paper", "paper_std"])
    for c in cells:
        writer.writerow(
            [c.row, c.column, _blank(c.mean), _blank(c.std), c.n, ";".join(repr(v) for v in c.values),
             _blank(c.paper), _blank(c.paper_std)]
        )
    return buffer.getvalue()


def _blank(value: float | None) -> str:
    return "" if value is None else repr(float(value))


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
        title: heading of the Markdown file.
        measurements: every per-repeat number (all of them go to the JSON).
        paper: the paper's value per ``(row, column)``: a number or ``(mean, std)``.
        rows, columns: order and completeness of the table (see :func:`summarize`).
        quick: whether the run used ``--quick`` settings (said loudly in the Markdown).
        device: the device the numbers were computed on (for :func:`environment_info`).
        environment: a ready :func:`environment_info` dict (overrides ``device``).
        unit: e.g. ``"%"``; shown under the table.
        paper_source: where the paper's values come from, e.g. ``"Cui et al., Table 1"``.
        notes: extra Markdown bullet points (settings, data, caveats).
        extra: anything else for the JSON (config, per-run records, ...).
    """
    out_dir = Path(out_dir)
    measurements = list(measurements)
    cells = summarize(measurements, paper, rows, columns)
    env = dict(environment) if environment is not None else environment_info(device)
    mode = "QUICK (reduced settings, numbers are NOT comparable to the paper)" if quick else "full"
    repeats = sorted({str(m.repeat) for m in measurements})

    md = [f"# {title}", ""]
    md.append(markdown_table(cells, decimals, row_header))
    md.append("")
    legend = "ours: mean ± sample std (ddof = 1) over repeats; `(n=1)`: a single repeat; `—`: no value"
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
    files = ReportFiles(
        csv=atomic_write_text(out_dir / f"{stem}.csv", _csv_text(cells)),
        json=atomic_write_json(out_dir / f"{stem}.json", payload),
        markdown=atomic_write_text(out_dir / f"{stem}.md", "\n".join(md)),
        cells=tuple(cells),
    )
    return files


# --------------------------------------------------------------------------- resumable runs
class ResultsStore:
    """A JSON file of finished runs, ``{"config": {...}, "runs": {key: record}}``.

    Scripts call :meth:`get` before a run (skip it when present) and :meth:`put` after it;
    each :meth:`put` rewrites the file atomically, so an interrupted script loses at most the
    run in progress.  ``config`` holds every setting that changes the numbers: opening an
    existing store with a different ``config`` raises a ``ValueError`` instead of mixing
    results of different settings (use another output folder, or ``overwrite=True``).
    """

    def __init__(self, path: str | os.PathLike, config: Mapping[str, Any], overwrite: bool = False) -> None:
        self.path = Path(path)
        self.config = json.loads(json.dumps(dict(config), default=_json_default))
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
        return self.runs.get(key)

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        self.runs[key] = json.loads(json.dumps(dict(record), default=_json_default))
        atomic_write_json(self.path, {"config": self.config, "runs": self.runs})


# --------------------------------------------------------------------------- figures
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class PlotPanel:
    """One axes of :func:`plot_panels`: ``series[name][i]`` is the value at ``categories[i]``.

    ``None`` values are skipped; ``errors`` (same layout) draws ± error bars.
    """

    title: str
    categories: Sequence[str]
    series: Mapping[str, Sequence[float | None]]
    errors: Mapping[str, Sequence[float | None]] = field(default_factory=dict)
    ylabel: str = ""
    xlabel: str = ""


def plot_panels(
    path: str | os.PathLike, panels: Sequence[PlotPanel], kind: str = "bar", suptitle: str = "", panel_size: float = 4.5
) -> Path:
    """Grouped bars (``kind="bar"``) or lines with markers (``kind="line"``), one panel each, side by side."""
    if kind not in ("bar", "line"):
        raise ValueError(f"kind must be 'bar' or 'line', got {kind!r}")
    if not panels:
        raise ValueError("plot_panels needs at least one panel")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_size * len(panels) + 0.5, 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        x = np.arange(len(panel.categories), dtype=float)
        names = list(panel.series)
        width = 0.8 / max(len(names), 1)
        for i, name in enumerate(names):
            values = panel.series[name]
            if len(values) != len(panel.categories):
                raise ValueError(
                    f"panel {panel.title!r}: series {name!r} has {len(values)} values for {len(panel.categories)} categories"
                )
            y = np.array([np.nan if v is None else float(v) for v in values])
            err = panel.errors.get(name)
            yerr = None if err is None or all(e is None for e in err) else np.array(
                [0.0 if e is None else float(e) for e in err])
            if kind == "bar":
                ax.bar(x + (i - (len(names) - 1) / 2) * width, y, width, yerr=yerr, capsize=3, label=name)
            else:
                ax.errorbar(x, y, yerr=yerr, marker="o", capsize=3, label=name)
        ax.set_xticks(x, list(panel.categories), rotation=30 if kind == "bar" else 0, ha="right" if kind == "bar" else "center")
        ax.set_title(panel.title)
        ax.set_ylabel(panel.ylabel)
        ax.set_xlabel(panel.xlabel)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="small")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_ours_vs_paper(
    path: str | os.PathLike, cells: Sequence[CellSummary], kind: str = "bar", ylabel: str = "", suptitle: str = ""
) -> Path:
    """One panel per column of a summarized table: rows on the x axis, ours (± std) beside the paper."""
    rows, columns, by_key = _grid(cells)
    panels = []
    for col in columns:
        mine = [by_key[(r, col)] if (r, col) in by_key else None for r in rows]
        series: dict[str, list[float | None]] = {"ours": [c.mean if c else None for c in mine]}
        errors: dict[str, list[float | None]] = {"ours": [c.std if c else None for c in mine]}
        if any(c is not None and c.paper is not None for c in mine):
            series["paper"] = [c.paper if c else None for c in mine]
            errors["paper"] = [c.paper_std if c else None for c in mine]
        panels.append(PlotPanel(col, rows, series, errors, ylabel=ylabel))
    return plot_panels(path, panels, kind=kind, suptitle=suptitle)


@dataclass(frozen=True)
class DecisionPanel:
    """One panel of :func:`plot_decision_regions`.

    ``predict`` maps an ``(M, 2)`` float array of points to ``(M,)`` integer classes; ``None``
    draws the points only (a data panel).  ``highlight`` marks points (e.g. mislabelled ones).
    """

    title: str
    points: np.ndarray
    labels: np.ndarray
    predict: Callable[[np.ndarray], np.ndarray] | None = None
    highlight: np.ndarray | None = None


def plot_decision_regions(
    path: str | os.PathLike,
    panels: Sequence[DecisionPanel],
    n_classes: int,
    resolution: int = 300,
    margin: float = 0.5,
    class_names: Sequence[str] | None = None,
    suptitle: str = "",
) -> Path:
    """Side-by-side panels of 2-D points coloured by label over the classifier's decision regions.

    All panels share one extent (the bounding box of every panel's points, plus ``margin``).
    """
    if not panels:
        raise ValueError("plot_decision_regions needs at least one panel")
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D

    colours = plt.get_cmap("tab10").colors[:n_classes]
    cmap = ListedColormap(colours)
    everything = np.concatenate([np.asarray(p.points, dtype=float) for p in panels])
    lo, hi = everything.min(0) - margin, everything.max(0) + margin
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel.predict is not None:
            regions = np.asarray(panel.predict(grid)).reshape(gx.shape)
            ax.contourf(gx, gy, regions, levels=np.arange(n_classes + 1) - 0.5, cmap=cmap, alpha=0.25)
            ax.contour(gx, gy, regions, levels=np.arange(n_classes) + 0.5, colors="k", linewidths=0.8)
        pts, lab = np.asarray(panel.points, dtype=float), np.asarray(panel.labels)
        ax.scatter(pts[:, 0], pts[:, 1], c=lab, cmap=cmap, vmin=-0.5, vmax=n_classes - 0.5, s=8, edgecolors="none")
        if panel.highlight is not None and np.any(panel.highlight):
            h = np.asarray(panel.highlight, dtype=bool)
            ax.scatter(pts[h, 0], pts[h, 1], facecolors="none", edgecolors="k", s=22, linewidths=0.6)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal")
        ax.set_title(panel.title, fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
    names = class_names or [f"class {k}" for k in range(n_classes)]
    handles = [Line2D([], [], marker="o", linestyle="", color=colours[k], label=names[k]) for k in range(n_classes)]
    if any(p.highlight is not None and np.any(p.highlight) for p in panels):
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color="k", label="mislabelled"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return save_figure(fig, path)
