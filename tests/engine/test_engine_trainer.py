"""Trainer: source-aware loss routing, checkpoints and history, resume after kill -9, errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from ignite.engine import Events

from robustlabel.data.studies import studies_datalist
from robustlabel.data.transforms import train_transforms
from robustlabel.engine.checkpoint import load_network
from robustlabel.engine.datalist import NoClinicianLabelsError, UnreadableCaseError, make_loader
from robustlabel.engine.trainer import (
    SourceAwareTrainer,
    build_optimizer,
    build_source_aware_loss,
    prepare_plain_batch,
    train,
)
from robustlabel.losses import get_loss
from robustlabel.networks import build_network

from engine_helpers import tiny_config


def test_mixed_batch_applies_ce_to_final_and_robust_loss_to_pseudo(studies_template):
    """One step on a batch holding a final and a pseudo item: the loss MONAI's iteration
    back-propagates equals (Σ CE over the final item + w Σ GCE over the pseudo item) / |V|."""
    final = studies_datalist(studies_template, sources=("final",))
    items = [final[0], {**final[1], "source": "pseudo"}]
    config = tiny_config(pseudo_loss="gce", pseudo_params={"q": 0.7}, pseudo_weight=0.5)
    torch.manual_seed(0)
    network = build_network(config.network)
    loader = make_loader(items, train_transforms(config.resolved_roi_size), batch_size=2, shuffle=True,
                         num_workers=0, seed=3)
    trainer = SourceAwareTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=loader, network=network,
        optimizer=build_optimizer(network, config), loss_function=build_source_aware_loss(config),
        prepare_batch=prepare_plain_batch, decollate=False,
    )
    seen = {}

    @trainer.on(Events.ITERATION_COMPLETED)
    def capture(engine):
        seen.update(pred=engine.state.output["pred"].detach(), label=engine.state.output["label"],
                    loss=engine.state.output["loss"].detach(), is_pseudo=engine.state.is_pseudo.clone(),
                    sources=list(engine.state.batch["source"]))

    trainer.run()
    assert seen["is_pseudo"].tolist() == [s == "pseudo" for s in seen["sources"]]
    assert sorted(seen["is_pseudo"].tolist()) == [False, True]
    pred, label, mask = seen["pred"], seen["label"], seen["is_pseudo"]
    ce = get_loss("ce", reduction="none")(pred, label)
    gce = get_loss("gce", q=0.7, reduction="none")(pred, label)
    expected = (ce[~mask].sum() + 0.5 * gce[mask].sum()) / ce.numel()
    torch.testing.assert_close(seen["loss"], expected, rtol=1e-5, atol=1e-6)
    # and it is neither loss applied to the whole batch
    assert not torch.isclose(seen["loss"], ce.mean(), rtol=1e-3)
    assert not torch.isclose(seen["loss"], 0.5 * gce.mean(), rtol=1e-3)


def test_teacher_run_writes_checkpoints_history_and_tensorboard(teacher):
    out = teacher.out_dir
    assert teacher.last_checkpoint.is_file() and teacher.best_checkpoint.is_file()
    assert (out / "tensorboard").is_dir() and any((out / "tensorboard").iterdir())
    lines = (out / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1]
    entry = teacher.history[0]
    assert entry["lr"] == pytest.approx(2e-4)
    assert 0.0 <= entry["val_mean_dice"] <= 1.0
    assert set(entry) >= {"loss", "val_dice_wt", "val_dice_tc", "val_dice_et"}
    assert teacher.best_epoch == 1 and teacher.best_metric == pytest.approx(entry["val_mean_dice"])
    network, config = load_network(teacher.best_checkpoint)
    assert config.pseudo_loss == "ce" and not network.training
    last = torch.load(teacher.last_checkpoint, weights_only=True)
    assert set(last) == {"network", "optimizer", "lr_scheduler", "trainer", "record"}  # no scaler on CPU
    assert last["trainer"]["iteration"] == 1 and last["lr_scheduler"]["last_epoch"] == 1


RESUME_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from robustlabel.engine.trainer import train
    from engine_helpers import tiny_config

    items, out = json.loads(sys.argv[1]), sys.argv[2]

    def slow_after_first_epoch(entry):
        if entry["epoch"] == 1:
            time.sleep(120)  # the test kills us here, after the epoch-1 checkpoint

    train(items[:2], items[2:], out, tiny_config(epochs=2), progress=False, on_epoch=slow_after_first_epoch)
    """
)


def test_resume_after_kill9_continues_from_saved_epoch(studies_template, tmp_path):
    items = studies_datalist(studies_template, sources=("final",))
    out = tmp_path / "run"
    script = tmp_path / "interrupted_training.py"
    script.write_text(RESUME_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script), json.dumps(items), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    history = out / "history.jsonl"
    try:
        deadline = time.monotonic() + 120
        while not (history.is_file() and history.read_text().strip()):
            assert proc.poll() is None, f"training died early: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "no epoch checkpoint within 120 s"
            time.sleep(0.2)
    finally:
        proc.kill()  # SIGKILL: no handler, no cleanup
        proc.wait()
    assert proc.returncode == -9
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["trainer"]["iteration"] == 1 and len(saved["record"]["history"]) == 1
    assert not list(out.glob(".*.tmp")), "a temporary checkpoint was left behind"

    result = train(items[:2], items[2:], out, tiny_config(epochs=2), progress=False)

    assert result.start_epoch == 1
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.history[0] == saved["record"]["history"][0]  # the killed run's epoch, restored
    final = torch.load(result.last_checkpoint, weights_only=True)
    steps_per_epoch = 1  # two training items, batch size 2
    # Adam's step counter continued from the checkpoint: 2 epochs in all, not 1
    assert all(int(s["step"]) == 2 * steps_per_epoch for s in final["optimizer"]["state"].values())
    # the poly schedule continued too: epoch e (1-based) runs at lr0 (1 - (e-1)/2)^0.9
    for entry in result.history:
        assert entry["lr"] == pytest.approx(2e-4 * (1 - (entry["epoch"] - 1) / 2) ** 0.9)
    assert final["trainer"]["iteration"] == 2
    assert [json.loads(line)["epoch"] for line in (out / "history.jsonl").read_text().splitlines()] == [1, 2]


def test_resume_refuses_a_different_configuration(teacher, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(teacher.last_checkpoint, out / "last.pt")
    path = str(out / "last.pt")  # real files, enough for the datalist pre-flight checks
    items = [{"image": path, "label": path, "source": "final", "case": "x"}]
    with pytest.raises(ValueError, match=r"different configuration \(lr: 0.0002 -> 0.001\)"):
        train(items, [], out, tiny_config(pseudo_loss="ce", pseudo_params={}, lr=1e-3), progress=False)


def test_no_clinician_labels_is_a_clear_error(studies_template, tmp_path):
    pseudo_only = [{**item, "source": "pseudo"} for item in studies_datalist(studies_template, sources=("final",))]
    with pytest.raises(NoClinicianLabelsError, match="no clinician labels"):
        train(pseudo_only, [], tmp_path / "run", tiny_config(), progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_unknown_loss_name_propagates_get_loss_message(studies_template, tmp_path):
    with pytest.raises(ValueError) as expected:
        get_loss("nope")
    items = studies_datalist(studies_template, sources=("final",))
    with pytest.raises(ValueError) as raised:
        train(items, [], tmp_path / "run", tiny_config(pseudo_loss="nope"), progress=False)
    assert str(raised.value) == str(expected.value)


def test_unreadable_case_names_the_file(studies, tmp_path):
    items = studies_datalist(studies, sources=("final",))
    corrupt = Path(items[1]["image"])
    data = corrupt.read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])  # truncated gzip: the header still reads
    with pytest.raises(UnreadableCaseError) as raised:
        train(items[:2], [], tmp_path / "run", tiny_config(), progress=False)
    assert str(corrupt) in str(raised.value) and items[1]["case"] in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_missing_file_and_bad_source_are_named(studies_template, tmp_path):
    items = studies_datalist(studies_template, sources=("final",))
    with pytest.raises(ValueError, match="does not exist"):
        train([{**items[0], "image": str(tmp_path / "gone.nii.gz")}], [], tmp_path / "run", tiny_config(), progress=False)
    with pytest.raises(ValueError, match="'source' must be one of"):
        train([{**items[0], "source": "original"}], [], tmp_path / "run", tiny_config(), progress=False)


def test_stop_request_ends_the_run_after_a_checkpointed_epoch(studies_template, tmp_path):
    items = studies_datalist(studies_template, sources=("final",))
    seen = []
    result = train(items[:2], [], tmp_path / "run", tiny_config(epochs=3), progress=False,
                   on_epoch=seen.append, stop=lambda: len(seen) >= 1)
    assert [h["epoch"] for h in result.history] == [1] and [h["epoch"] for h in seen] == [1]
    assert torch.load(result.last_checkpoint, weights_only=True)["trainer"]["iteration"] == 1
    assert result.best_epoch == 1 and result.best_metric is None  # no validation cases: best follows last


def test_finished_run_releases_its_network(studies_template, tmp_path):
    """MONAI's engines form reference cycles; train() must not leave the run's model alive."""
    import gc

    from robustlabel.networks import TransBTS

    def live_networks() -> int:
        return sum(isinstance(o, TransBTS) for o in gc.get_objects())

    items = studies_datalist(studies_template, sources=("final",))
    gc.collect()
    before = live_networks()
    gc.disable()  # only an explicit collection (inside train) may free the cycles
    try:
        train(items[:2], [], tmp_path / "run", tiny_config(epochs=1), progress=False)
        after = live_networks()
    finally:
        gc.enable()
    assert after == before
