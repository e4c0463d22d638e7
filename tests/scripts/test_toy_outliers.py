"""scripts/toy_outliers.py: the Fig. 2 toy produces its figure and table, and robust losses resist the outliers."""

from __future__ import annotations

import json

import numpy as np

from conftest import load_script


def test_toy_figure_table_and_robustness(tmp_path, restore_threads):
    script = load_script("toy_outliers")
    out = tmp_path / "toy"
    assert script.main(["--out", str(out), "--steps", "300", "--seeds", "0", "--n-per-class", "100",
                        "--n-outliers", "30", "--n-test", "200"]) == 0
    png = out / "fig2_decision_regions.png"
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 20_000
    md = (out / "toy_table.md").read_text()
    for row in ("CE", "β-CE (β=1)", "GCE (q=0.7)", "SCE (α=0.1, γ=1)", "CE, no outliers (reference)"):
        assert f"| {row} |" in md
    cells = {(c["row"], c["column"]): c["mean"] for c in json.loads((out / "toy_table.json").read_text())["cells"]}
    ce_acc, ce_fit = cells[("CE", "Clean test accuracy")], cells[("CE", "Outliers fitted")]
    reference = cells[("CE, no outliers (reference)", "Clean test accuracy")]
    assert ce_fit > 20.0 and ce_acc < reference - 3.0  # CE bends towards the mislabelled cluster
    for robust in ("β-CE (β=1)", "GCE (q=0.7)", "SCE (α=0.1, γ=1)"):
        assert cells[(robust, "Clean test accuracy")] > ce_acc + 3.0, robust
        assert cells[(robust, "Outliers fitted")] < ce_fit / 2, robust


def test_toy_data_geometry():
    script = load_script("toy_outliers")
    data = script.make_toy_data(101, 20, seed=0)
    assert data.points.shape == (323, 2) and data.is_outlier.sum() == 20
    assert np.bincount(data.labels[~data.is_outlier]).tolist() == [101, 101, 101]
    assert (data.labels[data.is_outlier] == 1).all()
    outliers = data.points[data.is_outlier].mean(0)
    assert outliers[0] < -2 and outliers[1] < -2  # bottom left, far from class 1 (top right)
