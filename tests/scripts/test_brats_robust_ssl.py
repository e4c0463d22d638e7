"""Tests of Cui et al.'s Table 2 and Fig. 3 (:mod:`robustlabel.experiments.cui_table2`, its
:class:`~robustlabel.experiments.cui_table2.Table2Config`) and of its entry point
``scripts/brats_robust_ssl.py`` (an argument parser that builds the config).

The end-to-end test runs the quick mode on the smallest synthetic data that still has a
non-empty train / validation / test split and a non-empty unlabelled pool: 4 phantoms of 32³
(split 2 / 1 / 1; p = 50 % gives 1 labelled and 1 pseudo-labelled training case), one repeat,
one epoch of the tiny TransBTS, one torch thread (much faster than two on a busy 2-core CPU).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pytest

from robustlabel.engine.inference import cpu_bf16_supported
from robustlabel.experiments import cui_table2 as table2
from robustlabel.experiments.cui_rows import ROWS

from conftest import load_script

#: the end-to-end test's settings, as script options and as Table2Config fields
QUICK_ARGS = ["--quick", "--cases", "4", "--shape", "32", "--fractions", "50", "--repeats", "1", "--epochs", "1",
              "--batch-size", "2", "--device", "cpu", "--num-workers", "0", "--threads", "1", "--no-progress"]
QUICK_OPTIONS = {"cases": 4, "shape": [32], "fractions": [50], "repeats": 1, "epochs": 1, "batch_size": 2,
                 "device": "cpu", "num_workers": 0, "threads": 1, "progress": False}
RUN_KEYS = {"r0/p50/lower", "r0/p50/ce", "r0/p50/bce", "r0/p50/gce", "r0/p50/sce", "r0/upper"}


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """The entry point, loaded by path (for its options and its end-to-end run)."""
    return load_script("brats_robust_ssl")


def quick_config(out: Path, **changes) -> table2.Table2Config:
    return table2.table2_config(quick=True, out=out, **{**QUICK_OPTIONS, **changes})


def test_paper_split_is_200_28_57_for_285_cases():
    ids = [f"Brats18_TCIA_{i:03d}_1" for i in range(285)]
    split = table2.split_for_table2(ids, seed=0)
    assert {k: len(v) for k, v in split.items()} == table2.PAPER_SPLIT == {"train": 200, "val": 28, "test": 57}
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(ids)  # disjoint and complete
    assert table2.split_for_table2(ids[::-1], seed=0) == split  # seeded, independent of the input order
    assert table2.split_for_table2(ids, seed=1) != split
    # other case counts: the same proportions (28/285, 57/285), at least one case each
    assert {k: len(v) for k, v in table2.split_for_table2([f"c{i}" for i in range(12)]).items()} == \
        {"train": 9, "val": 1, "test": 2}
    assert {k: len(v) for k, v in table2.split_for_table2([f"c{i}" for i in range(4)]).items()} == \
        {"train": 2, "val": 1, "test": 1}


def test_labelled_subsets_are_nested_differ_per_repeat_and_need_a_pool():
    train = table2.split_for_table2([f"c{i:03d}" for i in range(285)], seed=0)["train"]
    subsets = {p: table2.labelled_subset(train, p, seed=0) for p in (30, 50, 70)}
    assert [(len(lab), len(pool)) for lab, pool in subsets.values()] == [(60, 140), (100, 100), (140, 60)]
    assert set(subsets[30][0]) < set(subsets[50][0]) < set(subsets[70][0])
    assert all(not set(lab) & set(pool) for lab, pool in subsets.values())
    assert table2.labelled_subset(train, 30, seed=1)[0] != subsets[30][0]
    with pytest.raises(ValueError, match="0 unlabelled"):
        table2.labelled_subset(["a", "b"], 90, seed=0)


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
    for row in ROWS:
        assert row.name in lines and "—" not in lines[row.name], lines.get(row.name)
    assert "| Lower bound | " in markdown and "0.845 ± 0.005" in lines["Lower bound"]
    assert "0.873" in lines["Upper bound"] and "0.779 ± 0.007" in lines["GCE"]
    with open(out / "table2.csv", newline="") as fh:
        cells = {(r["row"], r["column"]): r for r in csv.DictReader(fh)}
    columns = ["WT 50%", "TC 50%", "ET 50%"]
    assert set(cells) == {(row.name, c) for row in ROWS for c in columns}
    for (row, col), cell in cells.items():
        assert cell["n"] == "1" and 0.0 <= float(cell["mean"]) <= 1.0, (row, col, cell)
        region = col.split()[0]
        paper = table2.PAPER_UPPER[region] if row == "Upper bound" else table2.PAPER_TABLE2[row][region][1][0]
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
    for choice in ("--select last", "--mode union", "--precision fp32 (ran in fp32 on cpu; pool pseudo-labelling in fp32)", "--init scratch",
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


def test_protocol_options_reach_the_engine(tmp_path):
    """select / mode / precision / init / lr are validated and land in the engine config, the
    results fingerprint and the table notes (no training: the settings only)."""
    config = quick_config(tmp_path / "o", select="best", mode="robust_all", init="teacher", precision="bf16", lr=0.003)
    train = config.train_config()
    assert (train.mode, train.lr, train.amp, train.amp_dtype) == ("robust_all", 0.003, True, "bf16")
    assert train.roi_size == (32, 32, 32) and train.network["img_size"] == [32, 32, 32] and train.epochs == 1
    note = table2.protocol_note(config)
    assert "--select best" in note and "best mean validation Dice" in note and "robust_all" in note
    pool = "bf16" if cpu_bf16_supported() else "fp32"  # an autocast precision: the CPU's pool runs bf16 where native
    assert f"--precision bf16 (ran in fp32 on cpu; pool pseudo-labelling in {pool})" in note and "--init teacher" in note and "--lr 0.003" in note
    default = quick_config(tmp_path / "d")
    assert (default.select, default.mode, default.precision, default.init) == ("last", "union", "fp32", "scratch")
    assert table2.results_fingerprint(config, ["a"], "d") != table2.results_fingerprint(default, ["a"], "d")
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.epochs = 5  # type: ignore[misc]


def test_quick_and_full_defaults_and_the_script_options(script, tmp_path):
    """Unset options take the --quick or full values; the script's defaults are the config's."""
    quick = table2.table2_config(quick=True, out=tmp_path)
    assert (quick.epochs, quick.batch_size, quick.repeats, quick.val_interval) == (2, 2, 2, 1)
    assert quick.roi_size == (32, 32, 32)
    assert (quick.cases, quick.shape, quick.fractions) == (12, (48,) * 3, (30, 50, 70))
    full = table2.table2_config(data=tmp_path, out=tmp_path, fractions=[70, 30, 70], roi_size=[16, 24, 32],
                                device="cpu")
    assert (full.epochs, full.batch_size, full.repeats, full.val_interval) == (1000, 4, 3, 10)
    assert full.fractions == (30, 70) and full.roi_size == (16, 24, 32) and full.cases is None
    assert (full.loader_workers, full.torch_threads) == (0, None)
    assert quick_config(tmp_path).torch_threads == 1  # quick on CPU: one thread unless asked otherwise
    options = vars(script.build_parser().parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "o")]))
    options["progress"] = not options.pop("no_progress")
    assert table2.table2_config(**options) == table2.Table2Config(out=tmp_path / "o", data=tmp_path, **table2.FULL)
    with pytest.raises(ValueError, match="unknown Table 2 setting"):
        table2.table2_config(quick=True, out=tmp_path, epoch=3)


@pytest.mark.parametrize(("name", "value"), [
    ("roi_size", [12]), ("roi_size", [8, 8]), ("cases", 3), ("repeats", 0), ("fractions", [100]), ("threads", 0),
    ("select", "mixed"), ("mode", "mixed"), ("precision", "fp64"), ("init", "random"), ("epochs", 0),
    ("batch_size", 0), ("val_interval", 0), ("lr", 0.0), ("num_workers", -1), ("device", "tpu:0"),
])
def test_a_bad_setting_raises_value_error_naming_it(tmp_path, name, value):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        quick_config(tmp_path, **{name: value})


def test_data_source_is_checked(script, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"^data: .* is not a folder"):
        table2.Table2Config(out=tmp_path, data=tmp_path / "missing")
    with pytest.raises(ValueError, match=r"^data / quick"):
        table2.Table2Config(out=tmp_path)
    with pytest.raises(ValueError, match=r"^cases / shape only apply to quick"):
        table2.Table2Config(out=tmp_path, data=tmp_path, cases=5)
    # the script turns a bad setting into a usage error naming it
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--quick", "--out", str(tmp_path), "--roi-size", "12"])
    assert exit_info.value.code == 2 and "roi_size must be positive multiples of 8" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([*QUICK_ARGS, "--out", str(tmp_path), "--mode", "mixed"])
