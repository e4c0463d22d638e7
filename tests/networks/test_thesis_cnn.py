"""The 8-layer CNN of thesis Table 6: parameter count, layer sizes, logits, dropout modes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlabel.networks import THESIS_NUM_PARAMS, ThesisCNN


def test_parameter_count_is_the_thesis_number() -> None:
    net = ThesisCNN()
    assert THESIS_NUM_PARAMS == 1_341_739
    assert sum(p.numel() for p in net.parameters()) == 1_341_739
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 32, (3, 3)), (32, 32, (3, 3)), (32, 64, (3, 3)), (64, 64, (3, 3)), (64, 128, (3, 3)), (128, 128, (3, 3))]
    assert [(l.in_features, l.out_features) for l in linears] == [(128 * 4 * 4, 512), (512, 11)]
    assert len(convs) + len(linears) == 8
    slopes = {m.negative_slope for m in net.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.2} and sum(isinstance(m, nn.LeakyReLU) for m in net.modules()) == 6
    assert sorted(m.p for m in net.modules() if isinstance(m, nn.Dropout)) == [0.2, 0.2, 0.2, 0.5]


def test_logits_shape_and_dropout_modes() -> None:
    torch.manual_seed(0)
    net = ThesisCNN()
    x = torch.randn(3, 3, 32, 32)
    net.eval()
    with torch.no_grad():
        a, b = net(x), net(x)
    assert a.shape == (3, 11) and torch.equal(a, b)  # no dropout at eval
    net.train()
    with torch.no_grad():
        c = net(x)
    assert not torch.allclose(a, c)  # dropout is active in training


def test_other_sizes_and_errors() -> None:
    assert ThesisCNN(num_classes=3, image_size=16)(torch.randn(1, 3, 16, 16)).shape == (1, 3)
    with pytest.raises(ValueError, match="multiple of 8"):
        ThesisCNN(image_size=30)
    with pytest.raises(ValueError, match="three positive widths"):
        ThesisCNN(widths=(32, 64))
