"""Tests of ``scripts/brats_robust_ssl.py`` (Cui et al., Table 2 and Fig. 3).

The end-to-end test runs the quick mode on the smallest synthetic data that still has a
non-empty train / validation / test split and a non-empty unlabelled pool: 4 phantoms of 32³
(split 2 / 1 / 1; p = 50 % gives 1 labelled and 1 pseudo-labelled training case), one repeat,
one epoch of the tiny TransBTS, one torch thread (much faster than two on a busy 2-core CPU).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pytest

from conftest import load_script

QUICK_ARGS = ["--quick", "--cases", "4", "--shape", "32", "--fractions", "50", "--repeats", "1", "--epochs", "1",
              "--batch-size", "2", "--device", "cpu", "--num-workers", "0", "--threads", "1", "--no-progress"]
RUN_KEYS = {"r0/p50/lower", "r0/p50/ce", "r0/p50/bce", "r0/p50/gce", "r0/p50/sce", "r0/upper"}


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_script("brats_robust_ssl")


def test_paper_split_is_200_28_57_for_285_cases(script):
    ids = [f"Brats18_TCIA_{i:03d}_1" for i in range(285)]
    split = script.split_for_table2(ids, seed=0)
    assert {k: len(v) for k, v in split.items()} == script.PAPER_SPLIT == {"train": 200, "val": 28, "test": 57}
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(ids)  # disjoint and complete
    assert script.split_for_table2(ids[::-1], seed=0) == split  # seeded, independent of the input order
    assert script.split_for_table2(ids, seed=1) != split
    # other case counts: the same proportions (28/285, 57/285), at least one case each
    assert {k: len(v) for k, v in script.split_for_table2([f"c{i}" for i in range(12)]).items()} == \
        {"train": 9, "val": 1, "test": 2}
    assert {k: len(v) for k, v in script.split_for_table2([f"c{i}" for i in range(4)]).items()} == \
        {"train": 2, "val": 1, "test": 1}


def test_labelled_subsets_are_nested_differ_per_repeat_and_need_a_pool(script):
    train = script.split_for_table2([f"c{i:03d}" for i in range(285)], seed=0)["train"]
    subsets = {p: script.labelled_subset(train, p, seed=0) for p in (30, 50, 70)}
    assert [(len(lab), len(pool)) for lab, pool in subsets.values()] == [(60, 140), (100, 100), (140, 60)]
    assert set(subsets[30][0]) < set(subsets[50][0]) < set(subsets[70][0])
    assert all(not set(lab) & set(pool) for lab, pool in subsets.values())
    assert script.labelled_subset(train, 30, seed=1)[0] != subsets[30][0]
    with pytest.raises(ValueError, match="0 unlabelled"):
        script.labelled_subset(["a", "b"], 90, seed=0)


def _checkpoints(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(out)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(out.rglob("*.pt"))}


def test_quick_mode_writes_the_full_table_and_a_rerun_resumes(script, tmp_path, capsys, restore_threads):
    out = tmp_path / "table2"
    argv = [*QUICK_ARGS, "--out", str(out)]

    start = time.perf_counter()
    assert script.main(argv) == 0
    first_s = time.perf_counter() - start
    printed = capsys.readouterr().out
    assert "runs trained: 6, skipped (finished earlier" in printed and "): 0" in printed

    # --- the table: every row, ours and the paper's numbers side by side, the machine, the quick flag
    markdown = (out / "table2.md").read_text()
    assert "QUICK" in markdown and "Ran on:" in markdown and "SYNTHETIC" in markdown
    lines = {line.split(" | ")[0].lstrip("| "): line for line in markdown.splitlines() if line.startswith("| ")}
    for row in script.ROWS:
        assert row.name in lines and "—" not in lines[row.name], lines.get(row.name)
    assert "| Lower bound | " in markdown and "0.845 ± 0.005" in lines["Lower bound"]
    assert "0.873" in lines["Upper bound"] and "0.779 ± 0.007" in lines["GCE"]
    with open(out / "table2.csv", newline="") as fh:
        cells = {(r["row"], r["column"]): r for r in csv.DictReader(fh)}
    columns = ["WT 50%", "TC 50%", "ET 50%"]
    assert set(cells) == {(row.name, c) for row in script.ROWS for c in columns}
    for (row, col), cell in cells.items():
        assert cell["n"] == "1" and 0.0 <= float(cell["mean"]) <= 1.0, (row, col, cell)
        region = col.split()[0]
        paper = script.PAPER_UPPER[region] if row == "Upper bound" else script.PAPER_TABLE2[row][region][1][0]
        assert float(cell["paper"]) == pytest.approx(paper)
    for png in ("fig3.png", "fig3_paper.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # --- the runs: one teacher shared by four students, the upper bound on every training case
    runs = json.loads((out / "runs.json").read_text())["runs"]
    assert set(runs) == RUN_KEYS
    split = json.loads((out / "split.json").read_text())
    assert {k: len(v) for k, v in split.items()} == {"train": 2, "val": 1, "test": 1}
    teacher = runs["r0/p50/lower"]
    (pool_case,) = teacher["pool"]
    assert sorted(teacher["labelled"] + teacher["pool"]) == split["train"]
    assert (teacher["train_final"], teacher["train_pseudo"]) == (1, 0)
    assert set(teacher["pseudo_label_summary"]) >= {"dice_WT", "dice_TC", "dice_ET"}
    assert runs["r0/upper"]["train_final"] == 2 and runs["r0/upper"]["train_pseudo"] == 0
    teacher_ckpt = out / "runs" / "r0" / "p50" / "teacher" / "last.pt"  # --select last (the paper) by default
    assert all(r["select"] == "last" and r["checkpoint"].endswith("last.pt") for r in runs.values())
    notes = markdown.split("**Protocol:**")[1].splitlines()[0]
    for choice in ("--select last", "--mode union", "--precision fp32 (ran in fp32 on cpu)", "--init scratch",
                   "--lr 0.0002", "373.13 mm"):
        assert choice in notes, notes
    expected_losses = {"ce": "ce + ce()", "bce": "ce + bce(beta=0.001)", "gce": "ce + gce(q=0.7)",
                       "sce": "ce + sce(alpha=0.01, gamma=1)"}
    for loss, label in expected_losses.items():
        record = runs[f"r0/p50/{loss}"]
        assert (record["train_final"], record["train_pseudo"]) == (1, 1)
        assert Path(record["teacher"]) == teacher_ckpt and record["loss"] == label
        assert [c["case"] for c in record["test_cases"]] == split["test"]
    # the pseudo-label lives in the run folder; the hidden true label in the studies is untouched
    pseudo = out / "runs" / "r0" / "p50" / "pseudo" / f"{pool_case}.nii.gz"
    assert pseudo.is_file() and json.loads(pseudo.with_name(f"{pool_case}.json").read_text())["teacher"]["checkpoint"] \
        == str(teacher_ckpt.resolve())
    assert not (out / "studies" / "labels" / "pseudo").exists()
    true_label = np.asarray(nib.load(out / "studies" / "labels" / "final" / f"{pool_case}.nii.gz").dataobj)
    source_seg = np.asarray(nib.load(out / "synthetic-brats" / pool_case / f"{pool_case}_seg.nii.gz").dataobj)
    np.testing.assert_array_equal(true_label, source_seg)

    # --- a rerun trains nothing: every run is read back from runs.json
    checkpoints, table = _checkpoints(out), (out / "table2.csv").read_text()
    pseudo_bytes = pseudo.read_bytes()
    start = time.perf_counter()
    assert script.main(argv) == 0
    second_s = time.perf_counter() - start
    second_out = capsys.readouterr().out
    assert "runs trained: 0, skipped (finished earlier" in second_out and second_out.rstrip().endswith("): 6")
    report = json.loads((out / "table2.json").read_text())["extra"]["this_invocation"]
    assert report["trained"] == [] and sorted(report["skipped"]) == sorted(RUN_KEYS)
    assert _checkpoints(out) == checkpoints and (out / "table2.csv").read_text() == table
    assert second_s < 0.5 * first_s, (first_s, second_s)

    # --- an unrecorded run resumes from its checkpoints; the teacher and its pseudo-labels are reused
    stored = json.loads((out / "runs.json").read_text())
    del stored["runs"]["r0/p50/gce"]
    (out / "runs.json").write_text(json.dumps(stored))
    assert script.main(argv) == 0
    capsys.readouterr()
    report = json.loads((out / "table2.json").read_text())["extra"]["this_invocation"]
    assert report["trained"] == ["r0/p50/gce"]
    rerun = json.loads((out / "runs.json").read_text())["runs"]["r0/p50/gce"]
    assert rerun["resumed_from_epoch"] == 1 and rerun["epochs"] == 1
    assert rerun["test_summary"] == runs["r0/p50/gce"]["test_summary"]
    assert _checkpoints(out) == checkpoints and pseudo.read_bytes() == pseudo_bytes

    # --- the same --out refuses other data instead of mixing studies
    other = tmp_path / "other_brats"
    other.mkdir()
    with pytest.raises(SystemExit, match="was imported from"):
        script.main(["--data", str(other), "--out", str(out), "--no-progress"])


def test_protocol_options_reach_the_engine(script, tmp_path):
    """--select / --mode / --precision / --init / --lr are parsed, validated and land in the
    engine config and the table notes (no training: the settings only)."""
    args = script.resolve_settings(script.build_parser().parse_args(
        [*QUICK_ARGS, "--out", str(tmp_path / "o"), "--select", "best", "--mode", "robust_all", "--init", "teacher",
         "--precision", "bf16", "--lr", "0.003"]))
    config = script.base_train_config(args)
    assert (config.mode, config.lr, config.amp, config.amp_dtype) == ("robust_all", 0.003, True, "bf16")
    note = script.protocol_note(args, config)
    assert "--select best" in note and "best mean validation Dice" in note and "robust_all" in note
    assert "--precision bf16 (ran in fp32 on cpu)" in note and "--init teacher" in note and "--lr 0.003" in note
    default = script.resolve_settings(script.build_parser().parse_args([*QUICK_ARGS, "--out", str(tmp_path / "d")]))
    assert (default.select, default.mode, default.precision, default.init) == ("last", "union", "fp32", "scratch")
    base = script.base_train_config(default)
    assert script.results_fingerprint(args, config, ["a"], "d") != script.results_fingerprint(default, base, ["a"], "d")
    with pytest.raises(SystemExit):
        script.build_parser().parse_args([*QUICK_ARGS, "--out", "x", "--mode", "mixed"])
