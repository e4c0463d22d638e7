"""Ju 2017 Table 1 / Fig. 5 (CIFAR-10 + CIFAR-100 PU) on tiny files in the real layouts:
every row is produced, a rerun resumes, and the pieces (splits, weights, metrics) are right."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from robustlabel.engine.classify import ClassifierConfig, finished_epochs
from robustlabel.experiments.ju_cifar_pu import (
    COLUMNS,
    QUICK,
    TABLE_ROWS,
    CifarPUConfig,
    class_weights,
    load_pu_data,
    pu_metrics,
    row_name,
    run,
    run_key,
    training_losses,
    training_set,
    write_synthetic_data,
)
from robustlabel.losses import HardBootstrapLoss, WeightedCrossEntropyLoss

#: the test-size mode: smaller than --quick (which uses 300 + 300 training images, 4 epochs, 2 repeats)
TINY = dict(relevant_train=40, relevant_test=20, nonrelevant_train=40, nonrelevant_test=20, epochs=2,
            bootstrap_warmup=1, batch_size=32, lr=1e-3, repeats=(0,), figure_fractions=(0.1, 0.5), device="cpu")
ROWS = ["R+N / CrossEntropy", "50%(R+N) / CrossEntropy", "50%R+U / CrossEntropy", "50%R+U / ClassWeighted",
        "50%R+U / SoftmaxLoss", "50%R+U / BootstrapHard"]
THESIS = {"R+N / CrossEntropy": "0.87", "50%R+U / CrossEntropy": "0.66", "50%R+U / SoftmaxLoss": "0.79"}


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    c10, c100, note = write_synthetic_data(tmp_path_factory.mktemp("pu_data"), n_train=60, n_test=30)
    return c10, c100, note


@pytest.fixture()
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_every_row_then_resume(data_dirs, tmp_path, one_thread) -> None:
    c10, c100, note = data_dirs
    config = CifarPUConfig(**TINY)
    assert config.relevant_train < QUICK["relevant_train"] and config.epochs <= QUICK["epochs"]
    out = tmp_path / "out"
    files = run(c10, c100, out, config, data_note=note, progress=False)

    md = files["table_md"].read_text()
    for row in ROWS:
        line = next(l for l in md.splitlines() if l.startswith(f"| {row} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 1 + 2 * len(COLUMNS) and "(n=1)" in cells[1], line  # ours, thesis, ours, thesis, ...
        if row in THESIS:
            assert cells[2] == THESIS[row]
    assert "SYNTHETIC" in md and "1,341,739" in md and "β = 0.8 after 1 warm-up epochs" in md
    assert "2-layer multilayer perceptron" in md  # the caption discrepancy is stated
    with open(files["table_csv"], newline="") as handle:
        cells = list(csv.DictReader(handle))
    assert [c["row"] for c in cells if c["column"] == "mean F1"] == ROWS
    assert all(0.0 <= float(c["mean"]) <= 1.0 and c["n"] == "1" for c in cells)
    fig = files["figure_md"].read_text()
    assert "| 10% |" in fig and "| 50% |" in fig and "ClassWeighted" in fig and "SoftmaxLoss" in fig
    for key in ("table_png", "figure_png"):
        assert files[key].read_bytes()[:4] == b"\x89PNG"

    runs = json.loads((out / "runs.json").read_text())["runs"]
    assert set(runs) == {run_key(a, l, 0.5, 0) for a, l in TABLE_ROWS} | {
        run_key("pu", l, 0.1, 0) for l in ("weighted", "softmax")}
    pu = runs[run_key("pu", "softmax", 0.5, 0)]
    assert pu["train_size"] == 80 and pu["n_labelled_relevant"] == 20 and pu["n_observed_nonrelevant"] == 60
    assert runs[run_key("subset", "ce", 0.5, 0)]["train_size"] == 40
    assert runs[run_key("pu", "weighted", 0.5, 0)]["weights"][:2] == [0.5, 1.0]
    assert runs[run_key("pu", "ce", 0.5, 0)]["weights"] is None
    assert finished_epochs(out / "checkpoints" / run_key("pu", "bootstrap", 0.5, 0)) == 2

    # a rerun trains nothing; a lost record comes back from its finished checkpoint
    store = json.loads((out / "runs.json").read_text())
    lost = run_key("pu", "bootstrap", 0.5, 0)
    del store["runs"][lost]
    (out / "runs.json").write_text(json.dumps(store))
    run(c10, c100, out, config, data_note=note, progress=False)
    again = json.loads((out / "runs.json").read_text())["runs"]
    assert again[lost]["resumed_from_epoch"] == 2 and again[lost]["seconds"] == 0
    assert again[lost]["mean F1"] == runs[lost]["mean F1"]
    for key in set(runs) - {lost}:
        assert again[key] == runs[key]

    with pytest.raises(ValueError, match="different settings"):
        run(c10, c100, out, CifarPUConfig(**{**TINY, "epochs": 3}), progress=False)
    other10, other100, _ = write_synthetic_data(tmp_path / "other", n_train=60, n_test=30, seed=5)
    with pytest.raises(ValueError, match="changed: data_sha1"):  # other images, same settings
        run(other10, other100, out, config, progress=False)


def test_training_sets_weights_and_losses(data_dirs) -> None:
    c10, c100, _ = data_dirs
    config = CifarPUConfig(**TINY)
    data = load_pu_data(c10, c100, config)
    assert data.sizes == {"relevant_train": 40, "relevant_test": 20, "nonrelevant_train": 40, "nonrelevant_test": 20}
    assert len(data.train) == 80 and int((data.test.labels == 0).sum()) == 20
    full = training_set(data, "full", 0.5, seed=0)
    pu = training_set(data, "pu", 0.3, seed=0)
    assert torch.equal(full.labels, torch.as_tensor(data.train.labels)) and len(pu) == 80
    relevant = data.train.labels > 0
    kept = pu.labels.numpy() > 0
    assert kept.sum() == sum(round(0.3 * n) for n in np.bincount(data.train.labels[relevant])[1:])
    assert np.array_equal(pu.labels.numpy()[kept], data.train.labels[kept])
    assert not torch.equal(pu.labels, training_set(data, "pu", 0.3, seed=1).labels)

    weights = class_weights("softmax", pu.labels, config)
    counts = np.bincount(pu.labels.numpy(), minlength=11)
    present = counts > 0
    assert np.mean(np.array(weights)[present]) == pytest.approx(1.0)
    assert weights[0] == pytest.approx(min(np.array(weights)[present]))  # U is the largest class
    phases = training_losses("bootstrap", weights, config)
    assert [epoch for epoch, _ in phases] == [1, 2]
    warmup, bootstrap = phases[0][1].clinician, phases[1][1].clinician
    assert isinstance(warmup, WeightedCrossEntropyLoss) and isinstance(bootstrap, HardBootstrapLoss)
    assert bootstrap.beta == 0.8 and bootstrap.weights.tolist() == pytest.approx(weights)
    assert class_weights("ce", pu.labels, config) is None
    engine = config.classifier()  # thesis training: Adam, constant lr, no augmentation
    assert (engine.optimizer, engine.augment, engine.lr_milestones, engine.lr) == ("adam", False, (), 1e-3)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        ClassifierConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="bootstrap_warmup < epochs"):
        CifarPUConfig(epochs=5, bootstrap_warmup=5)


def test_metrics_one_vs_all_over_relevant_classes() -> None:
    true = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([1, 0, 1, 0, 2, 2])
    m = pu_metrics(true, pred, relevant=(1, 2))
    assert m["accuracy"] == pytest.approx(4 / 6)
    # class 1: TP 1, FP 1, FN 1 -> P = R = F1 = 0.5; class 2: all 1
    assert m["mean precision"] == pytest.approx(0.75) and m["mean recall"] == pytest.approx(0.75)
    assert m["mean F1"] == pytest.approx(0.75)
    assert row_name("pu", "softmax", 0.5) == "50%R+U / SoftmaxLoss" and row_name("subset", "ce", 0.2) == "20%(R+N) / CrossEntropy"
