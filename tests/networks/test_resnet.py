"""The CIFAR ResNet-18 of Cui et al. Table 1 (MONAI ResNet, 3 x 3 stem, no max-pool)."""

from __future__ import annotations

import pytest
import torch

from robustlabel.networks import cifar_resnet18 as exported
from robustlabel.networks.resnet import cifar_resnet18


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


def test_resnet18_is_exported_and_seeded_weights_are_reproducible():
    assert exported is cifar_resnet18
    torch.manual_seed(3)
    first = cifar_resnet18(num_classes=4, widen_factor=0.0625, in_channels=1)
    torch.manual_seed(3)
    second = cifar_resnet18(num_classes=4, widen_factor=0.0625, in_channels=1)
    x = torch.randn(2, 1, 32, 32)
    first.eval(), second.eval()
    assert first(x).shape == (2, 4) and torch.equal(first(x), second(x))
