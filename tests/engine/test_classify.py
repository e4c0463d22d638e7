"""Classification teacher–student engine: splits, training sets, training, resume, prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustlabel.data.cifar import synthetic_cifar_images
from robustlabel.engine.classify import (
    ClassifierConfig,
    TrainingSet,
    accuracy,
    cifar_resnet18,
    fit_and_evaluate,
    fit_full_batch,
    image_transform,
    finished_epochs,
    make_training_set,
    predict_logits,
    pseudo_label,
    source_aware_loss,
    split_indices,
    train_classifier,
)
from robustlabel.losses import BetaCrossEntropyLoss, CrossEntropyLoss, get_loss


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: a second thread only adds contention
    yield
    torch.set_num_threads(previous)


def test_split_indices_disjoint_sizes_deterministic():
    split = split_indices(1000, labelled_fraction=0.1, val_fraction=0.1, seed=4)
    assert (len(split.val), len(split.labelled), len(split.unlabelled)) == (100, 90, 810)
    parts = np.concatenate([split.labelled, split.unlabelled, split.val])
    assert np.array_equal(np.sort(parts), np.arange(1000))
    again = split_indices(1000, 0.1, 0.1, seed=4)
    assert np.array_equal(again.labelled, split.labelled)
    assert not np.array_equal(split_indices(1000, 0.1, 0.1, seed=5).labelled, split.labelled)
    with pytest.raises(ValueError, match="labelled_fraction"):
        split_indices(10, 0.0, 0.1, 0)
    with pytest.raises(ValueError, match="leaves none labelled"):
        split_indices(10, 0.01, 0.1, 0)


def test_make_training_set_rows():
    images = np.arange(6, dtype=np.uint8)[:, None, None, None].repeat(3, 1).repeat(4, 2).repeat(4, 3)
    true = np.array([0, 1, 2, 0, 1, 2])
    teacher = make_training_set(images, true, np.array([1, 4]))
    assert teacher.labels.tolist() == [1, 1] and not teacher.is_pseudo.any()
    assert teacher.images[:, 0, 0, 0].tolist() == [1, 4]
    student = make_training_set(images, true, np.array([1, 4]), np.array([0, 5]), pseudo_labels=np.array([2, 2]))
    assert student.labels.tolist() == [1, 1, 2, 2] and student.is_pseudo.tolist() == [False, False, True, True]
    assert student.images[:, 0, 0, 0].tolist() == [1, 4, 0, 5]
    upper = make_training_set(images, true, np.array([1, 4]), np.array([0, 5]))
    assert upper.labels.tolist() == [1, 1, 0, 2] and not upper.is_pseudo.any()
    with pytest.raises(ValueError, match="2 unlabelled samples but 1 pseudo-labels"):
        make_training_set(images, true, np.array([1]), np.array([0, 5]), pseudo_labels=np.array([2]))
    with pytest.raises(ValueError, match="uint8"):
        TrainingSet(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.bool))


def test_source_aware_loss_routes_losses():
    loss = source_aware_loss("bce", beta=5.0)
    assert isinstance(loss.clinician, CrossEntropyLoss)
    assert isinstance(loss.pseudo, BetaCrossEntropyLoss) and loss.pseudo.beta == 5.0
    logits, target = torch.randn(4, 10), torch.tensor([1, 2, 3, 4])
    flags = torch.tensor([False, False, True, True])
    expected = (get_loss("ce", reduction="sum")(logits[:2], target[:2])
                + get_loss("bce", beta=5.0, reduction="sum")(logits[2:], target[2:])) / 4
    assert loss(logits, target, flags).item() == pytest.approx(expected.item(), rel=1e-5)


def test_resnet18_cifar_variant():
    net = cifar_resnet18(widen_factor=1.0)
    assert sum(p.numel() for p in net.parameters()) == 11_174_858  # ResNet-18 with a 3x3 stem, 10 classes
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    small = cifar_resnet18(widen_factor=0.125)
    shapes = []
    small.layer4.register_forward_hook(lambda module, args, out: shapes.append(tuple(out.shape)))
    assert small(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert shapes == [(2, 64, 4, 4)]  # no max-pool: 32 -> 4 through the three stride-2 stages only
    with pytest.raises(ValueError, match="widen_factor"):
        cifar_resnet18(widen_factor=0.001)


def test_image_transform_augments_and_normalises():
    torch.manual_seed(0)
    image = torch.full((3, 32, 32), 255, dtype=torch.uint8)
    out = image_transform(train=True)(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert (out.amin(dim=(1, 2)) < 0).any()  # zero padding shows up in some crop
    batch = image_transform(train=False)(torch.zeros(5, 3, 32, 32, dtype=torch.uint8))
    assert torch.allclose(batch[:, 0], torch.tensor(-0.4914 / 0.2470))


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


def test_accuracy_and_config_validation():
    assert accuracy(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), np.array([0, 1, 1])) == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="as many"):
        accuracy(torch.zeros(2, 3), np.array([0]))
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        ClassifierConfig(epochs=0)
    with pytest.raises(ValueError, match="lr_gamma"):
        ClassifierConfig(lr_gamma=2.0)
    assert ClassifierConfig(device="cpu").use_amp is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_request_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        ClassifierConfig(device="cuda").torch_device


def test_fit_full_batch_perceptron():
    torch.manual_seed(0)
    y = torch.arange(300) % 3
    x = torch.randn(300, 2) * 0.5 + torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 3.0]])[y]
    model = torch.nn.Linear(2, 3)
    curve = fit_full_batch(model, x, y, get_loss("gce", q=0.7), steps=300, lr=0.05)
    assert len(curve) == 300 and curve[-1] < 0.5 * curve[0]
    assert (model(x).argmax(1) == y).float().mean() > 0.9
    with pytest.raises(ValueError, match="steps >= 1"):
        fit_full_batch(model, x, y, get_loss("ce"), steps=0)
