"""Convolutional blocks of TransBTS, built from MONAI units where MONAI has them.

* Encoder residual block (official ``Unet_skipconnection.EnBlock``): pre-activation
  ``x + Conv(ReLU(GN(Conv(ReLU(GN(x))))))`` -- this is MONAI's SegResNet
  :class:`~monai.networks.blocks.segresnet_block.ResBlock` with ``GroupNorm(8)``; see
  :func:`encoder_residual_block`.
* Decoder residual block (official ``EnBlock2`` / ``DeBlock``, BatchNorm, post-activation):
  :class:`ResidualConvBnRelu`.  MONAI has no block with this exact ordering (``UnetResBlock``
  puts its activation after the sum and uses a 1x1 projection), so it is two MONAI
  ``Convolution`` (conv → BN → ReLU) units plus the identity.
* Upsampling with a skip connection (official ``DeUp_Cat``): :class:`UpCat`.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.blocks.segresnet_block import ResBlock
from torch import nn

#: Groups of the encoder GroupNorm, as the official ``normalization(planes, "gn")``.
ENCODER_NORM_GROUPS = 8


def encoder_residual_block(channels: int) -> ResBlock:
    r"""Pre-activation residual block :math:`x + W_2 * \mathrm{ReLU}(\mathrm{GN}(W_1 * \mathrm{ReLU}(\mathrm{GN}(x))))`.

    3x3x3 convolutions, ``GroupNorm(8, channels)``.  MONAI's ``ResBlock`` has no convolution
    bias; the official ``EnBlock`` has one (``2 * channels`` parameters per block).
    """
    return ResBlock(spatial_dims=3, in_channels=channels, norm=("group", {"num_groups": ENCODER_NORM_GROUPS}))


def conv_bn_relu(in_channels: int, out_channels: int) -> Convolution:
    r""":math:`\mathrm{ReLU}(\mathrm{BN}(W * x + b))` with a 3x3x3 kernel, 'same' padding."""
    return Convolution(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=3,
        norm="batch",
        act=("relu", {"inplace": True}),
        bias=True,
    )


class ResidualConvBnRelu(nn.Module):
    r"""Post-activation residual block of the official decoder (``EnBlock2`` and ``DeBlock``):

    .. math:: y = x + \mathrm{ReLU}(\mathrm{BN}(W_2 * \mathrm{ReLU}(\mathrm{BN}(W_1 * x + b_1)) + b_2))
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(conv_bn_relu(channels, channels), conv_bn_relu(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.convs(x)


class UpCat(nn.Module):
    r"""Decoder stage: upsample ×2, concatenate the encoder skip, fuse, refine.

    .. math::
        u = \mathrm{ConvT}_{2, s=2}(W_{1\times1} * x),\qquad
        y = \mathrm{ResidualConvBnRelu}\big(W'_{1\times1} * [\,s,\ u\,]\big)

    where :math:`s` is the skip feature map (``out_channels`` channels, first in the
    concatenation as in the official ``DeUp_Cat``) -- official ``DeUp_Cat`` followed by ``DeBlock``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv3d(in_channels, out_channels, kernel_size=1)
        self.upsample = nn.ConvTranspose3d(out_channels, out_channels, kernel_size=2, stride=2)
        self.fuse = nn.Conv3d(2 * out_channels, out_channels, kernel_size=1)
        self.refine = ResidualConvBnRelu(out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        upsampled = self.upsample(self.reduce(x))
        return self.refine(self.fuse(torch.cat((skip, upsampled), dim=1)))
