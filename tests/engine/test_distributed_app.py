"""The MONAI Label app's multi-rank training path on CPU: a ``ranks: 2`` train request runs two
gloo ranks (real processes, :func:`robustlabel.engine.local_ranks.train_on_local_ranks`) and
publishes rank 0's model; ``multi_gpu`` without CUDA falls back to one process."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
import torch

APP_TESTS = Path(__file__).resolve().parents[1] / "app"
sys.path.insert(0, str(APP_TESTS))
from brats_server import APP_DIR, make_studies  # noqa: E402

sys.path.insert(0, str(APP_DIR))  # what MONAI Label does before it imports an app's main.py and lib/
from lib.configs.transbts import network_config  # noqa: E402
from lib.conf import parse_conf  # noqa: E402
from lib.datastore import BratsDatastore  # noqa: E402
from lib.errors import AppRequestError  # noqa: E402
from lib.conf import plan_ranks  # noqa: E402
from lib.trainers.transbts import TransBTSTrain  # noqa: E402
from robustlabel.engine.checkpoint import load_network, sha256_file  # noqa: E402


def test_multi_gpu_without_cuda_trains_in_one_process_and_bad_options_are_refused(caplog):
    if torch.cuda.is_available():
        pytest.skip("the fallback is for machines without CUDA")
    with caplog.at_level(logging.INFO, logger="lib.conf"):
        assert plan_ranks({"multi_gpu": True, "gpus": "all"}, "cpu") == (1, None)
    assert "without CUDA" in caplog.text
    assert plan_ranks({"ranks": "2"}, "cpu") == (2, None)
    assert plan_ranks({}, "cpu") == (1, None)
    with pytest.raises(AppRequestError, match="ranks"):
        plan_ranks({"ranks": 0}, "cpu")


def test_ranks_option_trains_on_two_gloo_ranks_and_publishes_rank_0s_model(tmp_path: Path) -> None:
    _, pristine = make_studies(tmp_path / "made")
    studies = Path(shutil.copytree(pristine, tmp_path / "studies"))
    datastore = BratsDatastore(str(studies), auto_reload=False)
    conf = parse_conf({"tiny": "true", "device": "cpu", "max_epochs": "2", "val_split": "0.5"},
                      default_model_dir=str(tmp_path / "model"))
    publish = tmp_path / "model" / "transbts_tiny.pt"
    task = TransBTSTrain("transbts", conf, network_config(conf), publish)
    stats = task({"ranks": 2, "train_batch_size": 1, "num_workers": 0}, datastore)
    assert stats["status"] == "DONE" and stats["ranks"] == 2 and stats["epoch"] == 2
    assert stats["last"]["ranks"] == 2 and stats["val_final"] >= 1
    assert stats["published_sha256"] == sha256_file(publish)
    network, config = load_network(publish)
    assert config.batch_size == 1 and sum(p.numel() for p in network.parameters()) > 0
    run_dir = Path(stats["run_dir"])
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2] and all(h["ranks"] == 2 for h in history)
    assert len(list((run_dir / "tensorboard").glob("events.*"))) == 1  # rank 0 alone logs
    assert json.loads(task.stats_path.read_text())["status"] == "DONE"


def test_batch_infer_with_ranks_shards_the_pool_and_matches_one_process(tmp_path: Path) -> None:
    """``/batch/infer`` with ``ranks: 2``: every pool image gets the label the single-process task
    writes, voxel for voxel, through the datastore (tag ``pseudo``, teacher SHA-256 in its info)."""
    import nibabel as nib
    import numpy as np

    from lib.infers.pseudo_pool import PoolPseudoLabelTask
    from robustlabel.engine.checkpoint import TrainingRecord
    from robustlabel.engine.config import TrainConfig
    from robustlabel.networks import TINY_TRANSBTS, build_network

    _, pristine = make_studies(tmp_path / "made")
    teacher = tmp_path / "teacher.pt"
    torch.manual_seed(0)
    config = TrainConfig(network=dict(TINY_TRANSBTS), device="cpu", sw_batch_size=1)
    torch.save({"network": build_network(config.network).state_dict(),
                "record": TrainingRecord(config=config.to_dict()).state_dict()}, teacher)
    conf = parse_conf({"tiny": "true", "device": "cpu"}, default_model_dir=str(tmp_path / "model"))
    labels = {}
    for name, extra in (("one", {}), ("two", {"ranks": 2})):
        studies = Path(shutil.copytree(pristine, tmp_path / name))
        datastore = BratsDatastore(str(studies), auto_reload=False)
        task = PoolPseudoLabelTask({"transbts": lambda: teacher}, conf)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # like each rank
        try:
            # float32 (no bf16 on the CPU): oneDNN's bf16 kernels need not round alike in one process and
            # in the ranks, and this compares voxel for voxel
            summary = task({"model": "transbts", "images": "unlabeled", "batch_size": 1, "num_workers": 0,
                            "cpu_bf16": False, **extra}, datastore)
        finally:
            torch.set_num_threads(threads)
        assert summary and {v["status"] for v in summary.values()} == {"written"}
        labels[name] = {}
        for case in summary:
            info = datastore.get_label_info(case, "pseudo")
            assert info["teacher"]["sha256"] == sha256_file(teacher)
            labels[name][case] = np.asarray(nib.load(datastore.get_label_uri(case, "pseudo")).dataobj)
    assert sorted(labels["two"]) == sorted(labels["one"])
    for case, label in labels["two"].items():
        assert np.array_equal(label, labels["one"][case]), case
