"""The shared report helper: summaries, CSV/JSON/Markdown, resumable store, figures."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from robustlabel.reporting import (
    DecisionPanel,
    Measurement,
    PlotPanel,
    ResultsStore,
    atomic_write_text,
    environment_info,
    format_mean_std,
    parse_float_pair,
    plot_decision_regions,
    plot_ours_vs_paper,
    plot_panels,
    summarize,
    write_report,
)

PNG = b"\x89PNG\r\n\x1a\n"

MEASUREMENTS = [
    Measurement("CE", "acc", 70.0, 0),
    Measurement("CE", "acc", 72.0, 1),
    Measurement("CE", "acc", 74.0, 2),
    Measurement("GCE", "acc", 77.5, 0),
    Measurement("CE", "val", 71.0, 0),
]
PAPER = {("CE", "acc"): 69.62, ("GCE", "acc"): 77.68, ("Upper bound", "acc"): (89.31, 0.5)}


def test_summarize_mean_sample_std_order_and_missing_cells():
    cells = summarize(MEASUREMENTS, PAPER, rows=["GCE", "CE", "Upper bound"], columns=["acc", "val"])
    assert [(c.row, c.column) for c in cells] == [
        ("GCE", "acc"), ("GCE", "val"), ("CE", "acc"), ("CE", "val"), ("Upper bound", "acc"), ("Upper bound", "val")
    ]
    ce = cells[2]
    assert ce.n == 3 and ce.mean == pytest.approx(72.0) and ce.std == pytest.approx(2.0)  # ddof = 1
    assert ce.paper == 69.62 and ce.paper_std is None
    assert cells[0].n == 1 and cells[0].std is None
    assert cells[5].n == 0 and cells[5].mean is None  # listed but never measured: visible as missing
    assert cells[4].paper == 89.31 and cells[4].paper_std == 0.5


def test_summarize_rejects_non_finite():
    with pytest.raises(ValueError, match=r"\('CE', 'acc', repeat 0\) is not finite"):
        summarize([Measurement("CE", "acc", math.nan, 0)])


def test_format_mean_std():
    assert format_mean_std(77.123, 0.456) == "77.12 ± 0.46"
    assert format_mean_std(0.8342, 0.0151, decimals=3) == "0.834 ± 0.015"
    assert format_mean_std(77.0, None, 1) == "77.00 (n=1)"
    assert format_mean_std(None, None) == "—"


def test_write_report_csv_json_markdown(tmp_path):
    env = environment_info("cpu")
    files = write_report(
        tmp_path / "out", "table", title="My table", measurements=MEASUREMENTS, paper=PAPER,
        rows=["CE", "GCE", "Upper bound"], columns=["acc", "val"], quick=True, environment=env, unit="%",
        paper_source="Cui et al., Table 1", notes=["**Data:** synthetic"], extra={"settings": {"epochs": 2}},
    )
    md = files.markdown.read_text()
    assert md.startswith("# My table")
    assert "| Method | acc (ours) | acc (paper) | val (ours) |" in md  # no paper column where the paper has none
    assert "| CE | 72.00 ± 2.00 | 69.62 | 71.00 (n=1) |" in md
    assert "| GCE | 77.50 (n=1) | 77.68 | — |" in md
    assert "| Upper bound | — | 89.31 ± 0.50 | — |" in md
    assert "QUICK" in md and "no GPU used" in md and env["torch"] in md and "**Data:** synthetic" in md
    assert "Cui et al., Table 1" in md

    with open(files.csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    ce = next(r for r in rows if r["row"] == "CE" and r["column"] == "acc")
    assert float(ce["mean"]) == pytest.approx(72.0) and float(ce["std"]) == pytest.approx(2.0)
    assert ce["n"] == "3" and ce["values"] == "70.0;72.0;74.0" and float(ce["paper"]) == 69.62
    assert len(rows) == 6

    payload = json.loads(files.json.read_text())
    assert payload["quick"] is True and payload["environment"]["device"] == "cpu"
    assert len(payload["measurements"]) == len(MEASUREMENTS)
    assert payload["extra"]["settings"]["epochs"] == 2
    assert {c["row"] for c in payload["cells"]} == {"CE", "GCE", "Upper bound"}
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic writes leave no temporary files


def test_parse_float_pair():
    import argparse

    assert parse_float_pair("0.1,0.01") == (0.1, 0.01)
    for bad in ("0.1", "a,b", "1,2,3"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected two numbers"):
            parse_float_pair(bad)


def test_environment_info_names_the_machine():
    env = environment_info("cpu")
    for key in ("date", "cpu", "torch", "monai", "python", "device", "accelerator"):
        assert env[key]
    assert env["device"] == "cpu" and "CPU" in env["accelerator"]


def test_results_store_resume_and_settings_guard(tmp_path):
    path = tmp_path / "runs.json"
    store = ResultsStore(path, {"epochs": 2, "milestones": [1]})
    assert "seed0/ce" not in store
    store.put("seed0/ce", {"test_acc": np.float32(71.5), "n": np.int64(3)})
    reopened = ResultsStore(path, {"epochs": 2, "milestones": [1]})
    assert reopened.get("seed0/ce") == {"test_acc": 71.5, "n": 3}
    with pytest.raises(ValueError, match=r"different settings \(changed: epochs\)"):
        ResultsStore(path, {"epochs": 3, "milestones": [1]})
    assert ResultsStore(path, {"epochs": 3}, overwrite=True).runs == {}
    atomic_write_text(path, "{not json")
    with pytest.raises(ValueError, match="not a results file"):
        ResultsStore(path, {"epochs": 2})


def test_plots_write_pngs(tmp_path):
    panel = PlotPanel("WT", ["30%", "50%", "70%"], {"CE": [0.84, 0.86, None], "BCE": [0.85, 0.87, 0.87]},
                      errors={"CE": [0.01, 0.0, None]}, ylabel="Dice")
    for kind in ("bar", "line"):
        path = plot_panels(tmp_path / f"{kind}.png", [panel, panel], kind=kind, suptitle="x")
        assert path.read_bytes().startswith(PNG)
    with pytest.raises(ValueError, match="kind must be"):
        plot_panels(tmp_path / "x.png", [panel], kind="pie")
    with pytest.raises(ValueError, match="has 1 values for 3 categories"):
        plot_panels(tmp_path / "x.png", [PlotPanel("t", ["a", "b", "c"], {"s": [1.0]})])
    cells = summarize(MEASUREMENTS, PAPER)
    assert plot_ours_vs_paper(tmp_path / "ours.png", cells, ylabel="%").read_bytes().startswith(PNG)


def test_decision_regions_png(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(60, 2))
    labels = (points[:, 0] > 0).astype(int) + (points[:, 1] > 1)
    panels = [
        DecisionPanel("data", points, labels, highlight=np.arange(60) < 5),
        DecisionPanel("rule", points, labels, predict=lambda p: (p[:, 0] > 0).astype(int) + (p[:, 1] > 1)),
    ]
    path = plot_decision_regions(tmp_path / "regions.png", panels, n_classes=3, resolution=50)
    assert path.read_bytes().startswith(PNG) and path.stat().st_size > 5000
