"""robustlabel's MONAI Label app for BraTS brain-tumour segmentation with TransBTS.

Start it (CPU or GPU; nothing is downloaded)::

    monailabel start_server --app apps/brats --studies STUDIES -i 127.0.0.1 \\
        --conf models transbts [--conf tiny true] [--conf device auto] [--conf use_pseudo true] ...

``STUDIES`` is a folder built by ``robustlabel import-brats`` (docs/CONTRACTS.md).  The options are
described in ``lib/conf.py`` and ``README.md``.  Each served model's tasks come from its task config
(``lib/configs/<model>.py``): infer (``POST /infer/transbts``), train (``POST /train/transbts``:
teacher, or student with ``use_pseudo``), the strategy ``pseudo_uncertainty`` and the scoring method
``pseudo_confidence``; ``POST /batch/infer/transbts`` pseudo-labels the pool
(``lib/infers/pseudo_pool.py``).  The request checks and server guards are those of
:class:`lib.app_guards.GuardedApp` (README "Safety and access").
"""

from __future__ import annotations

import logging
import os

from lib.app_guards import GuardedApp
from lib.conf import AppConf, parse_conf
from lib.configs import CONFIGS
from lib.infers import PoolPseudoLabelTask
from lib.lifeline import watch_server
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

import robustlabel

logger = logging.getLogger(__name__)


class BratsApp(GuardedApp, MONAILabelApp):
    """TransBTS on BraTS studies: infer, train (teacher/student), pool pseudo-labels, active learning."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        watch_server()  # in a train / batch-infer / scoring subprocess of the server: die with the server
        self.app_conf: AppConf = parse_conf(conf, default_model_dir=os.path.join(app_dir, "model"))
        os.makedirs(self.app_conf.model_dir, exist_ok=True)
        self.models: dict[str, TaskConfig] = {}
        for name in self.app_conf.models:
            self.models[name] = CONFIGS[name]()
            self.models[name].init(name, self.app_conf.model_dir, conf, None, app_conf=self.app_conf)
        logger.info(f"+++ robustlabel BraTS app: models {list(self.models)}; conf {self.app_conf}")
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=f"robustlabel - BraTS TransBTS ({robustlabel.__version__})",
            description="TransBTS brain-tumour segmentation trained on clinician labels and robust-loss pseudo-labels",
            version=robustlabel.__version__,
        )
        # MONAI Label re-runs every scoring method after each train and next-sample request; the
        # pool's scores only change when the pool is labelled (which scores it) or a final label
        # retires a pseudo-label (the datastore clears its scores): off unless asked for
        self._auto_update_scoring = self.app_conf.auto_update_scoring

    def init_infers(self) -> dict[str, InferTask]:
        return {name: config.infer() for name, config in self.models.items()}

    def init_trainers(self) -> dict[str, TrainTask]:
        return {name: config.trainer() for name, config in self.models.items()}

    def init_strategies(self) -> dict[str, Strategy]:
        strategies: dict[str, Strategy] = {}
        for config in self.models.values():
            strategies.update(config.strategy() or {})
        return {**strategies, "random": Random(), "first": First()}

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        methods: dict[str, ScoringMethod] = {}
        for config in self.models.values():
            methods.update(config.scoring_method() or {})
        return methods

    def init_batch_infer(self) -> PoolPseudoLabelTask:
        """The engine's pool pseudo-labeller in place of MONAI Label's GPU-only per-image batch infer."""
        return PoolPseudoLabelTask({name: (lambda c=config: c.published_model) for name, config in self.models.items()},
                                   self.app_conf)
