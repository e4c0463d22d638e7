"""The Fig. 2 toy (robustlabel.experiments.cui_toy): its figure and table, and robust losses resist the outliers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robustlabel.experiments.cui_toy import make_toy_data, run_toy, toy_config


def test_toy_figure_table_and_robustness(tmp_path, restore_threads):
    out = tmp_path / "toy"
    config = toy_config(out=out, steps=300, seeds=[0], n_per_class=100, n_outliers=30, n_test=200)
    assert run_toy(config) == out / "toy_table.md"
    png = out / "fig2_decision_regions.png"
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 20_000
    md = (out / "toy_table.md").read_text()
    for row in ("CE", "β-CE (β=1)", "GCE (q=0.7)", "SCE (α=0.1, γ=1)", "CE, no outliers (reference)"):
        assert f"| {row} |" in md
    report = json.loads((out / "toy_table.json").read_text())
    assert report["extra"]["settings"]["steps"] == 300 and report["extra"]["settings"]["seeds"] == [0]
    cells = {(c["row"], c["column"]): c["mean"] for c in report["cells"]}
    ce_acc, ce_fit = cells[("CE", "Clean test accuracy")], cells[("CE", "Outliers fitted")]
    reference = cells[("CE, no outliers (reference)", "Clean test accuracy")]
    assert ce_fit > 20.0 and ce_acc < reference - 3.0  # CE bends towards the mislabelled cluster
    for robust in ("β-CE (β=1)", "GCE (q=0.7)", "SCE (α=0.1, γ=1)"):
        assert cells[(robust, "Clean test accuracy")] > ce_acc + 3.0, robust
        assert cells[(robust, "Outliers fitted")] < ce_fit / 2, robust


def test_toy_data_geometry():
    data = make_toy_data(101, 20, seed=0)
    assert data.points.shape == (323, 2) and data.is_outlier.sum() == 20
    assert np.bincount(data.labels[~data.is_outlier]).tolist() == [101, 101, 101]
    assert (data.labels[data.is_outlier] == 1).all()
    outliers = data.points[data.is_outlier].mean(0)
    assert outliers[0] < -2 and outliers[1] < -2  # bottom left, far from class 1 (top right)
    with pytest.raises(ValueError, match="outlier_label"):
        make_toy_data(10, 2, seed=0, outlier_label=7)


def test_quick_and_explicit_settings():
    assert (toy_config(quick=True, out="o").steps, toy_config(quick=True, out="o").seeds) == (500, (0, 1))
    assert toy_config(out="o", steps=7, beta=2.0).steps == 7 and toy_config(out="o").seeds == (0, 1, 2)

