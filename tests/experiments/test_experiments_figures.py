"""robustlabel.experiments.figures: bar/line panels, ours vs paper, decision regions (real PNGs)."""

from __future__ import annotations

import numpy as np
import pytest

from robustlabel.experiments.figures import (
    DecisionPanel,
    PlotPanel,
    plot_decision_regions,
    plot_ours_vs_paper,
    plot_panels,
)
from robustlabel.experiments.tables import Measurement, table_cells

PNG = b"\x89PNG\r\n\x1a\n"


def test_plots_write_pngs(tmp_path) -> None:
    panel = PlotPanel("WT", ["30%", "50%", "70%"], {"CE": [0.84, 0.86, None], "BCE": [0.85, 0.87, 0.87]},
                      errors={"CE": [0.01, 0.0, None]}, ylabel="Dice")
    for kind in ("bar", "line"):
        path = plot_panels(tmp_path / f"{kind}.png", [panel, panel], kind=kind, suptitle="x")
        assert path.read_bytes().startswith(PNG)
    with pytest.raises(ValueError, match="kind must be"):
        plot_panels(tmp_path / "x.png", [panel], kind="pie")
    with pytest.raises(ValueError, match="has 1 values for 3 categories"):
        plot_panels(tmp_path / "x.png", [PlotPanel("t", ["a", "b", "c"], {"s": [1.0]})])
    cells = table_cells([Measurement("CE", "acc", 70.0, 0), Measurement("CE", "acc", 72.0, 1)], {("GCE", "acc"): 77.68})
    assert plot_ours_vs_paper(tmp_path / "ours.png", cells, ylabel="%").read_bytes().startswith(PNG)


def test_decision_regions_png(tmp_path) -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(60, 2))
    labels = (points[:, 0] > 0).astype(int) + (points[:, 1] > 1)
    panels = [
        DecisionPanel("data", points, labels, highlight=np.arange(60) < 5),
        DecisionPanel("rule", points, labels, predict=lambda p: (p[:, 0] > 0).astype(int) + (p[:, 1] > 1)),
    ]
    path = plot_decision_regions(tmp_path / "regions.png", panels, n_classes=3, resolution=50)
    assert path.read_bytes().startswith(PNG) and path.stat().st_size > 5000
    with pytest.raises(ValueError, match="at least one panel"):
        plot_decision_regions(tmp_path / "none.png", [], n_classes=3)
