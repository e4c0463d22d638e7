"""Whole-volume prediction shared by validation, pseudo-labelling and held-out evaluation:
MONAI sliding-window inference under optional autocast, softmax in float32."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from monai.inferers import SlidingWindowInferer
from torch import nn

#: blending of overlapping windows (Gaussian weights favour window centres)
BLEND_MODE = "gaussian"


def make_inferer(roi_size: Sequence[int], sw_batch_size: int, overlap: float) -> SlidingWindowInferer:
    """MONAI :class:`~monai.inferers.SlidingWindowInferer` with Gaussian blending.

    Volumes smaller than ``roi_size`` are padded by MONAI and cropped back.
    """
    return SlidingWindowInferer(
        roi_size=tuple(int(r) for r in roi_size), sw_batch_size=int(sw_batch_size), overlap=float(overlap), mode=BLEND_MODE
    )


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` on ``device`` with ``dtype``; a no-op when ``dtype`` is ``None``."""
    with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
        yield


def predict_probabilities(
    network: nn.Module,
    images: torch.Tensor,
    inferer: SlidingWindowInferer,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Softmax probabilities ``(B, C, *S)`` (float32) of ``images`` ``(B, in_channels, *S)``.

    ``p = softmax(z)`` over the class axis of the sliding-window logits ``z``; the network is
    put in eval mode and run without gradients.
    """
    network.eval()
    images = images.as_tensor() if hasattr(images, "as_tensor") else images
    with torch.inference_mode(), autocast(images.device, amp_dtype):
        logits = inferer(images, network)
    return torch.softmax(logits.float(), dim=1)
