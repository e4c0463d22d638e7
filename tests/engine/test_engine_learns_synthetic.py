"""End-to-end learning check: a tiny TransBTS trained on synthetic BraTS-like phantoms reaches
a whole-tumour (WT) Dice above 0.8 on held-out phantoms, on CPU, within a few minutes.

Only library code runs here (no training logic in the test): ``write_synthetic_brats`` →
``import_brats`` → ``studies_datalist`` → ``train`` → ``evaluate_checkpoint``.

Settings (fixed seeds and epochs, so the run is deterministic):

* data: 12 phantoms of 48³ (seed 0); the first 8 case ids train, the last 4 are held out;
* network: ``TINY_TRANSBTS`` (``img_size`` 32), random 32³ training crops, 32³ sliding windows;
* optimisation: CE on clinician labels, batch 2, 24 epochs (96 steps), Adam with
  ``lr_0 = 3e-3`` and the usual poly decay.  The TransBTS default ``lr_0 = 2e-4`` is meant for
  1000 epochs; after 96 steps it reaches only WT ≈ 0.75, so this test uses a 15× higher rate.

Measured while developing (2 CPU cores, quiet machine: ≈ 20 s of training, ≈ 25 s in all;
several times slower when other jobs share the cores): held-out mean Dice WT 0.92–0.95,
TC 0.74–0.92, ET 0.73–0.87 over data seeds {0, 1, 2} × training seeds {0, 1}; the lowest
single-case WT Dice was 0.89.  With these seeds: WT 0.921, TC 0.888, ET 0.833.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robustlabel.data.labels import train_to_brats
from robustlabel.data.studies import import_brats, studies_datalist
from robustlabel.data.synthetic import write_synthetic_brats
from robustlabel.engine.config import TrainConfig
from robustlabel.data.transforms import infer_transforms
from robustlabel.engine.checkpoint import load_network
from robustlabel.engine.evaluate import evaluate_checkpoint
from robustlabel.engine.inference import POOL_WINDOWS, cpu_bf16_supported, prepare_network
from robustlabel.metrics.brats import brats_metrics
from robustlabel.engine.trainer import train
from robustlabel.networks import TINY_TRANSBTS

DATA_SEED = 0
TRAIN_CASES = 8
HELD_OUT_CASES = 4
SHAPE = (48, 48, 48)
EPOCHS = 24
#: the issue's requirement on held-out synthetic cases
MIN_MEAN_WT_DICE = 0.8
#: no held-out case may fail outright
MIN_CASE_WT_DICE = 0.7
#: tumour core is harder (necrosis + enhancing rim); observed ≥ 0.74, asserted loosely
MIN_MEAN_TC_DICE = 0.5


def learning_config() -> TrainConfig:
    """Tiny TransBTS on 32³ crops, CPU, float32, no worker processes; no intermediate
    validation (``best.pt`` is the last epoch when there are no validation items)."""
    return TrainConfig(
        network=dict(TINY_TRANSBTS),
        roi_size=(32, 32, 32),
        batch_size=2,
        epochs=EPOCHS,
        lr=3e-3,
        val_interval=EPOCHS,
        sw_batch_size=2,
        num_workers=0,
        device="cpu",
        seed=0,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Train once for the module: ``{"result", "held_out", "seconds"}``."""
    tmp_path = tmp_path_factory.mktemp("learns")
    start = time.perf_counter()
    write_synthetic_brats(tmp_path / "syn", cases=TRAIN_CASES + HELD_OUT_CASES, shape=SHAPE, seed=DATA_SEED,
                          progress=False)
    report = import_brats(tmp_path / "syn", tmp_path / "studies", labeled_fraction=1.0, seed=0, progress=False)
    assert len(report.labeled) == TRAIN_CASES + HELD_OUT_CASES and not report.skipped

    items = sorted(studies_datalist(tmp_path / "studies", sources=("final",)), key=lambda item: item["case"])
    train_items, held_out = items[:TRAIN_CASES], items[TRAIN_CASES:]
    assert len(held_out) == HELD_OUT_CASES
    assert not {i["case"] for i in train_items} & {i["case"] for i in held_out}

    result = train(train_items, [], tmp_path / "run", learning_config(), resume=False, progress=False)
    return {"result": result, "held_out": held_out, "seconds": time.perf_counter() - start}


@pytest.mark.slow
def test_tiny_transbts_learns_synthetic_brats(trained: dict) -> None:
    start = time.perf_counter()
    result, held_out = trained["result"], trained["held_out"]
    assert [h["epoch"] for h in result.history] == list(range(1, EPOCHS + 1))
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]

    rows, summary = evaluate_checkpoint(result.last_checkpoint, held_out, device="cpu", num_workers=0, progress=False)
    elapsed = time.perf_counter() - start
    means = {region: summary[f"dice_{region}"]["mean"] for region in ("WT", "TC", "ET")}
    print(
        f"held-out Dice over {len(rows)} cases: "
        + ", ".join(f"{region} {value:.3f}" for region, value in means.items())
        + f"; per-case WT {[round(r['dice_WT'], 3) for r in rows]}"
        + f"; data + training {trained['seconds']:.1f} s, evaluation {elapsed:.1f} s"
    )

    assert [r["case"] for r in rows] == [i["case"] for i in held_out]
    assert means["WT"] > MIN_MEAN_WT_DICE, f"held-out mean WT Dice {means['WT']:.3f} <= {MIN_MEAN_WT_DICE}"
    assert min(r["dice_WT"] for r in rows) > MIN_CASE_WT_DICE, rows
    assert means["TC"] > MIN_MEAN_TC_DICE, f"held-out mean TC Dice {means['TC']:.3f} <= {MIN_MEAN_TC_DICE}"


@pytest.mark.slow
@pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no native bf16 (oneDNN): the defaults stay float32")
def test_cpu_bf16_default_keeps_the_trained_networks_labels(trained: dict) -> None:
    """The pool's default (bf16 autocast on a CPU with native bf16) against the same settings in
    float32, on the trained network and the held-out phantoms: WT/TC/ET Dice of the labels ≥ 0.99
    per case (the ``/infer`` bound), and the network really ran in bf16."""
    network, config = load_network(trained["result"].last_checkpoint, "cpu")
    network = prepare_network(network, channels_last=True)
    fp32 = POOL_WINDOWS.replace(cpu_bf16=False)
    assert POOL_WINDOWS.autocast_dtype("cpu", None) is torch.bfloat16 and fp32.autocast_dtype("cpu", None) is None
    for item in trained["held_out"]:
        image = infer_transforms()({"image": item["image"]})["image"].as_tensor()[None]
        fast, exact = (w.predict(network, image, config.resolved_roi_size)[0].argmax(0).numpy() for w in (POOL_WINDOWS, fp32))
        assert not np.array_equal(fast, np.zeros_like(fast))
        scores = brats_metrics(train_to_brats(fast.astype(np.uint8)), train_to_brats(exact.astype(np.uint8)))
        assert min(scores[f"dice_{k}"] for k in ("WT", "TC", "ET")) >= 0.99, (item["case"], scores)
