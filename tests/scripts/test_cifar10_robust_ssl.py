"""scripts/cifar10_robust_ssl.py end to end on tiny data in the real CIFAR-10 layout."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from conftest import SCRIPTS, load_script
from robustlabel.data.cifar import CifarFormatError, write_synthetic_cifar10

ROWS = ["Lower bound", "CE", "BCE", "GCE", "SCE", "Upper bound"]
PAPER = {"Lower bound": "66.17", "CE": "69.62", "BCE": "79.53", "GCE": "77.68", "SCE": "78.74", "Upper bound": "89.31"}
TINY = ["--epochs", "1", "--train-subset", "300", "--test-subset", "100", "--width", "0.0625", "--batch-size", "32",
        "--threads", "1"]


@pytest.fixture(scope="module")
def script():
    return load_script("cifar10_robust_ssl")


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_synthetic_cifar10(root, n_train=400, n_test=120, seed=0)
    return root


def test_table_resume_and_grid(script, cifar_root, tmp_path, restore_threads):
    out = tmp_path / "out"
    argv = ["--data", str(cifar_root / "cifar-10-batches-py"), "--out", str(out), "--seeds", "0", "1", *TINY]
    assert script.main(argv) == 0

    md = (out / "table1.md").read_text()
    for row in ROWS:
        line = next(l for l in md.splitlines() if l.startswith(f"| {row} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert "±" in cells[1] and cells[2] == PAPER[row] and "±" in cells[3], line  # ours (2 seeds), paper, val
    assert "Teacher pseudo-label accuracy" in md and "no GPU used" in md and "**Mode:** full" in md
    with open(out / "table1.csv", newline="") as handle:
        cells = list(csv.DictReader(handle))
    test_cells = {c["row"]: c for c in cells if c["column"] == "Test accuracy"}
    assert list(test_cells) == ROWS and all(c["n"] == "2" for c in test_cells.values())
    assert all(0.0 <= float(c["mean"]) <= 100.0 for c in test_cells.values())
    assert (out / "table1.png").stat().st_size > 0
    report = json.loads((out / "table1.json").read_text())
    assert report["quick"] is False and len(report["measurements"]) == 2 * 2 * len(ROWS)

    runs = json.loads((out / "runs.json").read_text())["runs"]
    assert set(runs) == {f"seed{s}/{k}" for s in (0, 1) for k in
                         ("lower", "ce/default", "bce/beta=5", "gce/q=0.9", "sce/alpha=0.1,gamma=0.01", "upper")}
    teacher, student = runs["seed0/lower"], runs["seed0/bce/beta=5"]
    assert teacher["train_size"] == 27 and teacher["n_pseudo"] == 0 and 0 <= teacher["pseudo_label_acc"] <= 100
    assert student["train_size"] == 270 and student["n_pseudo"] == 243 and student["hparams"] == {"beta": 5.0}
    assert runs["seed0/upper"]["n_pseudo"] == 0 and runs["seed0/upper"]["train_size"] == 270

    # a lost record is recovered from its finished checkpoint without training again
    store = json.loads((out / "runs.json").read_text())
    del store["runs"]["seed1/gce/q=0.9"]
    (out / "runs.json").write_text(json.dumps(store))
    # --grid on the same folder: only the new candidates (β = 1, q = 0.7) are trained
    assert script.main([*argv, "--grid", "--grid-beta", "1", "5", "--grid-q", "0.7", "0.9",
                        "--grid-sce", "0.1,0.01"]) == 0
    runs2 = json.loads((out / "runs.json").read_text())["runs"]
    assert runs2["seed1/gce/q=0.9"]["resumed_from_epoch"] == 1 and runs2["seed1/gce/q=0.9"]["seconds"] == 0
    assert runs2["seed1/gce/q=0.9"]["test_acc"] == runs["seed1/gce/q=0.9"]["test_acc"]
    assert runs2["seed0/upper"] == runs["seed0/upper"]  # finished runs are skipped
    assert {"seed0/bce/beta=1", "seed1/gce/q=0.7"} <= set(runs2)
    md = (out / "table1.md").read_text()
    assert "BCE hyper-parameters (chosen by validation accuracy)" in md
    for seed in (0, 1):
        best = max((runs2[f"seed{seed}/bce/beta={b}"] for b in (1, 5)), key=lambda r: r["val_acc"])
        assert f"seed {seed}: beta={best['hparams']['beta']:g}" in md

    with pytest.raises(ValueError, match="different settings"):
        script.main([*argv[:-len(TINY)], *TINY[:-2], "--epochs", "2", "--threads", "1"])


def test_malformed_data_and_missing_source(script, tmp_path, restore_threads):
    folder = write_synthetic_cifar10(tmp_path / "bad", n_train=20, n_test=10)
    (folder / "test_batch").unlink()
    with pytest.raises(CifarFormatError, match="test_batch: file not found"):
        script.main(["--data", str(folder), "--out", str(tmp_path / "o"), *TINY])
    with pytest.raises(SystemExit, match="exactly one of --data"):
        script.main(["--out", str(tmp_path / "o"), *TINY])


def test_help_documents_the_real_data_command():
    result = subprocess.run([sys.executable, str(SCRIPTS / "cifar10_robust_ssl.py"), "--help"],
                            capture_output=True, text=True, timeout=120, check=True)
    assert "--data /path/to/cifar-10-batches-py --out results/cifar10" in result.stdout
    assert "--quick" in result.stdout and "--grid" in result.stdout
