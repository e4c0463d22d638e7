"""Task config ``transbts``: wires the TransBTS infer, train, active-learning and scoring tasks.

Follows MONAI Label's ``TaskConfig`` convention (radiology sample app, ``lib/configs``): the app
creates one config per served model and asks it for its tasks.  The network is TransBTS with
``img_size = roi_size`` (full: 32.7 M parameters at 128³; ``--conf tiny true``:
:data:`robustlabel.networks.TINY_TRANSBTS` at 32³).  The served checkpoint is
``<model_dir>/transbts.pt`` (``transbts_tiny.pt`` for the tiny network).  Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from robustlabel.networks import TINY_TRANSBTS

from ..activelearning.pseudo_uncertainty import PseudoUncertainty
from ..conf import AppConf
from ..infers.transbts import TransBTSInfer
from ..label_names import LABEL_COLORS, LABEL_NAMES
from ..scoring.pseudo_confidence import PseudoConfidence
from ..trainers.transbts import TransBTSTrain


def network_config(conf: AppConf) -> dict[str, Any]:
    """``build_network`` config of the app's TransBTS: tiny or full, ``img_size = roi_size``."""
    base = {**TINY_TRANSBTS} if conf.tiny else {}
    return {"name": "transbts", **base, "img_size": list(conf.roi_size)}


class TransBTSConfig(TaskConfig):
    """TransBTS on four MR modalities → BraTS labels 1 (necrosis), 2 (edema), 4 (enhancing tumour)."""

    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs: Any) -> None:
        super().init(name, model_dir, conf, planner, **kwargs)
        self.app_conf: AppConf = kwargs["app_conf"]
        self.labels = dict(LABEL_NAMES)
        self.label_colors = {k: list(v) for k, v in LABEL_COLORS.items()}
        self.network_config = network_config(self.app_conf)
        file_name = f"{name}_tiny.pt" if self.app_conf.tiny else f"{name}.pt"
        self.path = [os.path.join(self.app_conf.model_dir, file_name)]

    @property
    def published_model(self) -> Path:
        """The checkpoint the infer task serves and training publishes to."""
        return Path(self.path[0])

    def infer(self) -> InferTask:
        return TransBTSInfer(path=self.path[0], network_config=self.network_config, conf=self.app_conf)

    def trainer(self) -> TrainTask:
        return TransBTSTrain(self.name, self.app_conf, self.network_config, self.published_model)

    def strategy(self) -> dict[str, Strategy]:
        return {"pseudo_uncertainty": PseudoUncertainty()}

    def scoring_method(self) -> dict[str, ScoringMethod]:
        return {"pseudo_confidence": PseudoConfidence()}
