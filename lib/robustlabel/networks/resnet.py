"""ResNet-18 for 32 x 32 images (the CIFAR variant of Cui et al. Table 1), built from MONAI's ResNet.

torchvision's ``resnet18`` has a 7 x 7 stride-2 stem and a max-pool, made for 224 x 224 images;
MONAI's :class:`~monai.networks.nets.ResNet` takes the stem's kernel, stride and the max-pool
as arguments, so the CIFAR variant is a configuration of it rather than a new network.
"""

from __future__ import annotations

from monai.networks.nets import ResNet
from torch import nn

#: ResNet-18: basic blocks, two per stage
RESNET18_LAYERS = (2, 2, 2, 2)
#: channels of the four stages before ``widen_factor``
RESNET18_WIDTHS = (64, 128, 256, 512)


def cifar_resnet18(num_classes: int = 10, widen_factor: float = 1.0, in_channels: int = 3) -> nn.Module:
    """ResNet-18, CIFAR variant: 3 x 3 stride-1 stem, no max-pool, basic blocks [2, 2, 2, 2].

    MONAI's :class:`~monai.networks.nets.ResNet` with ``spatial_dims=2``; stage widths
    ``64·w, 128·w, 256·w, 512·w`` (``w = widen_factor``; 1.0 gives the 11.2 M-parameter model).
    A 32 x 32 input leaves the last stage at 4 x 4 (three stride-2 stages), then global average
    pooling and one linear layer give the logits ``(N, num_classes)``.

    Args:
        num_classes: outputs of the final linear layer.
        widen_factor: ``w``, multiplies every stage width.
        in_channels: image channels.

    Raises:
        ValueError: ``w`` that leaves the first stage without a channel (``int(64·w) < 1``).
    """
    if not widen_factor > 0 or int(RESNET18_WIDTHS[0] * widen_factor) < 1:
        raise ValueError(f"widen_factor must give at least one channel (64·w >= 1), got {widen_factor}")
    return ResNet(
        block="basic",
        layers=list(RESNET18_LAYERS),
        block_inplanes=list(RESNET18_WIDTHS),
        spatial_dims=2,
        n_input_channels=in_channels,
        conv1_t_size=3,
        conv1_t_stride=1,
        no_max_pool=True,
        shortcut_type="B",
        widen_factor=widen_factor,
        num_classes=num_classes,
    )
