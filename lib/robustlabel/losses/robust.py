"""Cross-entropy and the noise-robust losses of Cui et al. (GCE, β-CE, RCE, SCE).

Notation: ``z`` logits, ``p = softmax(z)``, ``y`` the (possibly noisy) label,
``CE = −log p_y``.  All of them are evaluated from ``CE`` and ``log p`` so that no
probability is ever raised to a power directly (``p^q = exp(q log p)``).
"""

from __future__ import annotations

import math

import torch

from .base import PixelwiseLoss, check_positive
from .hparams import BRATS_HPARAMS
from .fused import beta_cross_entropy, ce_family, expm1

#: RCE's clipped ``log 0`` (Wang et al. 2019, "Symmetric Cross Entropy for Robust Learning").
DEFAULT_A = math.log(1e-4)


class FusedCELoss(PixelwiseLoss):
    """A loss ``ℓ = φ(CE, y)`` evaluated by :func:`~robustlabel.losses.fused.ce_family`: the fused
    C++ kernel on CPU where it builds (one pass forward keeping only ``log Σ e^z`` per voxel, one
    pass backward), else the PyTorch fused function."""

    def _elementwise(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ce_family(z, y, self._phi)


class CrossEntropyLoss(FusedCELoss):
    r"""Cross-entropy, ``ℓ = −log p_y`` (Cui et al. Eq. 1). Used for clinician labels."""

    def _phi(self, ce: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ce, None


class GeneralizedCrossEntropyLoss(FusedCELoss):
    r"""Generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018).

    .. math:: ℓ_{GCE} = \frac{1 - p_y^{\,q}}{q}, \qquad q ∈ (0, 1].

    The seed paper typesets Eq. 2 as ``(1 − p_y)^q / q``; we follow the original definition
    above, which tends to CE as ``q → 0`` (L'Hôpital) and equals MAE/2 at ``q = 1``.
    Evaluated as ``−expm1(−q·CE)/q`` so that ``p_y^q = exp(q log p_y)`` never touches ``pow``.
    Paper values: ``q = 0.9`` (CIFAR-10), ``q = 0.7`` (BraTS).
    """

    def __init__(self, q: float = BRATS_HPARAMS["gce"]["q"], reduction: str = "mean", ignore_index: int = -100) -> None:
        super().__init__(reduction, ignore_index)
        self.q = check_positive("q", q, upper=1.0)

    def _phi(self, ce: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = expm1(-self.q * ce)  # p_y^q − 1
        return m / -self.q, m + 1.0

    def extra_repr(self) -> str:
        return f"q={self.q}, " + super().extra_repr()


class BetaCrossEntropyLoss(PixelwiseLoss):
    r"""β-cross-entropy: the categorical β-divergence loss (Basu et al. 1998; Akrami et al.).

    .. math:: ℓ_{β} = -\frac{β+1}{β}\left(p_y^{\,β} - 1\right) + \sum_{k} p_k^{\,β+1}, \qquad β > 0.

    The seed paper (Eq. 3, called "BCE" there) typesets the first term as
    ``(β+1)/β · (1 − p_y)^β``; we follow the β-divergence definition above, which tends to
    ``CE + 1`` as ``β → 0``.  Evaluated as ``−(β+1)·expm1(−β·CE)/β + Σ_k exp((β+1) log p_k)`` with a fused backward
    (:func:`~robustlabel.losses.fused.beta_cross_entropy`: a C++ kernel on CPU where it builds, else PyTorch).
    Paper values: ``β = 5`` (CIFAR-10), ``β = 0.001`` (BraTS).
    """

    def __init__(self, beta: float = BRATS_HPARAMS["bce"]["beta"], reduction: str = "mean", ignore_index: int = -100) -> None:
        super().__init__(reduction, ignore_index)
        self.beta = check_positive("beta", beta)

    def _elementwise(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return beta_cross_entropy(z, y, self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, " + super().extra_repr()


def _check_A(A: float) -> float:
    A = float(A)
    if not A < 0:
        raise ValueError(f"A (the clipped log 0 of RCE) must be < 0, got {A}")
    return A


class ReverseCrossEntropyLoss(FusedCELoss):
    r"""Reverse cross-entropy (Wang et al. 2019), Cui et al. Eq. 4.

    .. math:: ℓ_{RCE} = -\sum_k p_k \log q_k = -A\,(1 - p_y),

    with ``A < 0`` the clipped ``log 0`` (default ``ln 1e-4``).  Evaluated as ``A·expm1(−CE)``.
    """

    def __init__(self, A: float = DEFAULT_A, reduction: str = "mean", ignore_index: int = -100) -> None:
        super().__init__(reduction, ignore_index)
        self.A = _check_A(A)

    def _phi(self, ce: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = expm1(-ce)  # p_y − 1
        return self.A * m, -self.A * (m + 1.0)

    def extra_repr(self) -> str:
        return f"A={self.A:.4f}, " + super().extra_repr()


class SymmetricCrossEntropyLoss(FusedCELoss):
    r"""Symmetric cross-entropy (Wang et al. 2019).

    .. math:: ℓ_{SCE} = α\,ℓ_{CE} + γ\,ℓ_{RCE} = -α \log p_y - γ A (1 - p_y).

    Paper values: ``α = 0.1, γ = 0.01`` (CIFAR-10), ``α = 0.01, γ = 1.0`` (BraTS).
    """

    def __init__(
        self,
        alpha: float = BRATS_HPARAMS["sce"]["alpha"],
        gamma: float = BRATS_HPARAMS["sce"]["gamma"],
        A: float = DEFAULT_A,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(reduction, ignore_index)
        self.alpha = check_positive("alpha", alpha)
        self.gamma = check_positive("gamma", gamma)
        self.A = _check_A(A)

    def _phi(self, ce: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = expm1(-ce)  # p_y − 1
        ga = self.gamma * self.A
        return torch.add(self.alpha * ce, m, alpha=ga), (m + 1.0).mul_(-ga).add_(self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}, A={self.A:.4f}, " + super().extra_repr()
