"""Scoring method ``pseudo_confidence``: copy each pool image's pseudo-label confidence into its image info.

The engine's sidecar (the label info of tag ``pseudo``) holds the case ``uncertainty``: the mean
normalised entropy of the teacher's softmax over the predicted tumour,

.. math:: u = \\frac{1}{|T|} \\sum_{v ∈ T} \\frac{H(p_v)}{\\ln C} ∈ [0, 1],
          \\qquad T = \\{v : \\hat y_v ≠ 0\\}

and ``u = 1`` (maximally uncertain) when ``T`` is empty: a teacher that finds no tumour has
failed on the case, so it goes to the clinician first (:mod:`robustlabel.engine.pseudo_label`).  The confidence
recorded here is ``c = 1 − u``; the ``pseudo_uncertainty`` strategy offers the image with the
smallest ``c`` first.  Image info keys written: ``pseudo_confidence``, ``pseudo_uncertainty``,
``pseudo_teacher_sha256``; they are cleared (``None``) for an image that has a ``final`` label.

The pool pseudo-labeller runs it at its end; run it by hand with ``POST /scoring/pseudo_confidence``
(with ``--conf auto_update_scoring true`` MONAI Label also re-runs it after every train and
next-sample request).
"""

from __future__ import annotations

import logging
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from ..datastore import PSEUDO, PSEUDO_INFO_KEYS, BratsDatastore
from ..errors import AppRequestError

logger = logging.getLogger(__name__)


def pseudo_scores(datastore: BratsDatastore) -> dict[str, dict[str, Any]]:
    """``{image id: {pseudo_confidence, pseudo_uncertainty, pseudo_teacher_sha256}}`` of every
    pool image (no ``final`` label) whose pseudo-label carries an ``uncertainty``."""
    scores = {}
    for image_id in datastore.pseudo_pool():
        if not datastore.get_label_uri(image_id, PSEUDO):
            continue
        info = datastore.get_label_info(image_id, PSEUDO)
        if info.get("uncertainty") is None:
            continue
        uncertainty = float(info["uncertainty"])
        scores[image_id] = {
            "pseudo_confidence": 1.0 - uncertainty,
            "pseudo_uncertainty": uncertainty,
            "pseudo_teacher_sha256": info.get("teacher", {}).get("sha256"),
        }
    return scores


class PseudoConfidence(ScoringMethod):
    """Record ``pseudo_confidence = 1 − uncertainty`` of each pool image's pseudo-label in its image info."""

    def __init__(self) -> None:
        super().__init__("Record the confidence of each pool image's pseudo-label in its image info")

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, dict[str, Any]]:
        if not isinstance(datastore, BratsDatastore):
            raise AppRequestError("pseudo_confidence needs the app's local studies datastore")
        scores = pseudo_scores(datastore)
        updates: dict[str, dict[str, Any]] = {}
        for image_id in datastore.list_images():
            wanted = scores.get(image_id, dict.fromkeys(PSEUDO_INFO_KEYS))
            current = {k: datastore.get_image_info(image_id).get(k) for k in PSEUDO_INFO_KEYS}
            if current != wanted:
                updates[image_id] = wanted
        datastore.update_image_infos(updates)
        logger.info(f"pseudo_confidence: {len(scores)} pool image(s) scored, {len(updates)} image info(s) updated")
        return scores
