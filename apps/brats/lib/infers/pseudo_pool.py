"""Pool pseudo-labelling behind MONAI Label's ``/batch/infer`` endpoint.

Trigger (the app's ``init_batch_infer`` returns :class:`PoolPseudoLabelTask`)::

    POST /batch/infer/transbts?images=unlabeled
    {"label_tag": "pseudo", "device": "auto"}          # optional: batch_size, num_workers, max_batch_size, cpu_bf16

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
* results go through the datastore API (:class:`DatastoreSink`: ``save_label_array(id, label,
  affine, "pseudo", info, sidecar=...)`` with a summary of the engine's provenance sidecar --
  teacher SHA-256, uncertainty, confidence, voxel counts -- as the label info, and the full sidecar
  file ``labels/pseudo/<id>.json`` of docs/CONTRACTS.md written in the same datastore
  transaction).  Each label is handled once: the datastore checks the array in memory (shape,
  affine, values) and writes the label file itself, atomically, under its lock;
* the request is parsed by :func:`lib.conf.parse_pool_request` (in the server before the
  subprocess starts, and here), and the subprocess kills itself when the server dies
  (:mod:`lib.lifeline`), so a killed server leaves no writer behind and a rerun labels only the
  images without this teacher's label;
* a clinician label is never touched: images with ``final`` are skipped before inference (the
  engine asks :meth:`DatastoreSink.has_clinician_label`, to save the compute), and the datastore
  refuses a pseudo-label next to ``final`` under its lock when it stores one (a final label that
  arrived meanwhile: the pseudo-label is dropped);
* an image whose pseudo-label was made by the same teacher (SHA-256 of the checkpoint) is skipped;
* afterwards the :class:`~lib.scoring.pseudo_confidence.PseudoConfidence` scoring method copies
  each pool image's confidence into its image info.

Several GPUs (:func:`lib.conf.plan_ranks`): with ``multi_gpu: true`` (MONAI Label's default for
``/batch/infer``) and CUDA, one rank per visible GPU (or per GPU of ``gpus``: ``"all"`` or
``"0,1"``) takes a shard of the pool, in place of the stock task's thread per GPU; ``ranks: N``
starts ``N`` ranks (gloo on CPU).  The ranks are processes started with ``torch.multiprocessing``
(:func:`robustlabel.engine.distributed.launch_local`); each loads the teacher once and stores
through its own datastore object, whose writes are transactions under the datastore's file lock
(:mod:`lib.datastore`), with every guarantee above
(:func:`robustlabel.engine.pool_shards.label_pool`).  Rank 0 gathers the per-case results;
this task then reloads the datastore and scores the pool.  Without CUDA and without ``ranks``
the pool is labelled in this process.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.batch_infer import BatchInferTask
from robustlabel.atomic import write_json_atomic
from robustlabel.data.studies import modalities_path
from robustlabel.engine.distributed import init_distributed, launch_local
from robustlabel.engine.pool_shards import label_pool
from robustlabel.engine.pseudo_label import SOURCE_HEADER_KEY, PseudoLabeller, PseudoLabelResult

from ..conf import AppConf, parse_pool_request
# LABEL_INFO_KEYS: the sidecar keys copied into the datastore's label info (the datastore file is
# rewritten on every save, so it keeps a summary; the full sidecar -- affine, inference settings,
# ... -- is the file).  Defined in lib.datastore, which restores them from sidecars on recovery.
from ..datastore import LABEL_INFO_KEYS, MODEL_OUTPUT_KEY, PSEUDO, BratsDatastore
from ..errors import AppRequestError, FinalLabelProtectedError, ModelNotTrainedError
from ..lifeline import watch_server
from ..scoring.pseudo_confidence import PseudoConfidence

logger = logging.getLogger(__name__)


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
        """Store one pseudo-label through the datastore (checked in memory, written once, atomically);
        ``None`` when the case got a final label meanwhile (the datastore refuses it under its lock)."""
        summary = {k: info[k] for k in LABEL_INFO_KEYS if k in info}
        try:  # label, sidecar and record in one datastore transaction: a kill leaves all or none
            self.datastore.save_label_array(case, label, affine, PSEUDO, {MODEL_OUTPUT_KEY: self.model, **summary},
                                            sidecar=info, header=info.get(SOURCE_HEADER_KEY))
        except FinalLabelProtectedError:
            logger.info(f"{case}: final label arrived during pseudo-labelling; pseudo-label dropped")
            return None
        return self.datastore.get_label_uri(case, PSEUDO)


def _pool_rank(studies: str, items: list[dict[str, Any]], checkpoint: str, model: str, device: str,
               options: dict[str, Any], result_path: str) -> None:
    """One rank of a multi-rank ``/batch/infer``: label this rank's shard through its own
    datastore object; rank 0 writes every rank's results to ``result_path`` (JSON)."""
    ctx = init_distributed(device)
    datastore = BratsDatastore(studies, auto_reload=False)
    labeller = PseudoLabeller(checkpoint, device=device, **options)
    results = label_pool(labeller, items, DatastoreSink(datastore, model), progress=ctx.is_main)
    if ctx.is_main:
        write_json_atomic(Path(result_path), [dataclasses.asdict(r) for r in results])


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
        watch_server()  # in the server's batch subprocess: die with the server (lib/lifeline.py)
        pool_request = parse_pool_request(self.conf, request, sorted(self.checkpoints))
        model = pool_request.model
        checkpoint = self.checkpoints[model]()
        if not checkpoint.is_file():
            raise ModelNotTrainedError(f"no trained {model} model at {checkpoint}: train a teacher first (POST /train/{model})")

        requested = set(self.get_images(request, datastore))
        pool = [i for i in datastore.pseudo_pool() if i in requested]
        limit = pool_request.max_batch_size
        pool = pool[:limit] if limit else pool
        items = []
        for image_id in pool:
            four_d = modalities_path(datastore.get_image_uri(image_id))
            if four_d.is_file():
                items.append({"image": str(four_d), "case": image_id})
            else:
                logger.warning(f"{image_id}: no modalities file {four_d}; left out of the pool")
        logger.info(f"Pseudo-labelling {len(items)} pool image(s) with {checkpoint}")

        device, ranks = pool_request.device, pool_request.ranks
        gpus = None if pool_request.gpus is None else list(pool_request.gpus)
        options = pool_request.labeller_options()
        if ranks > 1 and items:
            results = self._label_on_ranks(ranks, gpus, datastore, items, checkpoint, model, device, options)
        else:
            labeller = PseudoLabeller(checkpoint, device=device, **options)
            results = labeller.label(items, DatastoreSink(datastore, model), progress=True)
        scores = PseudoConfidence()({"method": "pseudo_confidence"}, datastore)
        summary = {
            r.case: {"status": r.status, "label": r.location, "uncertainty": r.uncertainty,
                     "confidence": scores.get(r.case, {}).get("pseudo_confidence")}
            for r in results
        }
        logger.info(f"Pseudo-labelling done: {json.dumps(summary)}")
        return summary

    @staticmethod
    def _label_on_ranks(ranks: int, gpus: list[int] | None, datastore: BratsDatastore, items: list[dict[str, Any]],
                        checkpoint: Path, model: str, device: str, options: dict[str, Any]) -> list[PseudoLabelResult]:
        """The pool sharded over ``ranks`` local processes (module docstring); the datastore is
        reloaded afterwards so that it sees what the ranks stored."""
        logger.info(f"Pseudo-labelling on {ranks} ranks" + (f" (GPUs {gpus})" if gpus else ""))
        env = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))} if gpus else {}
        with tempfile.TemporaryDirectory(prefix="pool_ranks_") as tmp:
            result_path = Path(tmp) / "results.json"
            launch_local(_pool_rank, ranks, (str(datastore.studies_dir), items, str(checkpoint), model, device, options,
                                             str(result_path)), env=env)
            results = [PseudoLabelResult(**r) for r in json.loads(result_path.read_text())]
        datastore._init_from_datastore_file()  # the ranks wrote through their own datastore objects
        return results
