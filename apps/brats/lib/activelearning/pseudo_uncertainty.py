"""Active-learning strategy ``pseudo_uncertainty``: offer the least confident pseudo-label first.

Candidates are the images without a ``final`` label (MONAI Label's "unlabelled").  An image the
teacher has not pseudo-labelled yet counts as the least confident of all (nothing is known
about it) and comes first, in id order; otherwise the image whose pseudo-label has the largest
``uncertainty`` (smallest ``pseudo_confidence = 1 − uncertainty``, see
:mod:`lib.scoring.pseudo_confidence`) is chosen, ties broken by id.  The uncertainty is the mean
normalised entropy over the predicted tumour, and 1 when the teacher predicts no tumour at all,
so the teacher's complete misses are offered before its honestly uncertain tumours
(:func:`robustlabel.metrics.uncertainty.rank_by_uncertainty`).  The confidence is read from the
pseudo-label's own info, so the choice never depends on a scoring run having happened.
"""

from __future__ import annotations

import logging
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy
from robustlabel.metrics.uncertainty import rank_by_uncertainty

from ..datastore import PSEUDO, BratsDatastore
from ..errors import AppRequestError

logger = logging.getLogger(__name__)


class PseudoUncertainty(Strategy):
    """Next sample = the image without ``final`` whose pseudo-label is least confident."""

    def __init__(self) -> None:
        super().__init__("Image without a final label whose pseudo-label is least confident")

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        if not isinstance(datastore, BratsDatastore):
            raise AppRequestError("pseudo_uncertainty needs the app's local studies datastore")
        pool = datastore.pseudo_pool()
        if not pool:
            return None
        infos = {}
        for image_id in pool:
            info = datastore.get_label_info(image_id, PSEUDO) if datastore.get_label_uri(image_id, PSEUDO) else {}
            if info.get("uncertainty") is not None:
                infos[image_id] = info
        unseen = [i for i in pool if i not in infos]
        if unseen:
            logger.info(f"pseudo_uncertainty: {unseen[0]} has no pseudo-label yet ({len(unseen)} such image(s))")
            return {"id": unseen[0], "pseudo_uncertainty": None, "pseudo_confidence": None}
        image_id, uncertainty = rank_by_uncertainty(infos)[0]
        logger.info(f"pseudo_uncertainty: selected {image_id} (uncertainty {uncertainty:.4f} of {len(infos)})")
        return {"id": image_id, "pseudo_uncertainty": uncertainty, "pseudo_confidence": 1.0 - uncertainty}
