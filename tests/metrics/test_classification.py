"""Top-1 classification accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustlabel.metrics import accuracy as exported
from robustlabel.metrics.classification import accuracy


def test_accuracy_percent_and_errors():
    assert exported is accuracy
    assert accuracy(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), np.array([0, 1, 1])) == pytest.approx(200 / 3)
    assert accuracy(torch.tensor([[0.1, 0.9, 0.0]]), torch.tensor([1])) == 100.0
    with pytest.raises(ValueError, match="as many"):
        accuracy(torch.zeros(2, 3), np.array([0]))
    with pytest.raises(ValueError, match="as many"):
        accuracy(torch.zeros(0, 3), np.array([], dtype=np.int64))
