"""Whole-volume prediction shared by validation, pseudo-labelling and held-out evaluation:
MONAI sliding-window inference under optional autocast, softmax in float32.

On CPU, oneDNN runs ``conv3d`` about 1.5-2x faster when the weights are in the
``channels_last_3d`` (NDHWC) memory format (measured with TransBTS on a 2-core AMD EPYC:
tiny 64x64x48 0.73 s -> 0.48 s, full 96^3 9.3 s -> 4.7 s per volume); :func:`prepare_network`
converts a network for inference.  The result equals the NCDHW one up to float rounding of the
reordered sums (|Δz| ~ 1e-6..1e-3), which can flip the argmax only at near-ties of the logits.

Cropping to the brain (``crop_margin``, :mod:`robustlabel.engine.crop`) runs the sliding window on
the non-zero bounding box only; :class:`WindowSettings` groups overlap, blending, ``sw_batch_size``
and the crop, and :meth:`WindowSettings.stock` restores today's behaviour (no crop, overlap 0.5,
Gaussian blending), the fixed baseline of the benchmarks.

The two callers the user waits for have their own defaults, defined here once and chosen by
measurement (``scripts/bench_crop.py``: a tiny TransBTS trained inside the benchmark, every
setting's WT/TC/ET Dice against the stock output and its window count and time, side by side):

* :data:`INFER_WINDOWS`, the ``/infer`` of one volume (a clinician waits; the labels must stay
  those of today's output, WT Dice ≥ 0.99 against it);
* :data:`POOL_WINDOWS`, the pool pseudo-labeller (throughput; its labels are pseudo-labels that a
  robust loss is trained on, WT Dice ≥ 0.98 against today's output).

Both came out the same: see the two constants.

**bf16 on the CPU** (``cpu_bf16``): on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX;
:func:`cpu_bf16_supported`) both defaults run the network under ``torch.autocast("cpu",
torch.bfloat16)``; the softmax stays float32.  Measured on a 2-core AMD EPYC (AVX512-BF16), the
full TransBTS per 4×128³ window, float32 → bf16: 6.48 → 2.75 s in batches of 4 (the defaults'
``sw_batch_size``), 4.65 → 3.40 s one at a time (6.28 → 2.86 s in another run); the tiny one,
4 windows of 32³: 13.0 → 9.7 ms per window; labels of a trained tiny TransBTS against float32,
WT Dice 0.9995-0.9998 (``scripts/bench_crop.py`` measures it beside the other settings).
Elsewhere (no native bf16, where autocast would emulate it and run slower) float32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from monai.inferers import SlidingWindowInferer
from monai.utils import BlendMode, look_up_option
from torch import nn

from .crop import DEFAULT_MARGIN, predict_in_foreground

#: blending of overlapping windows in today's sliding window (Gaussian weights favour window centres)
BLEND_MODE = "gaussian"
#: overlap of today's sliding window (the stock baseline)
STOCK_OVERLAP = 0.5
#: blending modes of MONAI's sliding window
BLEND_MODES: tuple[str, ...] = tuple(m.value for m in BlendMode)


def make_inferer(roi_size: Sequence[int], sw_batch_size: int, overlap: float, blend: str = BLEND_MODE) -> SlidingWindowInferer:
    """MONAI :class:`~monai.inferers.SlidingWindowInferer` (Gaussian blending by default).

    Volumes smaller than ``roi_size`` are padded by MONAI and cropped back.
    """
    return SlidingWindowInferer(
        roi_size=tuple(int(r) for r in roi_size), sw_batch_size=int(sw_batch_size), overlap=float(overlap),
        mode=look_up_option(blend, BLEND_MODES),
    )


@dataclass(frozen=True)
class WindowSettings:
    """Sliding-window options of one caller (``/infer``, the pool, validation).

    Args:
        sw_batch_size: windows per forward pass.
        overlap: overlap of neighbouring windows, in ``[0, 1)``.
        blend: how overlapping windows are averaged, ``"gaussian"`` or ``"constant"`` (MONAI's
            ``BlendMode``).
        crop_margin: crop to the non-zero bounding box grown by this many voxels before the
            sliding window (:mod:`robustlabel.engine.crop`); ``None`` runs on the whole volume.
        crop_align: grow the box to the whole-volume window grid, so that voxels away from the
            box faces get exactly the uncropped probabilities (:func:`~robustlabel.engine.crop.align_to_windows`);
            default on: the labels stay those of the uncropped sliding window.  Off, the box is
            smaller (fewer windows where the grid step is large, e.g. 128³ windows on 240³) but
            the labels move slightly (``scripts/bench_crop.py``).
        cpu_bf16: on a CPU with native bf16 (:func:`cpu_bf16_supported`), run the network under
            bf16 autocast (:meth:`autocast_dtype`); float32 everywhere else.  On CUDA the caller's
            autocast dtype applies whatever this says.
        cpu_channels_last: on the CPU, the network's weights in ``channels_last_3d``
            (:meth:`channels_last_on`, :func:`prepare_network`); off, today's contiguous layout.

    Raises:
        ValueError: ``sw_batch_size < 1``, ``overlap`` outside ``[0, 1)`` or a negative margin.
    """

    sw_batch_size: int = 1
    overlap: float = STOCK_OVERLAP
    crop_margin: int | None = DEFAULT_MARGIN
    crop_align: bool = True
    blend: str = BLEND_MODE
    cpu_bf16: bool = False
    cpu_channels_last: bool = True

    def __post_init__(self) -> None:
        if int(self.sw_batch_size) < 1:
            raise ValueError(f"sw_batch_size must be >= 1, got {self.sw_batch_size}")
        if not 0 <= float(self.overlap) < 1:
            raise ValueError(f"overlap must lie in [0, 1), got {self.overlap}")
        if self.crop_margin is not None and int(self.crop_margin) < 0:
            raise ValueError(f"crop_margin must be >= 0 or None, got {self.crop_margin}")
        look_up_option(self.blend, BLEND_MODES)

    @classmethod
    def stock(cls, sw_batch_size: int = 1) -> WindowSettings:
        """Today's behaviour, the baseline that never benefits from new code: no crop, overlap 0.5,
        Gaussian blending, float32 and the contiguous layout on the CPU."""
        return cls(sw_batch_size=sw_batch_size, overlap=STOCK_OVERLAP, crop_margin=None, crop_align=False,
                   blend=BLEND_MODE, cpu_bf16=False, cpu_channels_last=False)

    def inferer(self, roi_size: Sequence[int]) -> SlidingWindowInferer:
        """:func:`make_inferer` with these settings."""
        return make_inferer(roi_size, self.sw_batch_size, self.overlap, self.blend)

    def replace(self, **changes: object) -> WindowSettings:
        """A copy with ``changes`` applied (``None`` values are ignored, except ``crop_margin=None``,
        which switches the crop off); validated."""
        given = {k: v for k, v in changes.items() if v is not None or k == "crop_margin"}
        return dataclasses.replace(self, **given)

    def describe(self) -> dict[str, object]:
        """The settings as a JSON-able dict (sidecars, reports)."""
        return dataclasses.asdict(self)

    def autocast_dtype(self, device: torch.device | str, cuda_dtype: torch.dtype | None) -> torch.dtype | None:
        """The autocast dtype of the network on ``device``: ``cuda_dtype`` (the caller's choice,
        e.g. :func:`~robustlabel.engine.config.amp_dtype_for`) on CUDA; on the CPU bf16 when
        ``cpu_bf16`` is set and :func:`cpu_bf16_supported`, else ``None`` (float32)."""
        if torch.device(device).type != "cpu":
            return cuda_dtype
        return torch.bfloat16 if self.cpu_bf16 and cpu_bf16_supported() else None

    def channels_last_on(self, device: torch.device | str) -> bool:
        """Whether the network runs in ``channels_last_3d`` on ``device``: ``cpu_channels_last`` and
        :func:`default_channels_last` (CPU only)."""
        return self.cpu_channels_last and default_channels_last(torch.device(device))

    def predict(self, network: nn.Module, images: torch.Tensor, roi_size: Sequence[int],
                amp_dtype: torch.dtype | None = None) -> torch.Tensor:
        """:func:`predict_probabilities` of ``images`` with these settings and windows of ``roi_size``
        (``amp_dtype``: the CUDA autocast dtype; on the CPU :meth:`autocast_dtype` decides)."""
        return predict_probabilities(network, images, self.inferer(roi_size), self.autocast_dtype(images.device, amp_dtype),
                                     crop_margin=self.crop_margin, crop_align=self.crop_align)


#: ``/infer`` (one volume, a clinician waits): the crop to the brain aligned to today's window grid,
#: margin 8, overlap 0.5, Gaussian blending, 4 windows per forward.  Measured with
#: ``scripts/bench_crop.py --eval-cases 3 --cases 9`` (tiny TransBTS trained 30 epochs inside the
#: benchmark, 3 held-out 4×112×112×48 volumes; 2-core AMD EPYC under a load of 5-9, 2026-12-02):
#: the only setting whose worst-case WT Dice against today's output reached 0.99 (1.0000 / 1.0000 /
#: 1.0000 WT/TC/ET, 2.25× fewer windows); every plain crop (overlap 0.5, 0.25, 0.125; Gaussian or
#: constant blending) moved the labels (worst WT 0.973-0.980).  ``sw_batch_size`` 4 against 1:
#: 0.4 s against 2.8-8.2 s per volume in the same run.  bf16 on CPUs that have it: see the module
#: docstring (the same window count, less time per window).
INFER_WINDOWS = WindowSettings(sw_batch_size=4, overlap=STOCK_OVERLAP, crop_margin=DEFAULT_MARGIN, crop_align=True,
                               cpu_bf16=True)
#: the pool pseudo-labeller (throughput; bound WT Dice ≥ 0.98): by the same measurement the same
#: setting (no plain crop kept WT ≥ 0.98 on every held-out volume either).  Kept separate so that a
#: later measurement (e.g. on a GPU) can move one without the other.
POOL_WINDOWS = WindowSettings(sw_batch_size=4, overlap=STOCK_OVERLAP, crop_margin=DEFAULT_MARGIN, crop_align=True,
                              cpu_bf16=True)


@functools.lru_cache(maxsize=1)
def cpu_bf16_supported() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX) and torch has oneDNN: then
    bf16 autocast makes ``conv3d`` faster; without it oneDNN emulates bf16 and runs slower, so the
    CPU stays in float32.  (oneDNN's own ``_is_mkldnn_bf16_supported`` is true on any AVX512 CPU,
    emulation included, so it is not asked.)"""
    try:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return bool(torch.backends.mkldnn.is_available() and native)
    except (AttributeError, RuntimeError):  # a torch build without the probes or without oneDNN
        return False


def default_channels_last(device: torch.device) -> bool:
    """Whether :func:`prepare_network` uses ``channels_last_3d`` by default: on CPU only (measured
    above; on CUDA cuDNN's choice is left alone)."""
    return torch.device(device).type == "cpu"


def prepare_network(network: nn.Module, channels_last: bool) -> nn.Module:
    """Put ``network`` in eval mode and its parameters in ``channels_last_3d`` (or the contiguous
    NCDHW format); modifies and returns ``network``."""
    network.eval()
    return network.to(memory_format=torch.channels_last_3d if channels_last else torch.contiguous_format)


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
    *,
    crop_margin: int | None = None,
    num_classes: int | None = None,
    crop_align: bool = False,
) -> torch.Tensor:
    """Softmax probabilities ``(B, C, *S)`` (float32) of ``images`` ``(B, in_channels, *S)``.

    ``p = softmax(z)`` over the class axis of the sliding-window logits ``z``; the network is
    put in eval mode and run without gradients.

    Args:
        crop_margin: ``None`` (default, today's behaviour): the whole volume; an int: only the
            non-zero bounding box grown by this margin, background (``p_0 = 1``) outside it
            (:func:`robustlabel.engine.crop.predict_in_foreground`).
        num_classes: ``C``, so that an all-zero volume skips the network (default: the
            network's ``out_channels`` attribute where it has one).
        crop_align: align the crop to ``inferer``'s whole-volume window grid
            (:func:`robustlabel.engine.crop.align_to_windows`).
    """
    network.eval()
    images = images.as_tensor() if hasattr(images, "as_tensor") else images

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), autocast(x.device, amp_dtype):
            logits = inferer(x, network)
        return torch.softmax(logits.float(), dim=1)

    if crop_margin is None:
        return predict(images)
    if num_classes is None:
        num_classes = getattr(network, "out_channels", None)
    with torch.inference_mode():
        windows = (inferer.roi_size, float(inferer.overlap)) if crop_align else None
        return predict_in_foreground(predict, images, margin=int(crop_margin), num_classes=num_classes, windows=windows)
