"""robustlabel's MONAI Label app for BraTS brain-tumour segmentation with TransBTS.

Start it (CPU or GPU; nothing is downloaded)::

    monailabel start_server --app apps/brats --studies STUDIES -i 127.0.0.1 \\
        --conf models transbts [--conf tiny true] [--conf device auto] [--conf use_pseudo true] ...

``STUDIES`` is a folder built by ``robustlabel import-brats`` (docs/CONTRACTS.md).  All options
are described in ``lib/conf.py`` and ``README.md``.  What the app serves:

* infer ``transbts`` (``POST /infer/transbts?image=<id>``): one BraTS label map {0, 1, 2, 4};
* train ``transbts`` (``POST /train/transbts``): teacher (``final`` labels, CE) or student
  (``use_pseudo``: plus ``pseudo`` labels with a robust loss), through the robustlabel engine;
* pool pseudo-labelling (``POST /batch/infer/transbts?images=unlabeled`` with
  ``{"label_tag": "pseudo"}``): every image without ``final`` gets a ``pseudo`` label;
* strategy ``pseudo_uncertainty`` and scoring method ``pseudo_confidence``.

Safety (README "Safety and access"): every tag and image id of infer, batch infer, train and
scoring requests is validated here after MONAI Label merged the request's ``params``
(:meth:`BratsApp.validate_infer_request`, :meth:`BratsApp.validate_task_request`); the datastore
(``lib/datastore.py``) guards its own methods, which serve MONAI Label's ``/datastore`` endpoints;
and :meth:`BratsApp.server_mode` installs the FastAPI-level guards of ``lib/server_guards.py``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

from lib import server_guards, uploads
from lib.configs import CONFIGS
from lib.conf import KNOWN_KEYS, AppConf, parse_bool, parse_conf
from lib.datastore import FINAL, BratsDatastore, check_label_tag
from lib.errors import AppRequestError, FinalLabelProtectedError, InvalidNameError
from lib.infers import PoolPseudoLabelTask
from lib.infers.transbts import RESULT_DIR_KEY
from lib.infers.pseudo_pool import validate_pool_request
from lib.lifeline import mark_server_process, watch_server
from lib.names import check_model_name, is_inside
from lib.sessions import CappedSessions
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

import robustlabel

logger = logging.getLogger(__name__)


class BratsApp(MONAILabelApp):
    """TransBTS on BraTS studies: infer, train (teacher/student), pool pseudo-labels, active learning."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        # in a train / batch-infer / scoring subprocess of the server: die with the server
        watch_server()
        self.app_conf: AppConf = parse_conf(conf, default_model_dir=os.path.join(app_dir, "model"))
        unknown = sorted(set(conf) - KNOWN_KEYS)
        if unknown:
            logger.warning(f"Ignoring unknown --conf key(s) {unknown}; known keys: {sorted(KNOWN_KEYS)}")
        os.makedirs(self.app_conf.model_dir, exist_ok=True)
        self.models: dict[str, TaskConfig] = {}
        for name in self.app_conf.models:
            task_config = CONFIGS[name]()
            task_config.init(name, self.app_conf.model_dir, conf, None, app_conf=self.app_conf)
            self.models[name] = task_config
        logger.info(f"+++ robustlabel BraTS app: models {list(self.models)}; conf {self.app_conf}")
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=f"robustlabel - BraTS TransBTS ({robustlabel.__version__})",
            description="TransBTS brain-tumour segmentation trained on clinician labels and robust-loss pseudo-labels",
            version=robustlabel.__version__,
        )
        # MONAI Label re-runs every scoring method in a background process after each train and
        # next-sample request.  pseudo_confidence only changes when the pool pseudo-labeller runs
        # (which scores at its end) or a final label retires a pseudo-label (the datastore clears
        # the image's scores), so by default the app does not spawn those processes.
        self._auto_update_scoring = self.app_conf.auto_update_scoring

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            raise AppRequestError(f"this app needs a local studies folder built by `robustlabel import-brats`, got {self.studies}")
        logger.info(f"Init BraTS datastore for: {self.studies}")
        datastore = BratsDatastore(
            self.studies,
            allow_final_delete=self.app_conf.allow_final_delete,
            max_upload_voxels=self.app_conf.max_upload_voxels,
            max_upload_bytes=self.app_conf.max_upload_bytes,
            extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )
        if datastore.recovered:  # rebuilt from the files on disk: restore the pool's scores as well
            from lib.scoring.pseudo_confidence import PseudoConfidence

            PseudoConfidence()({"method": "pseudo_confidence"}, datastore)
        return datastore

    def init_infers(self) -> dict[str, InferTask]:
        return {name: task_config.infer() for name, task_config in self.models.items()}

    def init_trainers(self) -> dict[str, TrainTask]:
        return {name: task_config.trainer() for name, task_config in self.models.items()}

    def init_strategies(self) -> dict[str, Strategy]:
        strategies: dict[str, Strategy] = {}
        for task_config in self.models.values():
            strategies.update(task_config.strategy() or {})
        strategies.update({"random": Random(), "first": First()})
        return strategies

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        methods: dict[str, ScoringMethod] = {}
        for task_config in self.models.values():
            methods.update(task_config.scoring_method() or {})
        return methods

    def init_batch_infer(self) -> PoolPseudoLabelTask:
        # MONAI Label's BatchInferTask assumes a GPU (multi_gpu divides by the CUDA device count)
        # and runs app.infer one image at a time; /batch/infer runs the engine's pool
        # pseudo-labeller instead (see lib/infers/pseudo_pool.py).
        return PoolPseudoLabelTask(
            {name: (lambda c=task_config: c.published_model) for name, task_config in self.models.items()},
            self.app_conf,
        )

    def server_mode(self, mode: bool) -> None:
        """MONAI Label calls this in the server once the app exists: install the server guards
        (lib/server_guards.py: origin check, upload clean-up, token and role fixes, validation of
        background requests) and export the server's pid so that its subprocesses die with it."""
        super().server_mode(mode)
        if mode:
            mark_server_process()
            server_guards.install(self.validate_task_request, self.app_conf.cors_origins,
                                  self.app_conf.max_upload_bytes, self.app_conf.allowed_hosts, self.app_conf.sessions)

    def _load_sessions(self, load: bool = False) -> CappedSessions | None:
        """MONAI Label's sessions only with ``--conf sessions true``, then capped (lib/sessions.py)."""
        if not (load and self.app_conf.sessions):
            return None
        return CappedSessions.from_settings(self.app_conf.max_upload_bytes)

    # ------------------------------------------------------------------ request validation
    def validate_infer_request(self, request: dict[str, Any], datastore: Datastore | None = None) -> None:
        """Check an infer request after MONAI Label merged its ``params`` (HTTP 4xx naming the field).

        ``image`` is a datastore id; the one exception is a file the server itself made for this
        request (an uploaded ``file``) or a session image.  ``label`` can only be such an upload.
        ``label_tag`` is a plain tag, and a model output is never saved under ``final``.
        """
        check_model_name(request.get("model"), self._infers)
        image = request.get("image")
        if self._is_session_image(request) and not os.path.isfile(image):
            raise InvalidNameError(f"session_id: the session holds a folder, not one NIfTI image ({image})")
        if not (uploads.is_server_upload(image) or self._is_session_image(request)):
            store = datastore or self.datastore()
            if not isinstance(store, BratsDatastore):
                raise AppRequestError("this app needs its local studies datastore")
            store.require_image(image, "image")
        label = request.get("label")
        if label not in (None, "") and not uploads.is_server_upload(label):
            raise InvalidNameError(f"label: {label!r} is not a file uploaded with this request")
        tag = request.get("label_tag")
        tag = DefaultLabelTag.ORIGINAL.value if tag in (None, "") else check_label_tag(tag, "label_tag")
        if tag == FINAL and parse_bool("save_label", request.get("save_label", False)):
            raise FinalLabelProtectedError(
                f"label_tag: refusing to save the output of model {request.get('model')!r} under tag {FINAL!r}: "
                f"that tag holds clinician labels only (they are submitted with PUT /datastore/label)"
            )

    def _is_session_image(self, request: dict[str, Any]) -> bool:
        sessions = self.sessions()
        image = request.get("image")
        return (bool(request.get("session")) and sessions is not None and isinstance(image, str)
                and is_inside(image, sessions.store_path))

    def validate_train_request(self, request: dict[str, Any]) -> None:
        """Check a train request after the merge: a served model, and valid overrides (lib/conf.py)."""
        check_model_name(request.get("model"), self._trainers)
        self.app_conf.with_overrides(request)

    def validate_task_request(self, method: str, request: dict[str, Any]) -> None:
        """Validate a background request in the server before MONAI Label starts its subprocess."""
        if method == "train":
            self.validate_train_request(request)
        elif method == "batch_infer":
            validate_pool_request(request, sorted(self._infers))
        elif method == "scoring":
            check_model_name(request.get("method"), self._scoring_methods, "method")

    # ------------------------------------------------------------------ entry points
    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """``MONAILabelApp.infer`` after :meth:`validate_infer_request`."""
        self.validate_infer_request(request, datastore)
        request = dict(request)
        request.pop(RESULT_DIR_KEY, None)
        if uploads.tracking():
            # the result file goes into a folder this request removes when it ends, on success or
            # error (MONAI Label runs the task in a thread pool, where the request's context -- and
            # so lib.uploads' record -- is not visible; the folder name travels in the request)
            result_dir = tempfile.mkdtemp(prefix="infer_")
            uploads.remove_after_request(result_dir)
            request[RESULT_DIR_KEY] = result_dir
        return super().infer(request, datastore)

    def batch_infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """``MONAILabelApp.batch_infer`` (the pool pseudo-labeller) after validating the merged request."""
        validate_pool_request(request, sorted(self._infers))
        return super().batch_infer(request, datastore)

    def train(self, request: dict[str, Any]) -> Any:
        """``MONAILabelApp.train`` after :meth:`validate_train_request`."""
        self.validate_train_request(request)
        return super().train(request)

    def next_sample(self, request: dict[str, Any]) -> dict[str, Any]:
        """``MONAILabelApp.next_sample`` with a 404 naming an unknown strategy (stock: a bare 500)."""
        strategy = request.get("strategy") or "random"
        check_model_name(strategy, self._strategies, "strategy")
        return super().next_sample(request)

    def on_save_label(self, image_id: str, label_id: str) -> dict[str, Any]:
        logger.info(f"Label saved for {image_id}: {label_id}")
        return {}
