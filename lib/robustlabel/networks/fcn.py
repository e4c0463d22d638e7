"""FCN-AlexNet (Long, Shelhamer and Darrell, CVPR 2015) on torchvision's AlexNet.

Layout (the FCN reference ``voc-fcn-alexnet/net.py`` of shelhamer/fcn.berkeleyvision.org):

* ``features`` — the convolutional part of ``torchvision.models.alexnet`` with conv1's padding
  raised from 2 to **100** and Caffe's ceil-mode max pooling, so that even an image subsampled
  by 4 (about 125×94) still covers fc6's 6×6 window;
* ``fc6`` (6×6 conv, ReLU, dropout 0.5) and ``fc7`` (1×1 conv, ReLU, dropout 0.5) — AlexNet's
  first two fully connected layers as convolutions;
* ``score`` — a 1×1 convolution to ``K`` classes;
* ``upscore`` — a learned transposed convolution, kernel 63, stride 32, no bias, followed by
  the reference's crop: output pixel ``u`` of ``upscore`` sits over input pixel ``u − 18``, so
  the logits are ``upscore[..., 18:18+H, 18:18+W]``.  (The 18 follows from composing the
  layers' coordinate maps ``x_in = 32·x_fc + 13`` and ``x_fc = (u − 31)/32``.)

**Which AlexNet.** torchvision's AlexNet is not the Caffe one FCN started from: it has
64/192/384/256/256 convolution channels against 96/256/384/384/256, no grouped convolutions
and no local response normalisation.  We keep torchvision's so its ImageNet state dict
(``alexnet-owt-*.pth``) loads with :func:`load_alexnet_weights`.

**Transfer.** :data:`TRANSFERABLE` (``features``, ``fc6``, ``fc7``) carry over between tasks;
:data:`NON_TRANSFERABLE` (``score``, ``upscore``) depend on the label set and are
re-initialised (Xavier, as in the thesis §5.3.2) by :meth:`FCNAlexNet.reset_head`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch
from torch import nn

#: parts that are copied from a pre-trained model
TRANSFERABLE = ("features", "fc6", "fc7")
#: parts that depend on the classes and are re-initialised for fine-tuning
NON_TRANSFERABLE = ("score", "upscore")
#: conv1 padding and crop offset of the FCN reference (voc-fcn-alexnet)
CONV1_PADDING = 100
CROP_OFFSET = 18
UPSCORE_KERNEL, UPSCORE_STRIDE = 63, 32
#: width of AlexNet's fully connected layers
FC_CHANNELS = 4096
HEAD_INITS = ("xavier", "bilinear")


def _alexnet_features(width: float) -> nn.Sequential:
    """torchvision's ``alexnet().features`` (channels × ``width``), conv1 padding 100, ceil pooling."""
    from torchvision.models import alexnet

    with torch.device("meta"):  # the layer layout only: no memory, no initialisation cost
        reference = alexnet(weights=None).features
    layers: list[nn.Module] = []
    in_channels = 3
    first = True
    for module in reference:
        if isinstance(module, nn.Conv2d):
            out_channels = max(1, int(round(module.out_channels * width)))
            layers.append(nn.Conv2d(in_channels, out_channels, module.kernel_size, module.stride,
                                    CONV1_PADDING if first else module.padding))
            in_channels, first = out_channels, False
        elif isinstance(module, nn.MaxPool2d):
            layers.append(nn.MaxPool2d(module.kernel_size, module.stride, module.padding, ceil_mode=True))
        else:
            layers.append(module)
    return nn.Sequential(*layers)


def bilinear_kernel(channels: int, size: int) -> torch.Tensor:
    """``(C, C, s, s)`` weights that make a transposed convolution bilinear interpolation per channel."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float64)
    filt = (1 - (og - centre).abs() / factor)
    kernel = filt[:, None] * filt[None, :]
    weight = torch.zeros(channels, channels, size, size, dtype=torch.float64)
    weight[range(channels), range(channels)] = kernel
    return weight.float()


class FCNAlexNet(nn.Module):
    """FCN-32s on AlexNet; returns logits ``(N, K, H, W)`` for images ``(N, 3, H, W)``.

    Args:
        n_classes: ``K`` output classes (background included).
        width: channel multiplier of every layer (1.0 = AlexNet; smaller only for CPU smoke runs,
            and then ImageNet weights cannot be loaded).
        dropout: dropout probability after fc6 and fc7 (0.5 in the reference).
        head_init: ``"xavier"`` (thesis) or ``"bilinear"`` (FCN reference's fixed upsampling
            initialisation) for ``upscore``; ``score`` is always Xavier.

    Raises:
        ValueError: for ``n_classes < 1``, ``width <= 0`` or an unknown ``head_init``.
    """

    def __init__(self, n_classes: int, width: float = 1.0, dropout: float = 0.5, head_init: str = "xavier") -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width}")
        if head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {HEAD_INITS}, got {head_init!r}")
        self.n_classes, self.width, self.head_init = int(n_classes), float(width), head_init
        self.features = _alexnet_features(width)
        c5 = [m for m in self.features if isinstance(m, nn.Conv2d)][-1].out_channels
        fc = max(1, int(round(FC_CHANNELS * width)))
        self.fc6 = nn.Sequential(nn.Conv2d(c5, fc, 6), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.fc7 = nn.Sequential(nn.Conv2d(fc, fc, 1), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.score = nn.Conv2d(fc, n_classes, 1)
        self.upscore = nn.ConvTranspose2d(n_classes, n_classes, UPSCORE_KERNEL, UPSCORE_STRIDE, bias=False)
        for part in TRANSFERABLE:
            for module in getattr(self, part).modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.xavier_uniform_(module.weight)
                    nn.init.zeros_(module.bias)
        self.reset_head()

    def reset_head(self) -> None:
        """Re-initialise the non-transferable layers: Xavier ``score`` (zero bias); ``upscore``
        Xavier or bilinear (``head_init``)."""
        nn.init.xavier_uniform_(self.score.weight)
        nn.init.zeros_(self.score.bias)
        with torch.no_grad():
            if self.head_init == "bilinear":
                self.upscore.weight.copy_(bilinear_kernel(self.n_classes, UPSCORE_KERNEL))
            else:
                nn.init.xavier_uniform_(self.upscore.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"FCNAlexNet expects images of shape (N, 3, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        y = self.upscore(self.score(self.fc7(self.fc6(self.features(x)))))
        if y.shape[-2] < CROP_OFFSET + height or y.shape[-1] < CROP_OFFSET + width:  # pragma: no cover - geometry
            raise RuntimeError(f"upsampled map {tuple(y.shape[-2:])} too small for the crop of {height}x{width}")
        return y[..., CROP_OFFSET:CROP_OFFSET + height, CROP_OFFSET:CROP_OFFSET + width]

    # ----------------------------------------------------------------- transfer
    def transferable_state_dict(self) -> dict[str, torch.Tensor]:
        """The parameters of :data:`TRANSFERABLE` (``features.*``, ``fc6.*``, ``fc7.*``)."""
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k.split(".")[0] in TRANSFERABLE}

    def load_transferable(self, state: Mapping[str, torch.Tensor], reset_head: bool = True) -> None:
        """Copy ``features``/``fc6``/``fc7`` from ``state`` (a :meth:`transferable_state_dict` or a full
        state dict of a model with any number of classes) and re-initialise the head.

        Raises:
            KeyError: when a transferable parameter is missing from ``state``.
            ValueError: when a shape differs (e.g. another ``width``).
        """
        own = self.state_dict()
        for key in own:
            if key.split(".")[0] not in TRANSFERABLE:
                continue
            if key not in state:
                raise KeyError(f"transferable parameter {key!r} missing from the pre-trained state")
            if tuple(state[key].shape) != tuple(own[key].shape):
                raise ValueError(f"{key}: pre-trained shape {tuple(state[key].shape)} != {tuple(own[key].shape)}")
            own[key] = state[key].to(own[key].dtype)
        self.load_state_dict(own)
        if reset_head:
            self.reset_head()


def load_alexnet_weights(model: FCNAlexNet, path: str | os.PathLike) -> list[str]:
    """Load a local torchvision ImageNet AlexNet state dict into the compatible layers of ``model``.

    ``features.*`` load as they are; ``classifier.1`` (fc6, 4096×9216) and ``classifier.4`` (fc7)
    are reshaped to 6×6 and 1×1 convolutions; ``classifier.6`` (the 1000-class layer) is not used.

    Returns:
        the names of ``model``'s parameters that were loaded.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when ``model.width != 1`` or the file is not an AlexNet state dict.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"AlexNet weights file not found: {path}")
    if model.width != 1.0:
        raise ValueError(f"ImageNet AlexNet weights need width 1.0, the model has width {model.width}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    mapping = {"fc6.0": "classifier.1", "fc7.0": "classifier.4"}
    own = model.state_dict()
    loaded = []
    for key, value in own.items():
        part = key.split(".")[0]
        if part == "features":
            source = key
        elif part in ("fc6", "fc7"):
            source = mapping[key.rsplit(".", 1)[0]] + "." + key.rsplit(".", 1)[1]
        else:
            continue
        if source not in state:
            raise ValueError(f"{path}: not a torchvision AlexNet state dict (no {source!r})")
        tensor = state[source]
        if tensor.numel() != value.numel():
            raise ValueError(f"{path}: {source} has {tuple(tensor.shape)}, FCN-AlexNet's {key} needs {tuple(value.shape)}")
        own[key] = tensor.reshape(value.shape).to(value.dtype)
        loaded.append(key)
    model.load_state_dict(own)
    return loaded


def count_parameters(model: nn.Module, parts: tuple[str, ...] | None = None) -> int:
    """Number of parameters of ``model`` (or of its top-level ``parts``)."""
    return sum(p.numel() for name, p in model.named_parameters() if parts is None or name.split(".")[0] in parts)


def receptive_output_size(size: int) -> int:
    """Length of ``upscore``'s output for an input side of ``size`` pixels (Caffe ceil pooling)."""
    s = math.floor((size + 2 * CONV1_PADDING - 11) / 4) + 1
    for _ in range(3):
        s = math.ceil((s - 3) / 2) + 1
    s = s - 6 + 1
    return (s - 1) * UPSCORE_STRIDE + UPSCORE_KERNEL
