"""Full-batch Adam for the 2-D toy perceptrons."""

from __future__ import annotations

import pytest
import torch

from robustlabel.engine.full_batch import fit_full_batch
from robustlabel.losses import get_loss


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
