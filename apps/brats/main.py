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
"""

from __future__ import annotations

import logging
import os
from typing import Any

from lib.configs import CONFIGS
from lib.conf import KNOWN_KEYS, AppConf, parse_bool, parse_conf
from lib.datastore import FINAL, BratsDatastore
from lib.errors import AppRequestError, FinalLabelProtectedError
from lib.infers import PoolPseudoLabelTask
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
        return BratsDatastore(
            self.studies,
            extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

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

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """``MONAILabelApp.infer`` with a 404 for an unknown image id and no model output under ``final``."""
        image = request.get("image")
        if isinstance(image, str) and not os.path.exists(image):
            (datastore or self.datastore()).require_image(image)
        tag = request.get("label_tag") or DefaultLabelTag.ORIGINAL.value
        if tag == FINAL and parse_bool("save_label", request.get("save_label", False)):
            raise FinalLabelProtectedError(
                f"refusing to save the output of model {request.get('model')!r} under tag {FINAL!r}: "
                f"that tag holds clinician labels only"
            )
        return super().infer(request, datastore)

    def on_save_label(self, image_id: str, label_id: str) -> dict[str, Any]:
        logger.info(f"Label saved for {image_id}: {label_id}")
        return {}
