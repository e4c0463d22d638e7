"""Cui et al. Table 1 (robustlabel.experiments.cui_table1) end to end on tiny data in the real CIFAR-10 layout."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from robustlabel.data.cifar import CifarFormatError, write_synthetic_cifar10
from robustlabel.engine.teacher_student import Job
from robustlabel.experiments.cui_rows import STUDENTS
from robustlabel.experiments.cui_table1 import ClassifierSteps, reproduce_table1, student_specs, table1_config

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"

ROWS = ["Lower bound", "CE", "BCE", "GCE", "SCE", "Upper bound"]
PAPER = {"Lower bound": "66.17", "CE": "69.62", "BCE": "79.53", "GCE": "77.68", "SCE": "78.74", "Upper bound": "89.31"}
TINY = {"epochs": 1, "train_subset": 300, "test_subset": 100, "width": 0.0625, "batch_size": 32, "threads": 1}


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_synthetic_cifar10(root, n_train=400, n_test=120, seed=0)
    return root


def test_paper_protocol_table_and_resume(cifar_root, tmp_path, restore_threads):
    """The paper's protocol by default: no validation split (5k labelled + 45k pseudo-labelled of
    50k, scaled down here), the last epoch scored, union weighting, fp32; the notes say so."""
    out = tmp_path / "out"
    settings = {"data": cifar_root / "cifar-10-batches-py", "out": out, "seeds": [0, 1], **TINY}
    assert reproduce_table1(table1_config(**settings)) == out / "table1.md"

    md = (out / "table1.md").read_text()
    for row in ROWS:
        line = next(l for l in md.splitlines() if l.startswith(f"| {row} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert "±" in cells[1] and cells[2] == PAPER[row] and cells[3] == "—", line  # ours (2 seeds), paper, no val
    assert "Teacher pseudo-label accuracy" in md and "no GPU used" in md and "**Mode:** full" in md
    assert "--select last: scored = the last epoch" in md and "--mode union" in md
    assert "--precision fp32 (ran in fp32 on cpu)" in md and "no validation split" in md
    with open(out / "table1.csv", newline="") as handle:
        cells = list(csv.DictReader(handle))
    test_cells = {c["row"]: c for c in cells if c["column"] == "Test accuracy"}
    assert list(test_cells) == ROWS and all(c["n"] == "2" for c in test_cells.values())
    assert all(0.0 <= float(c["mean"]) <= 100.0 for c in test_cells.values())
    assert {c["row"] for c in cells if c["column"] == "Val accuracy"} == set(ROWS)  # same rows and columns
    assert (out / "table1.png").stat().st_size > 0
    report = json.loads((out / "table1.json").read_text())
    assert report["quick"] is False and len(report["measurements"]) == 2 * len(ROWS)

    runs = json.loads((out / "runs.json").read_text())["runs"]
    assert set(runs) == {f"seed{s}/{k}" for s in (0, 1) for k in
                         ("lower", "ce/default", "bce/beta=5", "gce/q=0.9", "sce/alpha=0.1,gamma=0.01", "upper")}
    teacher, student = runs["seed0/lower"], runs["seed0/bce/beta=5"]
    # nothing held out: 10 % labelled, 90 % pseudo-labelled, the upper bound on every image
    assert teacher["train_size"] == 30 and teacher["n_pseudo"] == 0 and 0 <= teacher["pseudo_label_acc"] <= 100
    assert student["train_size"] == 300 and student["n_pseudo"] == 270 and student["hparams"] == {"beta": 5.0}
    assert runs["seed0/upper"]["n_pseudo"] == 0 and runs["seed0/upper"]["train_size"] == 300
    assert student["select"] == "last" and student["scored_epoch"] == 1 and "val_acc" not in student
    assert [runs[f"seed0/{k}"]["row"] for k in ("lower", "ce/default", "upper")] == ["Lower bound", "CE", "Upper bound"]

    # a lost record is recovered from its finished checkpoint without training again
    store = json.loads((out / "runs.json").read_text())
    del store["runs"]["seed1/gce/q=0.9"]
    (out / "runs.json").write_text(json.dumps(store))
    assert reproduce_table1(table1_config(**settings)) is not None
    runs2 = json.loads((out / "runs.json").read_text())["runs"]
    assert runs2["seed1/gce/q=0.9"]["resumed_from_epoch"] == 1 and runs2["seed1/gce/q=0.9"]["seconds"] == 0
    assert runs2["seed1/gce/q=0.9"]["test_acc"] == runs["seed1/gce/q=0.9"]["test_acc"]
    assert runs2["seed0/upper"] == runs["seed0/upper"]  # finished runs are skipped

    # --grid holds out a validation split, so it is another experiment: the same folder refuses it
    with pytest.raises(ValueError, match="different settings"):
        reproduce_table1(table1_config(**settings, grid=True))
    with pytest.raises(ValueError, match="different settings"):
        reproduce_table1(table1_config(**{**settings, "epochs": 2}))
    with pytest.raises(ValueError, match="--select best needs"):
        table1_config(**settings, select="best")


def test_grid_selects_on_validation_with_best_epoch_and_per_source(cifar_root, tmp_path, restore_threads):
    out = tmp_path / "grid"
    config = table1_config(data=cifar_root / "cifar-10-batches-py", out=out, seeds=[0], **TINY, grid=True,
                           grid_beta=[1, 5], grid_q=[0.9], grid_sce=[(0.1, 0.01)], select="best", mode="per_source")
    assert reproduce_table1(config) is not None
    runs = json.loads((out / "runs.json").read_text())["runs"]
    teacher, student = runs["seed0/lower"], runs["seed0/bce/beta=1"]
    assert teacher["train_size"] == 27 and student["train_size"] == 270 and student["n_pseudo"] == 243  # 10 % held out
    assert student["select"] == "best" and student["scored_epoch"] == 1 and 0 <= student["val_acc"] <= 100
    md = (out / "table1.md").read_text()
    best = max((runs[f"seed0/bce/beta={b}"] for b in (1, 5)), key=lambda r: r["val_acc"])
    assert "BCE hyper-parameters (chosen by validation accuracy)" in md and f"seed 0: beta={best['hparams']['beta']:g}" in md
    assert "--select best: scored = the epoch of best validation accuracy" in md and "--mode per_source" in md
    assert "10% of the training set held out for --grid" in md
    assert (out / "checkpoints" / "seed0" / "bce" / "beta=1" / "best.pt").is_file()


def test_student_runs_and_steps_naming(tmp_path):
    config = table1_config(synthetic=True, out=tmp_path, grid=True, grid_beta=[1, 2], grid_q=[0.7], grid_sce=[(0.1, 1.0)])
    specs = student_specs(config)
    assert [spec.name for _, spec in specs] == ["ce/default", "bce/beta=1", "bce/beta=2", "gce/q=0.7", "sce/alpha=0.1,gamma=1"]
    assert [row for row, _ in specs] == [STUDENTS[0], STUDENTS[1], STUDENTS[1], STUDENTS[2], STUDENTS[3]]
    assert specs[1][1].loss == "bce" and dict(specs[1][1].params) == {"beta": 1}
    default = table1_config(synthetic=True, out=tmp_path)
    assert default.lr_milestones == (100,) and default.seeds == (0, 1, 2) and default.workers >= 0
    assert dict(student_specs(default)[1][1].params) == {"beta": 5.0}  # the paper's CIFAR-10 value
    quick = table1_config(quick=True, synthetic=True, out=tmp_path, epochs=3)
    assert (quick.epochs, quick.lr_milestones, quick.train_subset, quick.seeds) == (3, (2,), 2000, (0, 1))


def test_teacher_counts_as_recorded_only_with_its_pseudo_labels(tmp_path, cifar_root):
    from robustlabel.data.cifar import load_cifar10
    from robustlabel.data.splits import split_indices
    from robustlabel.experiments.cui_rows import LOWER, UPPER
    from robustlabel.experiments.store import ResultsStore

    config = table1_config(data=cifar_root, out=tmp_path, seeds=[3], **TINY)
    train, test = load_cifar10(cifar_root)
    split = split_indices(len(train), 0.1, 0.0, 3)
    store = ResultsStore(tmp_path / "runs.json", {})
    store.put("seed3/lower", {"test_acc": 1.0})
    store.put("seed3/upper", {"test_acc": 2.0})
    lower = ClassifierSteps(config, train, test, store, 3, split, LOWER)
    upper = ClassifierSteps(config, train, test, store, 3, split, UPPER)
    teacher = Job.teacher()
    assert lower.key(teacher) == "seed3/lower" and upper.key(teacher) == "seed3/upper"
    assert lower.recorded(teacher) is None  # no pseudo_labels.npz: the teacher must run again
    assert upper.recorded(teacher) == {"test_acc": 2.0}
    lower.pool_path.parent.mkdir(parents=True)
    lower.pool_path.write_bytes(b"")
    assert lower.recorded(teacher) == {"test_acc": 1.0}
    assert lower.train(teacher, None, None) is None  # recorded: its pseudo-labels are read back, no model
    student = Job.student(1, student_specs(config)[1][1])
    assert lower.key(student) == "seed3/bce/beta=5" and lower.row(student) is STUDENTS[1]
    with pytest.raises(ValueError, match="needs the pseudo-labelled pool"):
        lower.train(student, None, None)
    with pytest.raises(ValueError, match="lower or the upper bound"):
        ClassifierSteps(config, train, test, store, 3, split, STUDENTS[0])


def test_malformed_data_and_missing_source(tmp_path, restore_threads):
    folder = write_synthetic_cifar10(tmp_path / "bad", n_train=20, n_test=10)
    (folder / "test_batch").unlink()
    with pytest.raises(CifarFormatError, match="test_batch: file not found"):
        reproduce_table1(table1_config(data=folder, out=tmp_path / "o", **TINY))
    with pytest.raises(ValueError, match="exactly one of --data"):
        table1_config(out=tmp_path / "o", **TINY)
    with pytest.raises(ValueError, match="unknown Table 1 setting"):
        table1_config(out=tmp_path / "o", synthetic=True, epoch=3)


def test_help_documents_the_real_data_command():
    result = subprocess.run([sys.executable, str(SCRIPTS / "cifar10_robust_ssl.py"), "--help"],
                            capture_output=True, text=True, timeout=120, check=True)
    assert "--data /path/to/cifar-10-batches-py --out results/cifar10" in result.stdout
    assert "--quick" in result.stdout and "--grid" in result.stdout
