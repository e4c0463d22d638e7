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
  info, sidecar=...)`` with a summary of the engine's provenance sidecar -- teacher SHA-256,
  uncertainty, confidence, voxel counts -- as the label info, and the full sidecar file
  ``labels/pseudo/<id>.json`` of docs/CONTRACTS.md written in the same datastore transaction);
* the request is validated after MONAI Label merged its ``params`` (:func:`validate_pool_request`),
  and the subprocess kills itself when the server dies (:mod:`lib.lifeline`), so a killed server
  leaves no writer behind and a rerun labels only the images without this teacher's label;
* a clinician label is never touched: images with ``final`` are skipped before inference and
  re-checked right before each write (the datastore refuses a pseudo-label next to ``final``);
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
from robustlabel.data.nifti import write_json_atomic, write_nifti_atomic
from robustlabel.data.studies import modalities_path
from robustlabel.engine.distributed import init_distributed, launch_local
from robustlabel.engine.pool_shards import label_pool
from robustlabel.engine.pseudo_label import SOURCE_HEADER_KEY, PseudoLabeller, PseudoLabelResult

from ..conf import AppConf, parse_number, plan_ranks
# LABEL_INFO_KEYS: the sidecar keys copied into the datastore's label info (the datastore file is
# rewritten on every save, so it keeps a summary; the full sidecar -- affine, inference settings,
# ... -- is the file).  Defined in lib.datastore, which restores them from sidecars on recovery.
from ..datastore import LABEL_INFO_KEYS, MODEL_OUTPUT_KEY, PSEUDO, BratsDatastore, check_label_tag
from ..errors import AppRequestError, FinalLabelProtectedError, ModelNotTrainedError
from ..lifeline import watch_server
from ..names import check_image_id, check_model_name
from ..scoring.pseudo_confidence import PseudoConfidence

logger = logging.getLogger(__name__)

#: the ``images`` values of a batch-infer request (MONAI Label's ``BatchInferImageType``)
IMAGE_SELECTIONS: tuple[str, ...] = ("all", "labeled", "unlabeled")


def validate_pool_request(request: Mapping[str, Any], models: list[str]) -> None:
    """Check a batch-infer request after MONAI Label merged its ``params`` (HTTP 4xx naming the field).

    ``model`` must be served; ``images`` one of :data:`IMAGE_SELECTIONS` or a list of image ids;
    ``label_tag`` a plain tag, and it must be ``pseudo``.
    """
    check_model_name(request.get("model"), models)
    images = request.get("images", "all")
    images = getattr(images, "value", images)
    if isinstance(images, (list, tuple)):
        for i, image_id in enumerate(images):
            check_image_id(image_id, f"images[{i}]")
    elif images not in IMAGE_SELECTIONS:
        raise AppRequestError(f"images: expected one of {list(IMAGE_SELECTIONS)} or a list of image ids, got {images!r}",
                              status_code=422)
    tag = check_label_tag(request.get("label_tag") or PSEUDO, "label_tag")
    if tag != PSEUDO:
        raise AppRequestError(f"label_tag: pool pseudo-labels are stored under tag {PSEUDO!r}, not {tag!r}",
                              status_code=422)


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
        with tempfile.TemporaryDirectory(prefix="pseudo_") as tmp:
            path = write_nifti_atomic(Path(tmp) / f"{case}.nii.gz", label, affine, header=info.get(SOURCE_HEADER_KEY))
            try:
                summary = {k: info[k] for k in LABEL_INFO_KEYS if k in info}
                # label, sidecar and record in one datastore transaction: a kill leaves all or none
                self.datastore.save_label(case, str(path), PSEUDO, {MODEL_OUTPUT_KEY: self.model, **summary},
                                          sidecar=info)
            except FinalLabelProtectedError:  # a clinician submitted a final label meanwhile
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
        validate_pool_request(request, sorted(self.checkpoints))
        model = request["model"]
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
        ranks, gpus = plan_ranks(request, device)
        options = {
            "batch_size": int(parse_number("batch_size", request.get("batch_size", 2), int, lo=1)),
            # None: the engine's default (loader workers with CUDA, none on CPU)
            "num_workers": (None if request.get("num_workers") is None
                            else int(parse_number("num_workers", request["num_workers"], int, lo=0))),
        }
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
