"""The figures of the paper reproductions (matplotlib, ``Agg`` backend, written atomically).

* :func:`plot_panels` - grouped bars (``kind="bar"``) or lines (``kind="line"``), one
  :class:`PlotPanel` per axes, side by side, with ± error bars;
* :func:`plot_ours_vs_paper` - one panel per column of a :func:`robustlabel.experiments.tables.table_cells`
  table: ours (± std) beside the paper;
* :func:`plot_decision_regions` - 2-D classifier panels (:class:`DecisionPanel`) over their
  decision regions (the toy figures);
* :func:`pyplot` - ``matplotlib.pyplot`` on the ``Agg`` backend, for an experiment's own figures;
* :func:`save_figure` - any figure, saved through :func:`robustlabel.atomic.write_bytes_atomic`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robustlabel.atomic import write_bytes_atomic

from .tables import CellSummary, table_grid

__all__ = ["DecisionPanel", "PlotPanel", "plot_decision_regions", "plot_ours_vs_paper", "plot_panels", "pyplot", "save_figure"]


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Save a matplotlib figure atomically (format from the suffix of ``path``) and close it."""
    plt = pyplot()
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return write_bytes_atomic(path, buffer.getvalue())


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive ``Agg`` backend (files only, no display needed)."""
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
    plt = pyplot()
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
    """One panel per column of a :func:`~robustlabel.experiments.tables.table_cells` table: rows on the
    x axis, ours (± std) beside the paper."""
    rows, columns, by_key = table_grid(cells)
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
    plt = pyplot()
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
