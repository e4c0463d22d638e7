"""Shared machinery for per-sample / per-voxel classification losses.

Every loss in :mod:`robustlabel.losses` maps logits ``z`` of shape ``(N, C)`` or
``(N, C, *spatial)`` and integer targets ``y`` of shape ``(N,)``, ``(N, *spatial)`` or
``(N, 1, *spatial)`` to an elementwise loss ``ℓ(z, y)`` of shape ``(N, *spatial)`` and
then reduces it:

* ``"mean"`` – ``Σ_i ℓ_i / |{i : y_i ≠ ignore_index}|`` (every sample *and* voxel counts once),
* ``"sum"``  – ``Σ_i ℓ_i``,
* ``"none"`` – the ``(N, *spatial)`` tensor, with ``0`` where ``y_i = ignore_index``.

The names are MONAI's :class:`monai.utils.LossReduction`, checked with
:func:`monai.utils.look_up_option` as in ``monai/losses/dice.py`` (:func:`loss_reduction`).

Numerics: the loss is evaluated with autocast disabled, in float32 (float64 when the
logits are float64, so that :func:`torch.autograd.gradcheck` is meaningful), from
``log_softmax``/``cross_entropy`` quantities.  Probabilities are never raised to a power
directly: ``p^q`` is always ``exp(q · log p)``, so logits of magnitude ``1e4`` in fp16 or
bf16 give finite values and gradients.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from monai.utils import LossReduction, look_up_option
from torch import nn

from .fused import CEFamilyFunction


def loss_reduction(reduction: LossReduction | str) -> str:
    """The value of a MONAI :class:`~monai.utils.LossReduction` (``"mean"``, ``"sum"`` or ``"none"``).

    Args:
        reduction: a :class:`~monai.utils.LossReduction` or its string value.

    Raises:
        ValueError: for any other value; the message names it and lists the valid ones
            (:func:`monai.utils.look_up_option`).
    """
    return look_up_option(reduction, LossReduction).value


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64 (for gradcheck); every other floating dtype computes in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def check_positive(name: str, value: float, *, upper: float | None = None, inclusive_upper: bool = True) -> float:
    """Return ``float(value)`` or raise a ``ValueError`` naming the hyper-parameter."""
    value = float(value)
    if not value > 0 or value != value:
        raise ValueError(f"{name} must be > 0, got {value}")
    if upper is not None and (value > upper or (not inclusive_upper and value == upper)):
        bracket = "]" if inclusive_upper else ")"
        raise ValueError(f"{name} must lie in (0, {upper}{bracket}, got {value}")
    return value


class PixelwiseLoss(nn.Module):
    """Base class: validation, float32 log-space evaluation, ``ignore_index`` and reduction.

    Subclasses implement :meth:`_elementwise`, which receives float32/64 logits ``z``
    ``(N, C, *S)`` and a long target ``y`` ``(N, *S)`` with every value a valid class
    (ignored entries are temporarily set to class 0) and returns ``ℓ`` of shape ``(N, *S)``.
    The base class zeroes the ignored entries afterwards.
    """

    #: single-logit binary losses take ``C == 1`` logits and targets in ``{0, 1}``
    binary: ClassVar[bool] = False

    def __init__(self, reduction: LossReduction | str = LossReduction.MEAN, ignore_index: int = -100) -> None:
        super().__init__()
        self.reduction = loss_reduction(reduction)
        self.ignore_index = int(ignore_index)

    # ------------------------------------------------------------------ validation
    def _prepare(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Check shapes and values.

        Returns (compute-dtype logits, long target (N, *S) with ignored entries set to 0,
        boolean mask of ignored entries or ``None`` when there are none).
        """
        name = type(self).__name__
        if not torch.is_tensor(logits) or not logits.is_floating_point():
            raise ValueError(f"{name}: logits must be a floating-point tensor, got {getattr(logits, 'dtype', type(logits))}")
        if logits.dim() < 2:
            raise ValueError(f"{name}: logits must have shape (N, C) or (N, C, *spatial), got {tuple(logits.shape)}")
        n_classes = logits.shape[1]
        if self.binary and n_classes != 1:
            raise ValueError(f"{name}: expects a single logit per sample (C == 1), got logits of shape {tuple(logits.shape)}")
        if not self.binary and n_classes < 2:
            raise ValueError(f"{name}: needs at least 2 classes, got logits of shape {tuple(logits.shape)}")
        expected = (logits.shape[0], *logits.shape[2:])
        if target.dim() == logits.dim() and target.shape[1] == 1:
            target = target[:, 0]
        if tuple(target.shape) != expected:
            raise ValueError(
                f"{name}: shape mismatch: logits {tuple(logits.shape)} need a target of shape {expected} "
                f"or {(expected[0], 1, *expected[1:])}, got {tuple(target.shape)}"
            )
        if target.is_floating_point():
            if not torch.equal(target, target.round()):
                raise ValueError(f"{name}: target must hold integer class indices, got non-integral values")
        elif target.dtype == torch.bool:
            raise ValueError(f"{name}: target must hold integer class indices, got a bool tensor")
        target = target.long()
        n_target_classes = 2 if self.binary else n_classes
        ignored = None
        if target.numel():
            tmin, tmax = (int(v) for v in torch.aminmax(target))
            ignore_in_range = 0 <= self.ignore_index < n_target_classes
            if tmin < 0 or tmax >= n_target_classes or ignore_in_range:
                ignored = target == self.ignore_index
                kept = target[~ignored]
                if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= n_target_classes):
                    raise ValueError(
                        f"{name}: target values must lie in [0, {n_target_classes}) or equal "
                        f"ignore_index={self.ignore_index}; found values in [{int(kept.min())}, {int(kept.max())}]"
                    )
                if bool(ignored.any()):
                    target = target.masked_fill(ignored, 0)
                else:
                    ignored = None
        return logits.to(compute_dtype(logits)), target, ignored

    # ------------------------------------------------------------------ evaluation
    def _phi(self, ce: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """For losses of the form ``ℓ = φ(CE, y)``: return ``(φ, ∂φ/∂CE)`` (``None`` means 1)."""
        raise TypeError(f"{type(self).__name__} defines neither _phi (a loss of CE) nor _elementwise")

    def _elementwise(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Default: ``φ(CE)`` through the fused softmax kernel of :mod:`.fused`."""
        return CEFamilyFunction.apply(z, y, self._phi)

    @staticmethod
    def _ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``−log p_y`` per element, from PyTorch's fused log-softmax + NLL kernel."""
        return F.cross_entropy(z, y, reduction="none")

    def elementwise(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int | torch.Tensor]:
        """Return ``(ℓ of shape (N, *S) with 0 at ignored entries, number of counted entries)``."""
        z, y, ignored = self._prepare(logits, target)
        if torch.is_autocast_enabled(z.device.type):
            with torch.autocast(device_type=z.device.type, enabled=False):
                values = self._elementwise(z, y)
        else:
            values = self._elementwise(z, y)
        if ignored is not None:
            return values.masked_fill(ignored, 0.0), (~ignored).sum()
        return values, y.numel()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        values, count = self.elementwise(logits, target)
        return reduce_loss(values, count, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, ignore_index={self.ignore_index}"


def reduce_loss(values: torch.Tensor, count: int | torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply ``reduction`` (a :class:`~monai.utils.LossReduction` value) to elementwise values;
    ``mean`` divides by the counted entries."""
    if reduction == LossReduction.NONE.value:
        return values
    total = values.sum()
    if reduction == LossReduction.SUM.value:
        return total
    if torch.is_tensor(count):
        return total / count.clamp_min(1).to(total.dtype)
    return total / max(int(count), 1)
