"""The shared FCN-on-VOC training pieces: losses with void, class weights, snapshots, resuming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustlabel.data.voc import VOID
from robustlabel.experiments.voc_fcn_training import (
    BackgroundSigmoidLoss,
    SolverConfig,
    best_of_last,
    build_fcn,
    build_loss,
    train_fcn,
)
from robustlabel.losses import get_loss, inverse_frequency_weights


def test_background_sigmoid_loss_is_eq8_on_the_logit_difference_and_ignores_void():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 5, 6)
    target = torch.randint(0, 2, (2, 5, 6))
    target[0, 0] = VOID
    loss = BackgroundSigmoidLoss()(logits, target)
    f = logits[:, 1] - logits[:, 0]
    expected = torch.where(target == 1, torch.nn.functional.softplus(-f), torch.sigmoid(f))[target != VOID].sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # two classes: the same as the multiclass Eq. 9 (1 - p_0 on background)
    assert loss.item() == pytest.approx(get_loss("cd_softmax", reduction="sum", ignore_index=VOID)(logits, target).item(),
                                        rel=1e-5)
    assert isinstance(build_loss("sigmoid", 2), BackgroundSigmoidLoss)
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("hinge", 2)


def test_pixel_summed_losses_skip_void_pixels():
    logits = torch.randn(1, 3, 4, 4)
    target = torch.full((1, 4, 4), VOID)
    target[0, 0, 0] = 2
    for name in ("logistic", "sigmoid"):
        value = build_loss(name, 3)(logits, target)
        single = build_loss(name, 3)(logits[..., :1, :1], target[..., :1, :1])
        assert value.item() == pytest.approx(single.item())
    weighted = build_loss("class_weighted", 3, [1.0, 1.0, 3.0])(logits, target)
    assert weighted.item() == pytest.approx(3 * build_loss("logistic", 3)(logits, target).item(), rel=1e-5)


def test_inverse_frequency_weights_balance_the_observed_labels():
    maps = [np.array([[0, 0, 0, 1], [0, 0, VOID, VOID]], np.uint8)]
    # 5 background, 1 foreground, void not counted
    weights = inverse_frequency_weights(maps, 2, ignore_index=VOID, normalise="total")
    assert weights == pytest.approx([6 / (2 * 5), 6 / (2 * 1)])
    assert inverse_frequency_weights(maps, 3, ignore_index=VOID, normalise="total")[2] == 1.0


def test_snapshots_and_best_of_last_five():
    assert SolverConfig(12000, 4000).snapshots == [4000, 8000, 12000]
    assert SolverConfig(12000, 2000).snapshots[-5:] == [4000, 6000, 8000, 10000, 12000]
    assert SolverConfig(10, 4).snapshots == [4, 8, 10]
    history = [{"iteration": i, "mean_iu": v} for i, v in enumerate([0.9, 0.1, 0.2, 0.5, 0.3, 0.4], 1)]
    assert best_of_last(history)["iteration"] == 4  # 0.9 is not among the last five
    with pytest.raises(ValueError):
        SolverConfig(0, 1)


def test_training_resumes_from_its_state_file(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (12, 16, 3), dtype=np.uint8) for _ in range(3)]
    targets = [np.where(rng.random((12, 16)) < 0.3, 1, 0).astype(np.uint8) for _ in range(3)]
    targets[0][0] = VOID
    state = tmp_path / "state.pt"
    test = (images, targets, 2)
    model = build_fcn(2, 0.0625, "xavier", None, seed=0)
    first = train_fcn(model, images, targets, build_loss("logistic", 2), SolverConfig(2, 1, iter_size=2, lr=1e-3),
                      seed=0, device="cpu", test=test, state_path=state)
    assert [h["iteration"] for h in first.history] == [1, 2] and state.is_file()
    calls = []
    model = build_fcn(2, 0.0625, "xavier", None, seed=5)
    resumed = train_fcn(model, images, targets, build_loss("logistic", 2), SolverConfig(4, 1, iter_size=2, lr=1e-3),
                        seed=0, device="cpu", test=test, state_path=state, progress=calls.append)
    assert [h["iteration"] for h in resumed.history] == [1, 2, 3, 4] and len(calls) == 2  # only 3 and 4 were run
    assert resumed.history[:2] == first.history
    assert all(0.0 <= h["mean_iu"] <= 1.0 for h in resumed.history)
