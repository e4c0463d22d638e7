"""robustlabel.experiments.tables: cells over repeats, and the CSV/JSON/Markdown of a paper table."""

from __future__ import annotations

import csv
import json
import math

import pytest

from robustlabel.experiments.tables import Measurement, cells_markdown, table_cells, write_report
from robustlabel.machine import environment_info

MEASUREMENTS = [
    Measurement("CE", "acc", 70.0, 0),
    Measurement("CE", "acc", 72.0, 1),
    Measurement("CE", "acc", 74.0, 2),
    Measurement("GCE", "acc", 77.5, 0),
    Measurement("CE", "val", 71.0, 0),
]
PAPER = {("CE", "acc"): 69.62, ("GCE", "acc"): 77.68, ("Upper bound", "acc"): (89.31, 0.5)}


def test_cells_mean_sample_std_order_and_missing_cells() -> None:
    cells = table_cells(MEASUREMENTS, PAPER, rows=["GCE", "CE", "Upper bound"], columns=["acc", "val"])
    assert [(c.row, c.column) for c in cells] == [
        ("GCE", "acc"), ("GCE", "val"), ("CE", "acc"), ("CE", "val"), ("Upper bound", "acc"), ("Upper bound", "val")
    ]
    ce = cells[2]
    assert ce.n == 3 and ce.mean == pytest.approx(72.0) and ce.std == pytest.approx(2.0)  # ddof = 1
    assert ce.paper == 69.62 and ce.paper_std is None
    assert cells[0].n == 1 and cells[0].std is None
    assert cells[5].n == 0 and cells[5].mean is None  # listed but never measured: visible as missing
    assert cells[4].paper == 89.31 and cells[4].paper_std == 0.5


def test_cells_reject_non_finite_and_bad_paper_values() -> None:
    with pytest.raises(ValueError, match=r"\('CE', 'acc', repeat 0\) is not finite"):
        table_cells([Measurement("CE", "acc", math.nan, 0)])
    with pytest.raises(ValueError, match="a paper value is a number or"):
        table_cells([], {("CE", "acc"): (1.0, 2.0, 3.0)})


def test_markdown_cells_keep_the_table_format() -> None:
    text = cells_markdown(table_cells(MEASUREMENTS, PAPER), decimals=3, row_header="Loss")
    assert text.split("\n")[:3] == [
        "| Loss | acc (ours) | acc (paper) | val (ours) |",
        "|:--|--:|--:|--:|",
        "| CE | 72.000 ± 2.000 | 69.620 | 71.000 (n=1) |",
    ]


def test_write_report_csv_json_markdown(tmp_path) -> None:
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
    gce = next(r for r in rows if r["row"] == "GCE" and r["column"] == "acc")
    assert gce["std"] == "" and gce["paper_std"] == ""  # undefined numbers are empty, not made up
    assert len(rows) == 6

    payload = json.loads(files.json.read_text())
    assert payload["quick"] is True and payload["environment"]["device"] == "cpu"
    assert len(payload["measurements"]) == len(MEASUREMENTS)
    assert payload["extra"]["settings"]["epochs"] == 2
    assert {c["row"] for c in payload["cells"]} == {"CE", "GCE", "Upper bound"}
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic writes leave no temporary files
