"""Positive-unlabelled (PU) losses of J. Ju, "Learn representations in the presence of
segmentation label noises" (TU Delft, 2017).

Class ``0`` is the non-relevant class whose labels are noisy (it absorbs unlabelled
positives); classes ``1..K`` are relevant and reliably labelled.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .base import PixelwiseLoss, check_positive


class WeightedCrossEntropyLoss(PixelwiseLoss):
    r"""Class-weighted cross-entropy, thesis Eq. 7.

    .. math:: ℓ = -w_y \log p_y, \qquad w_k ≥ 0.

    The thesis writes ``w_0 = β`` and ``w_k = α_k``.  Unlike ``torch.nn.CrossEntropyLoss``
    the ``"mean"`` reduction divides by the number of counted entries, not by ``Σ w_{y_i}``,
    so the weights rescale the loss exactly as Eq. 7 says.
    """

    def __init__(self, weights: Sequence[float], reduction: str = "mean", ignore_index: int = -100) -> None:
        super().__init__(reduction, ignore_index)
        w = torch.as_tensor(list(weights) if not torch.is_tensor(weights) else weights, dtype=torch.float64).flatten()
        if w.numel() == 0:
            raise ValueError("weights must contain one non-negative value per class, got an empty sequence")
        if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
            raise ValueError(f"weights must be finite and non-negative, got {w.tolist()}")
        self.register_buffer("weights", w, persistent=False)

    def _elementwise(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.weights.numel() != z.shape[1]:
            raise ValueError(
                f"WeightedCrossEntropyLoss: {self.weights.numel()} weights given for logits with {z.shape[1]} classes"
            )
        return super()._elementwise(z, y)

    def _phi(self, ce: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w_y = self.weights.to(device=ce.device, dtype=ce.dtype)[y]
        return w_y * ce, w_y


class ClassDependentSoftmaxLoss(PixelwiseLoss):
    r"""Class-dependent softmax loss, thesis Eq. 9.

    .. math:: ℓ = \begin{cases} 1 - p_0, & y = 0 \\ -\log p_y, & y ≥ 1. \end{cases}

    The bounded loss on class 0 stops confident relevant predictions on unlabelled
    positives from being punished without limit.  ``1 − p_0`` is evaluated as ``−expm1(−CE)``.
    """

    def _phi(self, ce: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        negative = y == 0
        m = torch.expm1(-ce)  # p_0 − 1 where y = 0
        return torch.where(negative, -m, ce), torch.where(negative, m + 1.0, torch.ones_like(ce))


class HardBootstrapLoss(PixelwiseLoss):
    r"""Class-dependent hard bootstrapping loss, thesis Eq. 11 (after Reed et al. 2015).

    .. math::
        ℓ = \begin{cases} -β \log p_0 - (1-β)\log p_{\hat y}, & y = 0 \\ -\log p_y, & y ≥ 1, \end{cases}
        \qquad \hat y = \arg\max_k p_k,\ 0 < β < 1.

    ``log p_ŷ = max_k z_k − logsumexp(z)``; ``ŷ`` itself carries no gradient.
    """

    def __init__(self, beta: float = 0.8, reduction: str = "mean", ignore_index: int = -100) -> None:
        super().__init__(reduction, ignore_index)
        self.beta = check_positive("beta", beta, upper=1.0, inclusive_upper=False)

    def _elementwise(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ce = self._ce(z, y)
        neg_log_p_hat = torch.logsumexp(z, dim=1) - z.amax(dim=1)
        return torch.where(y == 0, self.beta * ce + (1.0 - self.beta) * neg_log_p_hat, ce)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, " + super().extra_repr()


class ClassDependentSigmoidLoss(PixelwiseLoss):
    r"""Class-dependent sigmoid loss for one logit ``f``, thesis Eq. 8.

    .. math:: ℓ = \begin{cases} -\log σ(f), & y = 1 \\ σ(f), & y = 0. \end{cases}

    Logits have shape ``(N, 1, *S)``; targets are ``0`` (negative / unlabelled) or ``1``.
    """

    binary = True

    def _negative(self, f: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(f)

    def _elementwise(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        f = z[:, 0]
        return torch.where(y == 1, F.softplus(-f), self._negative(f))


class ParametrisedSigmoidLoss(ClassDependentSigmoidLoss):
    r"""The thesis' parametrised sigmoid loss for the negative class (Discussion, Sec. 6).

    .. math:: ℓ = \begin{cases} -\log σ(f), & y = 1 \\ α\,σ(-β z)^{γ} = α\,σ(β f)^{γ}, & y = 0, \end{cases}

    where ``z = −f`` is the output for the negative class; ``α`` scales the loss, ``γ`` sets
    where it starts and ``β`` where it saturates.  ``α = β = γ = 1`` recovers Eq. 8.
    ``σ(βf)^γ`` is evaluated as ``exp(γ · logsigmoid(βf))``.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 1.0,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(reduction, ignore_index)
        self.alpha = check_positive("alpha", alpha)
        self.beta = check_positive("beta", beta)
        self.gamma = check_positive("gamma", gamma)

    def _negative(self, f: torch.Tensor) -> torch.Tensor:
        return self.alpha * torch.exp(self.gamma * F.logsigmoid(self.beta * f))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, " + super().extra_repr()
