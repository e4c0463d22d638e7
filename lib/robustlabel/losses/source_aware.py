"""Per-sample choice of loss by label source: clinician (``final``) or pseudo-label.

How the two sources are weighted is the ``mode`` (:data:`SOURCE_MODES`); the seed paper's code
(Robust-TransBTS) has three schemes, and each is one mode here:

* ``union`` (default): CE on clinician samples, the robust loss on pseudo samples, averaged
  over every voxel of the (shuffled) batch, so each source weighs by its share of the voxels;
* ``robust_all`` (``train_cv.py``, the seed's general training script): one criterion, the
  robust loss, on every sample of the shuffled union, clinician samples included;
* ``per_source`` (``train_2losses.py``): each step pairs clinician and pseudo samples (the
  engine's :class:`~robustlabel.engine.sampler.SourceBalancedSampler` makes every batch 1:1)
  and adds the two per-source means, so clinician voxels carry half of the signal whatever p.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.utils import look_up_option
from torch import nn

from .base import PixelwiseLoss, loss_reduction, reduce_loss
from .factory import get_loss

UNION, ROBUST_ALL, PER_SOURCE = "union", "robust_all", "per_source"
#: how :class:`SourceAwareLoss` weighs the two label sources (module docstring); the first is the default
SOURCE_MODES: tuple[str, ...] = (UNION, ROBUST_ALL, PER_SOURCE)


class SourceAwareLoss(nn.Module):
    r"""Apply one loss to clinician-labelled samples and another to pseudo-labelled ones.

    For a batch with per-sample flag ``s_n = is_pseudo[n]``, clinician samples ``C = {n: ¬s_n}``,
    pseudo samples ``P = {n: s_n}`` and ``V_S`` the counted (non-ignored) voxels of the samples
    in ``S``:

    * ``mode="union"``:

      .. math:: L = \frac{1}{|V_{C∪P}|}\Big(\sum_{V_C} ℓ^{clin}(z_v, y_v) + w \sum_{V_P} ℓ^{pseudo}(z_v, y_v)\Big)

      With ``w = 1`` this is the mean loss over the union of both sets, i.e. training on the
      concatenation of clinician and pseudo-labelled data as in Cui et al. Sec. 2.2.
    * ``mode="robust_all"``: :math:`L = \frac{1}{|V_{C∪P}|}\sum_{V_{C∪P}} ℓ^{pseudo}(z_v, y_v)`
      (``clinician`` and ``w`` are not used).
    * ``mode="per_source"``:

      .. math:: L = \frac{1}{|V_C|}\sum_{V_C} ℓ^{clin} + w\,\frac{1}{|V_P|}\sum_{V_P} ℓ^{pseudo}

      (a source absent from the batch contributes 0).

    ``reduction="sum"`` returns the sum of the weighted elementwise values and ``"none"`` the
    values themselves, shape ``(N, *spatial)``, in every mode; the modes differ in ``"mean"``.
    Each loss only sees its own samples, so the work is not doubled.

    Args:
        clinician: loss for ``is_pseudo == False`` (default CE).
        pseudo: loss for ``is_pseudo == True`` (default GCE, q = 0.7).
        pseudo_weight: ``w ≥ 0``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        mode: ``"union"`` (default), ``"robust_all"`` or ``"per_source"``.

    Raises:
        ValueError: a loss that is not a robustlabel loss, ``w < 0``, an unknown reduction or mode.
    """

    def __init__(
        self,
        clinician: PixelwiseLoss | None = None,
        pseudo: PixelwiseLoss | None = None,
        pseudo_weight: float = 1.0,
        reduction: str = "mean",
        mode: str = UNION,
    ) -> None:
        super().__init__()
        clinician = clinician if clinician is not None else get_loss("ce")
        pseudo = pseudo if pseudo is not None else get_loss("gce")  # q: the paper's BraTS value
        for role, loss in (("clinician", clinician), ("pseudo", pseudo)):
            if not isinstance(loss, PixelwiseLoss):
                raise ValueError(f"{role} must be a robustlabel loss (see get_loss), got {type(loss).__name__}")
        if not float(pseudo_weight) >= 0:
            raise ValueError(f"pseudo_weight must be >= 0, got {pseudo_weight}")
        self.clinician = clinician
        self.pseudo = pseudo
        self.pseudo_weight = float(pseudo_weight)
        self.reduction = loss_reduction(reduction)
        self.mode = str(look_up_option(mode, SOURCE_MODES))

    def forward(self, logits: torch.Tensor, target: torch.Tensor, is_pseudo: torch.Tensor) -> torch.Tensor:
        is_pseudo = torch.as_tensor(is_pseudo, device=logits.device)
        if is_pseudo.dtype != torch.bool or tuple(is_pseudo.shape) != (logits.shape[0],):
            raise ValueError(
                f"is_pseudo must be a bool tensor of shape ({logits.shape[0]},), "
                f"got dtype {is_pseudo.dtype} and shape {tuple(is_pseudo.shape)}"
            )
        if target.shape[0] != logits.shape[0]:
            raise ValueError(f"shape mismatch: logits {tuple(logits.shape)} vs target {tuple(target.shape)}")
        if self.mode == ROBUST_ALL:
            values, count = self.pseudo.elementwise(logits, target)
            return reduce_loss(values, count, self.reduction)
        n_pseudo = int(is_pseudo.sum())
        if n_pseudo == 0 or n_pseudo == logits.shape[0]:
            loss = self.pseudo if n_pseudo else self.clinician
            values, count = loss.elementwise(logits, target)
            if n_pseudo:
                values = values * self.pseudo_weight
            return reduce_loss(values, count, self.reduction)

        clin_values, clin_count = self.clinician.elementwise(logits[~is_pseudo], target[~is_pseudo])
        pseudo_values, pseudo_count = self.pseudo.elementwise(logits[is_pseudo], target[is_pseudo])
        if self.mode == PER_SOURCE and self.reduction == "mean":
            return reduce_loss(clin_values, clin_count, "mean") + self.pseudo_weight * reduce_loss(
                pseudo_values, pseudo_count, "mean"
            )
        values = clin_values.new_zeros((logits.shape[0], *clin_values.shape[1:]))
        values = values.index_put((~is_pseudo,), clin_values).index_put((is_pseudo,), pseudo_values * self.pseudo_weight)
        return reduce_loss(values, clin_count + pseudo_count, self.reduction)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, pseudo_weight={self.pseudo_weight}, reduction={self.reduction!r}"


def source_aware_loss(
    pseudo_loss: str,
    pseudo_params: Mapping[str, Any] | None = None,
    *,
    pseudo_weight: float = 1.0,
    mode: str = UNION,
) -> SourceAwareLoss:
    """The teacher–student loss of Cui et al. Sec. 2.2: CE on clinician (true) labels,
    ``get_loss(pseudo_loss, **pseudo_params)`` weighted by ``pseudo_weight`` on pseudo-labels,
    the two sources combined by ``mode`` (:class:`SourceAwareLoss`).

    The one builder of this pair: the BraTS trainer (from its ``TrainConfig``) and the CIFAR
    classifier both call it.

    Args:
        pseudo_loss: :func:`~robustlabel.losses.get_loss` name of the pseudo-label loss.
        pseudo_params: its hyper-parameters (``None``: the loss' defaults).
        pseudo_weight: ``w >= 0``.
        mode: :data:`SOURCE_MODES`.

    Raises:
        ValueError: from :func:`~robustlabel.losses.get_loss` (unknown name or parameter) or
            :class:`SourceAwareLoss` (``w < 0``, unknown mode).
    """
    return SourceAwareLoss(
        clinician=get_loss("ce"),
        pseudo=get_loss(pseudo_loss, **dict(pseudo_params or {})),
        pseudo_weight=pseudo_weight,
        mode=mode,
    )
