"""The 8-layer CNN of Ju 2017, thesis Table 6 (appendix C.1), for 32 x 32 CIFAR images.

Layers (3 x 3 convolutions with ``same`` padding and bias; widths ``w = (32, 64, 128)``)::

    block b ∈ {1, 2, 3}:  conv(w_b) → LeakyReLU(0.2) → conv(w_b) → LeakyReLU(0.2)
                          → 2 x 2 max-pool → dropout(0.2)          # 32² → 16² → 8² → 4²
    head:                 flatten (128·4·4 = 2048) → fc 512 → ReLU → dropout(0.5) → fc K

Six convolutions and two fully connected layers: eight layers.  With 3 input channels and
``K = 11`` outputs the parameter count is

.. math::
    \\underbrace{896 + 9248}_{block 1} + \\underbrace{18496 + 36928}_{block 2}
    + \\underbrace{73856 + 147584}_{block 3} + \\underbrace{1049088}_{fc 512} + \\underbrace{5643}_{fc 11}
    = 1\\,341\\,739,

exactly the thesis' number (:data:`THESIS_NUM_PARAMS`).  The network returns logits; the
table's final "softmax" is part of the loss.  The thesis' Table 1 caption says "2-layer
multilayer perceptron", but its text (Sec. 5.1.2) and Table 6 use this CNN.

Each convolution is MONAI's :class:`~monai.networks.blocks.Convolution` (conv → activation,
no normalisation, no dropout inside the block).
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.blocks import Convolution
from torch import nn

#: Table 6's "Parameters" row (3 input channels, 11 classes)
THESIS_NUM_PARAMS = 1_341_739
#: channel widths of the three convolution blocks
THESIS_WIDTHS = (32, 64, 128)


def _conv(in_channels: int, out_channels: int) -> Convolution:
    return Convolution(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=3,
        act=("leakyrelu", {"negative_slope": 0.2}),
        norm=None,
        dropout=None,
        bias=True,
    )


class ThesisCNN(nn.Module):
    """Thesis Table 6: three conv blocks and a two-layer fully connected head (logits out).

    Args:
        num_classes: outputs of the last layer (11: ten relevant CIFAR-10 classes + non-relevant).
        in_channels: image channels.
        image_size: input height = width; must be divisible by 8 (three 2 x 2 pools).
        widths: channels of the three blocks.
        hidden: width of the first fully connected layer.
        conv_dropout, fc_dropout: dropout after each block and after the hidden layer.

    Raises:
        ValueError: a non-positive size, or an ``image_size`` not divisible by 8.
    """

    def __init__(
        self,
        num_classes: int = 11,
        in_channels: int = 3,
        image_size: int = 32,
        widths: Sequence[int] = THESIS_WIDTHS,
        hidden: int = 512,
        conv_dropout: float = 0.2,
        fc_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if min(num_classes, in_channels, hidden, *widths) < 1 or len(widths) != 3:
            raise ValueError(f"need three positive widths and positive sizes, got widths={widths}, hidden={hidden}, "
                             f"num_classes={num_classes}, in_channels={in_channels}")
        if image_size < 8 or image_size % 8:
            raise ValueError(f"image_size must be a positive multiple of 8 (three 2 x 2 max-pools), got {image_size}")
        blocks: list[nn.Module] = []
        previous = in_channels
        for width in widths:
            blocks += [_conv(previous, width), _conv(width, width), nn.MaxPool2d(2), nn.Dropout(conv_dropout)]
            previous = width
        self.features = nn.Sequential(*blocks)
        side = image_size // 8
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(previous * side * side, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(fc_dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
