"""Per-sample choice of loss by label source: clinician (``final``) or pseudo-label."""

from __future__ import annotations

import torch
from torch import nn

from .base import REDUCTIONS, PixelwiseLoss, reduce_loss
from .factory import get_loss


class SourceAwareLoss(nn.Module):
    r"""Apply one loss to clinician-labelled samples and another to pseudo-labelled ones.

    For a batch with per-sample flag ``s_n = is_pseudo[n]``:

    .. math::
        ℓ_{n,v} = \begin{cases} ℓ^{clin}(z_{n,v}, y_{n,v}), & s_n = \text{False} \\
                                 w\,ℓ^{pseudo}(z_{n,v}, y_{n,v}), & s_n = \text{True} \end{cases}
        \qquad L = \frac{1}{|V|}\sum_{n,v} ℓ_{n,v}

    where ``V`` is the set of counted (non-ignored) voxels of the whole batch and ``w`` the
    ``pseudo_weight``.  With ``w = 1`` this is exactly the mean loss over the union of both
    sets, i.e. training on the concatenation of clinician and pseudo-labelled data as in
    Cui et al. Sec. 2.2.  Each loss only sees its own samples, so the work is not doubled.

    Args:
        clinician: loss for ``is_pseudo == False`` (default CE).
        pseudo: loss for ``is_pseudo == True`` (default GCE, q = 0.7).
        pseudo_weight: ``w ≥ 0``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (shape ``(N, *spatial)``).
    """

    def __init__(
        self,
        clinician: PixelwiseLoss | None = None,
        pseudo: PixelwiseLoss | None = None,
        pseudo_weight: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        clinician = clinician if clinician is not None else get_loss("ce")
        pseudo = pseudo if pseudo is not None else get_loss("gce", q=0.7)
        for role, loss in (("clinician", clinician), ("pseudo", pseudo)):
            if not isinstance(loss, PixelwiseLoss):
                raise ValueError(f"{role} must be a robustlabel loss (see get_loss), got {type(loss).__name__}")
        if not float(pseudo_weight) >= 0:
            raise ValueError(f"pseudo_weight must be >= 0, got {pseudo_weight}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.clinician = clinician
        self.pseudo = pseudo
        self.pseudo_weight = float(pseudo_weight)
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor, is_pseudo: torch.Tensor) -> torch.Tensor:
        is_pseudo = torch.as_tensor(is_pseudo, device=logits.device)
        if is_pseudo.dtype != torch.bool or tuple(is_pseudo.shape) != (logits.shape[0],):
            raise ValueError(
                f"is_pseudo must be a bool tensor of shape ({logits.shape[0]},), "
                f"got dtype {is_pseudo.dtype} and shape {tuple(is_pseudo.shape)}"
            )
        if target.shape[0] != logits.shape[0]:
            raise ValueError(f"shape mismatch: logits {tuple(logits.shape)} vs target {tuple(target.shape)}")
        n_pseudo = int(is_pseudo.sum())
        if n_pseudo == 0 or n_pseudo == logits.shape[0]:
            loss = self.pseudo if n_pseudo else self.clinician
            values, count = loss.elementwise(logits, target)
            if n_pseudo:
                values = values * self.pseudo_weight
            return reduce_loss(values, count, self.reduction)

        clin_values, clin_count = self.clinician.elementwise(logits[~is_pseudo], target[~is_pseudo])
        pseudo_values, pseudo_count = self.pseudo.elementwise(logits[is_pseudo], target[is_pseudo])
        values = clin_values.new_zeros((logits.shape[0], *clin_values.shape[1:]))
        values = values.index_put((~is_pseudo,), clin_values).index_put((is_pseudo,), pseudo_values * self.pseudo_weight)
        return reduce_loss(values, clin_count + pseudo_count, self.reduction)

    def extra_repr(self) -> str:
        return f"pseudo_weight={self.pseudo_weight}, reduction={self.reduction!r}"
