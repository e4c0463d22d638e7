"""Pool pseudo-labelling behind MONAI Label's ``/batch/infer`` endpoint.

Trigger (the app's ``init_batch_infer`` returns :class:`PoolPseudoLabelTask`)::

    POST /batch/infer/transbts?images=unlabeled
    {"label_tag": "pseudo", "device": "auto"}          # optional: batch_size, num_workers, max_batch_size

then poll ``GET /batch/infer`` until ``status`` is ``DONE`` (or ``ERROR``, with the log lines in
``details``).  MONAI Label runs the task in a background process, like training.

Why the stock ``BatchInferTask`` is replaced: it assumes a GPU (with its default
``multi_gpu: true`` it spreads images over ``cuda:<i>`` devices and divides by the GPU count,
a ``ZeroDivisionError`` on a machine without CUDA) and it runs ``app.infer`` on one image at a
time, each a full load → sliding window → write → datastore save round trip.  Here the engine's
:class:`~robustlabel.engine.pseudo_label.PseudoLabeller` loads the published teacher once,
batches volumes of equal shape, decompresses the next ones in data-loader workers while the
current batch runs (with CUDA), and works the same on CPU and GPU.

Guarantees:

* the pool is every requested image without a ``final`` label (``images=all`` or ``unlabeled``;
  ``labeled`` gives an empty pool); the tag is always ``pseudo`` (any other ``label_tag`` is refused);
* results go through the datastore API (:class:`DatastoreSink`: ``save_label(id, file, "pseudo",
  info)`` with a summary of the engine's provenance sidecar -- teacher SHA-256, uncertainty,
  confidence, voxel counts -- as the label info, plus the full sidecar file
  ``labels/pseudo/<id>.json`` of docs/CONTRACTS.md);
* a clinician label is never touched: images with ``final`` are skipped before inference and
  re-checked right before each write (the datastore refuses a pseudo-label next to ``final``);
* an image whose pseudo-label was made by the same teacher (SHA-256 of the checkpoint) is skipped;
* afterwards the :class:`~lib.scoring.pseudo_confidence.PseudoConfidence` scoring method copies
  each pool image's confidence into its image info.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.batch_infer import BatchInferTask
from robustlabel.data.nifti import write_json_atomic, write_nifti_atomic
from robustlabel.data.studies import modalities_path
from robustlabel.engine.pseudo_label import PseudoLabeller

from ..conf import AppConf, parse_number
from ..datastore import MODEL_OUTPUT_KEY, PSEUDO, BratsDatastore
from ..errors import AppRequestError, FinalLabelProtectedError, ModelNotTrainedError
from ..scoring.pseudo_confidence import PseudoConfidence

logger = logging.getLogger(__name__)


#: sidecar keys copied into the datastore's label info (the datastore file is rewritten on every
#: save, so it keeps a summary; the full sidecar -- affine, inference settings, ... -- is the file)
LABEL_INFO_KEYS: tuple[str, ...] = ("case", "tag", "teacher", "created", "uncertainty", "confidence", "voxel_counts")


class DatastoreSink:
    """:class:`~robustlabel.engine.pseudo_label.PseudoLabelSink` that stores through the datastore."""

    def __init__(self, datastore: BratsDatastore, model: str) -> None:
        self.datastore = datastore
        self.model = model

    def has_clinician_label(self, case: str) -> bool:
        return self.datastore.has_final_label(case)

    def existing_teacher(self, case: str) -> str | None:
        if not self.datastore.get_label_uri(case, PSEUDO):
            return None
        return self.datastore.get_label_info(case, PSEUDO).get("teacher", {}).get("sha256")

    def write(
        self, case: str, label: np.ndarray, affine: np.ndarray, info: dict[str, Any], confidence: np.ndarray | None
    ) -> str | None:
        if self.has_clinician_label(case):
            return None
        sidecar = self.datastore.sidecar_file(case)
        sidecar.unlink(missing_ok=True)  # a sidecar always describes the label beside it
        with tempfile.TemporaryDirectory(prefix="pseudo_") as tmp:
            path = write_nifti_atomic(Path(tmp) / f"{case}.nii.gz", label, affine)
            try:
                summary = {k: info[k] for k in LABEL_INFO_KEYS if k in info}
                self.datastore.save_label(case, str(path), PSEUDO, {MODEL_OUTPUT_KEY: self.model, **summary})
            except FinalLabelProtectedError:  # a clinician submitted a final label meanwhile
                logger.info(f"{case}: final label arrived during pseudo-labelling; pseudo-label dropped")
                return None
        write_json_atomic(sidecar, info)
        return self.datastore.get_label_uri(case, PSEUDO)


class PoolPseudoLabelTask(BatchInferTask):
    """``/batch/infer`` replacement: pseudo-label the pool with the published teacher (module docstring).

    Args:
        checkpoints: model name → callable returning its published checkpoint path.
        conf: the app options (device).
    """

    def __init__(self, checkpoints: Mapping[str, Callable[[], Path]], conf: AppConf) -> None:
        self.checkpoints = dict(checkpoints)
        self.conf = conf

    def __call__(self, request: dict[str, Any], datastore: Datastore, infer: Callable | None = None) -> dict[str, Any]:
        if not isinstance(datastore, BratsDatastore):
            raise AppRequestError("pool pseudo-labelling needs the app's local studies datastore")
        model = request.get("model")
        if model not in self.checkpoints:
            raise AppRequestError(f"unknown model {model!r} for pseudo-labelling; available: {sorted(self.checkpoints)}")
        tag = request.get("label_tag") or PSEUDO
        if tag != PSEUDO:
            raise AppRequestError(f"pool pseudo-labels are stored under tag {PSEUDO!r}, not {tag!r}")
        checkpoint = self.checkpoints[model]()
        if not checkpoint.is_file():
            raise ModelNotTrainedError(f"no trained {model} model at {checkpoint}: train a teacher first (POST /train/{model})")

        requested = set(self.get_images(request, datastore))
        pool = [i for i in datastore.pseudo_pool() if i in requested]
        limit = int(parse_number("max_batch_size", request.get("max_batch_size") or 0, int, lo=0))
        pool = pool[:limit] if limit else pool
        items = []
        for image_id in pool:
            four_d = modalities_path(datastore.get_image_uri(image_id))
            if four_d.is_file():
                items.append({"image": str(four_d), "case": image_id})
            else:
                logger.warning(f"{image_id}: no modalities file {four_d}; left out of the pool")
        logger.info(f"Pseudo-labelling {len(items)} pool image(s) with {checkpoint}")

        device = self.conf.resolved_device(request.get("device"))
        labeller = PseudoLabeller(
            checkpoint,
            device=device,
            batch_size=int(parse_number("batch_size", request.get("batch_size", 2), int, lo=1)),
            # None: the engine's default (loader workers with CUDA, none on CPU)
            num_workers=(None if request.get("num_workers") is None
                         else int(parse_number("num_workers", request["num_workers"], int, lo=0))),
        )
        results = labeller.label(items, DatastoreSink(datastore, model), progress=True)
        scores = PseudoConfidence()({"method": "pseudo_confidence"}, datastore)
        summary = {
            r.case: {"status": r.status, "label": r.location, "uncertainty": r.uncertainty,
                     "confidence": scores.get(r.case, {}).get("pseudo_confidence")}
            for r in results
        }
        logger.info(f"Pseudo-labelling done: {json.dumps(summary)}")
        return summary
