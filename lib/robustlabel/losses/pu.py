"""Positive-unlabelled (PU) losses of J. Ju, "Learn representations in the presence of
segmentation label noises" (TU Delft, 2017).

Class ``0`` is the non-relevant class whose labels are noisy (it absorbs unlabelled
positives); classes ``1..K`` are relevant and reliably labelled.

Every loss here takes optional per-class ``weights`` ``w`` (thesis Sec. 4, "implementation
details": the classes are reweighted by their frequency in the observed labels), applied
elementwise, ``ℓ^w = w_y · ℓ``.  As for :class:`WeightedCrossEntropyLoss`, the ``"mean"``
reduction divides by the number of counted entries, not by ``Σ w_{y_i}``.  Without weights
every loss is exactly the unweighted formula.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .base import PixelwiseLoss, check_positive


def as_class_weights(weights: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Per-class weights as a float64 vector; finite, non-negative, at least one.

    Raises:
        ValueError: an empty, negative or non-finite weight vector.
    """
    w = torch.as_tensor(list(weights) if not torch.is_tensor(weights) else weights, dtype=torch.float64).flatten()
    if w.numel() == 0:
        raise ValueError("weights must contain one non-negative value per class, got an empty sequence")
    if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
        raise ValueError(f"weights must be finite and non-negative, got {w.tolist()}")
    return w


class _ClassWeightedLoss(PixelwiseLoss):
    """A :class:`PixelwiseLoss` with optional per-class weights ``w`` (``ℓ^w = w_y ℓ``).

    ``weights=None`` keeps the unweighted loss (no extra work).  The number of weights must
    equal the number of target classes: ``C`` (2 for the single-logit binary losses).
    """

    def __init__(
        self, reduction: str = "mean", ignore_index: int = -100, *, weights: Sequence[float] | None = None
    ) -> None:
        super().__init__(reduction, ignore_index)
        self.register_buffer("weights", None if weights is None else as_class_weights(weights), persistent=False)

    def _check_weight_count(self, z: torch.Tensor) -> None:
        """Raise a ``ValueError`` when the number of weights differs from the number of target classes."""
        n_classes = 2 if self.binary else z.shape[1]
        if self.weights is not None and self.weights.numel() != n_classes:
            what = "a single-logit binary loss (targets 0, 1)" if self.binary else f"logits with {n_classes} classes"
            raise ValueError(f"{type(self).__name__}: {self.weights.numel()} weights given for {what}")

    def _apply_weights(self, values: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``w_y · values`` (``values`` unchanged without weights)."""
        if self.weights is None:
            return values
        self._check_weight_count(z)
        return self.weights.to(device=values.device, dtype=values.dtype)[y] * values

    def _weighted_phi(
        self, phi: torch.Tensor, dphi: torch.Tensor | None, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(w_y φ, w_y ∂φ/∂CE)`` for the fused CE-family path (``weights`` checked in ``_elementwise``)."""
        if self.weights is None:
            return phi, dphi
        w_y = self.weights.to(device=phi.device, dtype=phi.dtype)[y]
        return w_y * phi, w_y if dphi is None else w_y * dphi

    def _elementwise(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._check_weight_count(z)  # before the fused kernel calls _phi
        return super()._elementwise(z, y)

    def extra_repr(self) -> str:
        weights = "" if self.weights is None else f"weights={[round(v, 6) for v in self.weights.tolist()]}, "
        return weights + super().extra_repr()


class WeightedCrossEntropyLoss(_ClassWeightedLoss):
    r"""Class-weighted cross-entropy, thesis Eq. 7.

    .. math:: ℓ = -w_y \log p_y, \qquad w_k ≥ 0.

    The thesis writes ``w_0 = β`` and ``w_k = α_k``.  Unlike ``torch.nn.CrossEntropyLoss``
    the ``"mean"`` reduction divides by the number of counted entries, not by ``Σ w_{y_i}``,
    so the weights rescale the loss exactly as Eq. 7 says.

    Args:
        weights: one non-negative weight per class (required).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        ignore_index: target value that is not counted.

    Raises:
        ValueError: empty, negative or non-finite weights; at call time, a weight count that
            differs from the number of classes.
    """

    def __init__(self, weights: Sequence[float], reduction: str = "mean", ignore_index: int = -100) -> None:
        super().__init__(reduction, ignore_index, weights=weights)

    def _phi(self, ce: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self._weighted_phi(ce, None, y)


class ClassDependentSoftmaxLoss(_ClassWeightedLoss):
    r"""Class-dependent softmax loss, thesis Eq. 9, optionally class-weighted.

    .. math:: ℓ = w_y \begin{cases} 1 - p_0, & y = 0 \\ -\log p_y, & y ≥ 1, \end{cases}

    with ``w ≡ 1`` unless ``weights`` are given.  The bounded loss on class 0 stops confident
    relevant predictions on unlabelled positives from being punished without limit.
    ``1 − p_0`` is evaluated as ``−expm1(−CE)``.

    Args:
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        ignore_index: target value that is not counted.
        weights: optional per-class weights ``w`` (one per class, non-negative).

    Raises:
        ValueError: invalid weights, or (at call time) a weight count other than ``C``.
    """

    def _phi(self, ce: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        negative = y == 0
        m = torch.expm1(-ce)  # p_0 − 1 where y = 0
        return self._weighted_phi(torch.where(negative, -m, ce), torch.where(negative, m + 1.0, torch.ones_like(ce)), y)


class HardBootstrapLoss(_ClassWeightedLoss):
    r"""Class-dependent hard bootstrapping loss, thesis Eq. 11 (after Reed et al. 2015),
    optionally class-weighted.

    .. math::
        ℓ = w_y \begin{cases} -β \log p_0 - (1-β)\log p_{\hat y}, & y = 0 \\ -\log p_y, & y ≥ 1, \end{cases}
        \qquad \hat y = \arg\max_k p_k,\ 0 < β < 1,

    with ``w ≡ 1`` unless ``weights`` are given.  ``log p_ŷ = max_k z_k − logsumexp(z)``;
    ``ŷ`` itself carries no gradient.

    Args:
        beta: ``β`` in ``(0, 1)``, the weight of the observed label.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        ignore_index: target value that is not counted.
        weights: optional per-class weights ``w`` (one per class, non-negative).

    Raises:
        ValueError: ``beta`` outside ``(0, 1)``, invalid weights, or (at call time) a weight
            count other than ``C``.
    """

    def __init__(
        self,
        beta: float = 0.8,
        reduction: str = "mean",
        ignore_index: int = -100,
        *,
        weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__(reduction, ignore_index, weights=weights)
        self.beta = check_positive("beta", beta, upper=1.0, inclusive_upper=False)

    def _elementwise(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ce = self._ce(z, y)
        neg_log_p_hat = torch.logsumexp(z, dim=1) - z.amax(dim=1)
        return self._apply_weights(torch.where(y == 0, self.beta * ce + (1.0 - self.beta) * neg_log_p_hat, ce), z, y)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, " + super().extra_repr()


class ClassDependentSigmoidLoss(_ClassWeightedLoss):
    r"""Class-dependent sigmoid loss for one logit ``f``, thesis Eq. 8, optionally class-weighted.

    .. math:: ℓ = w_y \begin{cases} -\log σ(f), & y = 1 \\ σ(f), & y = 0, \end{cases}

    with ``w ≡ 1`` unless ``weights = (w_0, w_1)`` are given.  Logits have shape
    ``(N, 1, *S)``; targets are ``0`` (negative / unlabelled) or ``1``.

    Args:
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        ignore_index: target value that is not counted.
        weights: optional ``(w_0, w_1)``, non-negative.

    Raises:
        ValueError: invalid weights, or (at call time) a weight count other than 2.
    """

    binary = True

    def _negative(self, f: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(f)

    def _elementwise(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        f = z[:, 0]
        return self._apply_weights(torch.where(y == 1, F.softplus(-f), self._negative(f)), z, y)


class ParametrisedSigmoidLoss(ClassDependentSigmoidLoss):
    r"""The thesis' parametrised sigmoid loss for the negative class (Discussion, Sec. 6).

    .. math:: ℓ = \begin{cases} -\log σ(f), & y = 1 \\ α\,σ(-β z)^{γ} = α\,σ(β f)^{γ}, & y = 0, \end{cases}

    where ``z = −f`` is the output for the negative class; ``α`` scales the loss, ``γ`` sets
    where it starts and ``β`` where it saturates.  ``α = β = γ = 1`` recovers Eq. 8.
    ``σ(βf)^γ`` is evaluated as ``exp(γ · logsigmoid(βf))``.  Optional ``weights = (w_0, w_1)``
    multiply the loss as in :class:`ClassDependentSigmoidLoss`.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 1.0,
        reduction: str = "mean",
        ignore_index: int = -100,
        *,
        weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__(reduction, ignore_index, weights=weights)
        self.alpha = check_positive("alpha", alpha)
        self.beta = check_positive("beta", beta)
        self.gamma = check_positive("gamma", gamma)

    def _negative(self, f: torch.Tensor) -> torch.Tensor:
        return self.alpha * torch.exp(self.gamma * F.logsigmoid(self.beta * f))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, " + super().extra_repr()


#: ``normalise`` choices of :func:`inverse_frequency_weights`
FREQUENCY_NORMALISATIONS: tuple[str, ...] = ("mean", "total")


def inverse_frequency_weights(
    labels: Sequence[int] | torch.Tensor | Sequence[np.ndarray],
    num_classes: int,
    *,
    ignore_index: int | None = None,
    normalise: str = "mean",
) -> list[float]:
    r"""Class weights from the observed labels (thesis Sec. 4, "implementation details").

    With ``n_k`` the count of label ``k`` (``ignore_index`` not counted), ``N = Σ_k n_k`` and
    ``K_+ = \{k : n_k > 0\}``, both normalisations weight a class by its inverse frequency:

    * ``"mean"`` (CIFAR PU):
      :math:`w_k = \frac{1/n_k}{\frac{1}{|K_+|}\sum_{j∈K_+} 1/n_j}` for ``k ∈ K_+``, mean 1 over
      the classes that occur; an absent class gets ``w_k = 0`` (it contributes no loss anyway);
    * ``"total"`` (VOC, a summed pixel loss): :math:`w_k = \frac{N}{K\, n_k}`, so that
      ``Σ_k w_k n_k = N`` keeps the scale of the unweighted sum; an absent class gets ``w_k = 1``.

    Args:
        labels: integer labels, or a sequence of label arrays (e.g. label maps of different
            shapes), counted one by one.
        num_classes: ``K``.
        ignore_index: a label value that is not counted (VOC's void, 255).
        normalise: ``"mean"`` or ``"total"``.

    Raises:
        ValueError: ``num_classes < 1``, no labels, labels outside ``[0, num_classes)`` or an
            unknown ``normalise``.
    """
    if normalise not in FREQUENCY_NORMALISATIONS:
        raise ValueError(f"normalise must be one of {FREQUENCY_NORMALISATIONS}, got {normalise!r}")
    if isinstance(labels, torch.Tensor) or not labels or not isinstance(labels[0], np.ndarray):
        parts = [torch.as_tensor(labels)]
    else:
        parts = [torch.as_tensor(a) for a in labels]
    counts = torch.zeros(num_classes if num_classes > 0 else 0, dtype=torch.float64)
    seen = 0
    for part in parts:
        y = part.long().flatten()
        if ignore_index is not None:
            y = y[y != ignore_index]
        if y.numel() == 0:
            continue
        if int(y.min()) < 0 or int(y.max()) >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes}), found [{int(y.min())}, {int(y.max())}]")
        counts += torch.bincount(y, minlength=num_classes).double()
        seen += y.numel()
    if num_classes < 1 or seen == 0:
        raise ValueError(f"need num_classes >= 1 and at least one label, got {num_classes} and {seen} labels")
    present = counts > 0
    if normalise == "total":
        return [float(counts.sum() / (num_classes * c)) if c > 0 else 1.0 for c in counts.tolist()]
    inverse = torch.zeros(num_classes, dtype=torch.float64)
    inverse[present] = 1.0 / counts[present]
    return (inverse / inverse[present].mean()).tolist()
