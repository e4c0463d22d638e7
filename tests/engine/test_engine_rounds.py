"""Teacher–student rounds: the split, the CLI end to end (and its resume), clinician labels intact."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from robustlabel.cli import main as cli_main
from robustlabel.data.studies import studies_datalist, unlabeled_datalist
from robustlabel.engine.datalist import NoClinicianLabelsError
from robustlabel.engine.rounds import RoundsConfig, run_teacher_student, split_cases

from engine_helpers import sha256_tree, tiny_config


def test_split_is_seeded_disjoint_and_sized():
    cases = [f"c{i:03d}" for i in range(285)]
    split = split_cases(cases, seed=1)
    assert [len(split[k]) for k in ("train", "val", "test")] == [199, 29, 57]  # paper: 200 / 28 / 57
    assert sorted(sum(split.values(), [])) == cases
    assert split == split_cases(list(reversed(cases)), seed=1)  # order of the input does not matter
    assert split != split_cases(cases, seed=2)
    assert {k: len(v) for k, v in split_cases(cases[:3]).items()} == {"train": 1, "val": 1, "test": 1}
    with pytest.raises(ValueError, match="at least 3 clinician-labelled cases"):
        split_cases(cases[:2])


TS_ARGS = ["--tiny", "--epochs", "1", "--batch-size", "2", "--val-interval", "1", "--sw-batch-size", "2",
           "--num-workers", "0", "--device", "cpu", "--no-progress"]


def test_teacher_student_cli_end_to_end_and_resume(studies, tmp_path, capsys):
    final_before = sha256_tree(studies / "labels" / "final")
    out = tmp_path / "ts"
    argv = ["teacher-student", "--studies", str(studies), "--out", str(out), "--loss", "gce", "--q", "0.7", *TS_ARGS]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "| 0 | teacher | ce | 1 | 0 |" in printed
    assert "| 1 | student | ce + gce(q=0.7) | 1 | 3 |" in printed

    split = json.loads((out / "split.json").read_text())
    final_cases = [i["case"] for i in studies_datalist(studies, sources=("final",))]
    assert sorted(sum(split.values(), [])) == sorted(final_cases)
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["role"] for r in rows] == ["teacher", "student"]
    for row in rows:
        for region in ("WT", "TC", "ET"):
            assert 0.0 <= float(row[f"dice_{region}_mean"]) <= 1.0
    results = json.loads((out / "results.json").read_text())
    assert [c["case"] for c in results["rounds"][0]["test_cases"]] == split["test"]
    assert results["config"]["train"]["pseudo_params"] == {"q": 0.7}
    assert (out / "results.md").read_text().startswith("| round | model |")

    # the student saw the pool's pseudo-labels, none of the held-out or validation cases
    pool = {i["case"] for i in unlabeled_datalist(studies)}
    assert {p.name[: -len(".nii.gz")] for p in (studies / "labels" / "pseudo").glob("*.nii.gz")} == pool
    student = json.loads((out / "round_1_student" / "history.jsonl").read_text().splitlines()[0])
    assert student["iterations"] == 2  # (1 final + 3 pseudo) / batch 2
    assert sha256_tree(studies / "labels" / "final") == final_before

    # a rerun resumes: nothing is retrained or relabelled, the results are the same
    checkpoints = {k: v for k, v in sha256_tree(out).items() if "tensorboard" not in k and "results" not in k}
    labels = sha256_tree(studies / "labels" / "pseudo")
    assert cli_main(argv) == 0
    assert capsys.readouterr().out == printed
    assert {k: v for k, v in sha256_tree(out).items() if k in checkpoints} == checkpoints
    assert sha256_tree(studies / "labels" / "pseudo") == labels
    assert sha256_tree(studies / "labels" / "final") == final_before


def test_rounds_need_clinician_labels(studies, tmp_path):
    config = RoundsConfig(train=tiny_config())
    final_dir = studies / "labels" / "final"
    for extra in sorted(final_dir.iterdir())[2:]:
        extra.unlink()
    with pytest.raises(ValueError, match="at least 3 clinician-labelled cases"):
        run_teacher_student(studies, tmp_path / "a", config, progress=False)
    shutil.rmtree(final_dir)
    with pytest.raises(NoClinicianLabelsError, match="no clinician labels"):
        run_teacher_student(studies, tmp_path / "b", config, progress=False)


def test_rounds_reject_a_bad_loss_before_any_work(studies, tmp_path):
    config = RoundsConfig(train=tiny_config(pseudo_loss="gce", pseudo_params={"beta": 1.0}))
    with pytest.raises(ValueError, match="does not take parameter"):
        run_teacher_student(studies, tmp_path / "out", config, progress=False)
    assert not (tmp_path / "out").exists()
