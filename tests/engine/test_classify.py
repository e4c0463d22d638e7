"""Classification teacher–student engine: training, resume, best-epoch selection, prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustlabel.data.cifar import synthetic_cifar_images
from robustlabel.data.splits import make_training_set
from robustlabel.engine.classify import (
    ClassifierConfig,
    finished_epochs,
    fit_and_evaluate,
    predict_logits,
    pseudo_label,
    train_classifier,
)
from robustlabel.engine.config import amp_dtype_for
from robustlabel.losses.source_aware import source_aware_loss
from robustlabel.metrics.classification import accuracy
from robustlabel.networks.resnet import cifar_resnet18


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: a second thread only adds contention
    yield
    torch.set_num_threads(previous)


def test_train_learns_and_resumes_from_checkpoint(tmp_path):
    train, test = synthetic_cifar_images(400, seed=0), synthetic_cifar_images(200, seed=1)
    data = make_training_set(train.images, train.labels, np.arange(400))
    build = lambda: cifar_resnet18(widen_factor=0.0625)  # noqa: E731
    ckpt = tmp_path / "ckpt"

    cfg2 = ClassifierConfig(epochs=2, batch_size=32, lr=0.05, lr_milestones=(3,), device="cpu")
    torch.manual_seed(0)
    net = build()
    summary = train_classifier(net, data, source_aware_loss("ce"), cfg2, checkpoint_dir=ckpt, progress=False)
    assert (summary.epochs_trained, summary.resumed_from_epoch) == (2, 0) and np.isfinite(summary.last_loss)
    assert finished_epochs(ckpt) == 2

    cfg5 = ClassifierConfig(epochs=5, batch_size=32, lr=0.05, lr_milestones=(3,), device="cpu")
    net, record = fit_and_evaluate(build, data, source_aware_loss("ce"), cfg5, {"test": (test.images, test.labels)},
                                   checkpoint_dir=ckpt, progress=False)
    assert record["resumed_from_epoch"] == 2 and record["train_size"] == 400 and record["n_pseudo"] == 0
    assert record["test_acc"] > 40.0  # chance is 10 %
    assert sorted(p.name for p in ckpt.iterdir()) == ["last.pt"] and finished_epochs(ckpt) == 5
    state = torch.load(ckpt / "last.pt", weights_only=True)
    assert state["trainer"]["iteration"] == 5 * 13 and state["lr_scheduler"]["_last_lr"] == [pytest.approx(0.005)]
    assert state["optimizer"]["state"]  # momentum buffers were saved

    again = cifar_resnet18(widen_factor=0.0625)  # fresh weights: finished run loads, does not train
    summary = train_classifier(again, data, source_aware_loss("ce"), cfg5, checkpoint_dir=ckpt, progress=False)
    assert summary.epochs_trained == 0 and summary.resumed_from_epoch == 5
    with pytest.raises(ValueError, match="has 5 epochs, more than the 4"):
        train_classifier(again, data, source_aware_loss("ce"), ClassifierConfig(epochs=4, device="cpu"), checkpoint_dir=ckpt)
    assert torch.equal(predict_logits(again, test.images), predict_logits(net, test.images))
    labels, confidence = pseudo_label(net, test.images[:50])
    assert labels.shape == (50,) and labels.dtype == np.int64 and ((confidence > 0.1) & (confidence <= 1)).all()
    assert accuracy(predict_logits(net, test.images[:50]), labels) == 100.0


def test_config_validation():
    with pytest.raises(ValueError, match="optimizer"):
        ClassifierConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        ClassifierConfig(epochs=0)
    with pytest.raises(ValueError, match="lr_gamma"):
        ClassifierConfig(lr_gamma=2.0)
    assert ClassifierConfig(device="cpu").use_amp is False
    assert ClassifierConfig(device="cpu", precision="bf16").precision_used == "fp32"  # autocast only on CUDA


def test_autocast_request_on_cuda():
    """What would run on a GPU (amp_dtype_for needs no GPU for an explicit dtype): fp16 by default,
    ``precision`` overrides ``amp``."""
    cuda = torch.device("cuda")
    cases = [({}, torch.float16), ({"amp": False}, None), ({"precision": "fp32"}, None),
             ({"precision": "bf16", "amp": False}, torch.bfloat16), ({"precision": "fp16", "amp": False}, torch.float16)]
    for options, dtype in cases:
        assert amp_dtype_for(cuda, *ClassifierConfig(device="cpu", **options)._autocast_request()) == dtype, options


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_request_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        ClassifierConfig(device="cuda").torch_device
