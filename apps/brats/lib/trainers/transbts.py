"""Train task ``transbts``: ``POST /train/transbts`` runs :func:`robustlabel.engine.trainer.train`.

The app adds no training logic; it builds the engine's inputs from the datastore and publishes
the result:

* **datalist** -- :func:`robustlabel.data.studies.studies_datalist` of the studies folder with
  sources ``("final",)`` (``use_pseudo`` false: the *teacher*) or ``("final", "pseudo")``
  (``use_pseudo`` true: the *student*); a ``final`` label always wins over a stale ``pseudo`` one.
* **loss** -- the engine's ``SourceAwareLoss``: CE on ``final`` items, ``pseudo_loss``
  (``gce`` | ``bce`` (β-CE) | ``sce`` | ``ce``, with ``q`` / ``beta`` / ``alpha``, ``gamma``) on
  ``pseudo`` items.  Defaults from the app conf; a request may override them.  Every value of a
  request is parsed by :func:`lib.conf.parse_train_request` (the app runs it in the server as
  well, before the task starts, so a bad value is a 4xx there and never reaches this process).
* **validation** -- ``final`` cases only, assigned by a stable function of the case id
  (:func:`split_validation`): adding labels never moves an earlier case between training and
  validation, so a case that validated one model never trains the next (MONAI Label #1752).
  Changing ``val_split`` or ``seed`` may move cases.  With a single clinician label there is
  no validation and the last epoch is kept.
* **mode** -- how the two label sources are weighted (``union`` | ``robust_all`` |
  ``per_source``, see :class:`robustlabel.losses.SourceAwareLoss`); conf default, request override.
* **publishing** -- the run's ``best.pt`` is copied to a hidden temporary file next to the served
  checkpoint and renamed onto it (``os.replace``), so the infer task, which reloads whenever
  the file's modification time changes, never reads a half-written model.
* **progress** -- ``train_stats.json`` (``epoch``, ``total_epochs``, ``best_metric``,
  ``current_time``/``total_time``, …: the keys the Slicer plugin's training bar reads) is
  rewritten atomically after every epoch and returned by :meth:`TransBTSTrain.stats` (``/info``).

* **several GPUs / ranks** (:func:`lib.conf.plan_ranks`) -- ``multi_gpu: true`` trains data parallel on every visible GPU,
  or on those named by ``gpus`` (``"all"`` or ``"0,1"``), one rank per GPU with NCCL;
  ``ranks: N`` starts ``N`` ranks (gloo on CPU, so that CI exercises the multi-rank path).  The
  ranks are processes started with ``torch.multiprocessing`` like MONAI Label's own
  ``BasicTrainTask`` (:func:`robustlabel.engine.local_ranks.train_on_local_ranks`); rank 0
  writes the run folder and its ``best.pt`` is published once every rank has exited.
  ``train_batch_size`` is per rank.  Without CUDA and without ``ranks``, ``multi_gpu`` trains
  in one process (logged).  ``train_stats.json`` is updated from rank 0's history when the
  ranks finish.

Each request is a fresh run in ``<model_dir>/<name>/runs/<run id>/`` (``best.pt``,
``history.jsonl``, TensorBoard logs); ``last.pt`` is removed once the run has finished.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask
from robustlabel.atomic import atomic_path, write_json_atomic
from robustlabel.data.studies import studies_datalist
from robustlabel.engine.checkpoint import sha256_file
from robustlabel.engine.config import TrainConfig
from robustlabel.engine.datalist import FINAL, PSEUDO
from robustlabel.engine.local_ranks import train_on_local_ranks
from robustlabel.engine.trainer import train
from robustlabel.losses.source_aware import SOURCE_MODES

from ..conf import PSEUDO_LOSSES, AppConf, TrainRequest, parse_train_request, train_defaults
from ..datastore import BratsDatastore
from ..errors import AppRequestError

logger = logging.getLogger(__name__)

STATS_NAME = "train_stats.json"


def case_hash(case: str, seed: int) -> float:
    """``u(case) = int(SHA-256("<seed>:<case>")) / 2^256 ∈ [0, 1)``: stable across runs and
    machines (Python's ``hash()`` is salted per process, so it would not do)."""
    digest = hashlib.sha256(f"{int(seed)}:{case}".encode()).digest()
    return int.from_bytes(digest, "big") / float(1 << 256)


def split_validation(finals: list[dict[str, Any]], val_split: float, seed: int) -> list[dict[str, Any]]:
    """The validation share of the ``final`` items: those with ``u(case) < val_split``
    (:func:`case_hash`).

    A case's side depends only on its own id, ``seed`` and ``val_split``, so adding labels never
    moves a case with ``u < val_split`` out of validation, nor any other case into it, except
    through the two fallbacks for small ``n``.  With ``n ≥ 2`` items and ``val_split > 0``: when
    no case falls below ``val_split``, the case with the smallest ``u`` validates (it returns to
    training once a case falls below ``val_split``); when every case does, the one with the
    largest ``u`` trains (never all).  ``n < 2`` or ``val_split = 0``: no validation.  Changing
    ``val_split`` or ``seed`` may move cases.  Returned in input order.
    """
    n = len(finals)
    if n < 2 or val_split <= 0:
        return []
    scores = [case_hash(str(item["case"]), seed) for item in finals]
    chosen = {i for i, u in enumerate(scores) if u < val_split}
    if not chosen:
        chosen = {min(range(n), key=scores.__getitem__)}
    elif len(chosen) == n:
        chosen.discard(max(range(n), key=scores.__getitem__))
    return [finals[i] for i in sorted(chosen)]


def publish_checkpoint(source: Path, target: Path) -> str:
    """Copy ``source`` onto ``target`` atomically; return the SHA-256 of the published file."""
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return sha256_file(target)


class TransBTSTrain(TrainTask):
    """MONAI Label train task calling the robustlabel engine (see the module docstring).

    Args:
        name: model name (``transbts``).
        conf: the app options (defaults of every request).
        network_config: :func:`robustlabel.networks.build_network` config to train.
        publish_path: the checkpoint the infer task serves.
    """

    def __init__(self, name: str, conf: AppConf, network_config: dict[str, Any], publish_path: Path) -> None:
        super().__init__(f"Train TransBTS: CE on final labels, {conf.pseudo_loss} on pseudo-labels when use_pseudo")
        self.name = name
        self.conf = conf
        self.network_config = dict(network_config)
        self.publish_path = Path(publish_path)
        self.output_dir = Path(conf.model_dir) / Path(publish_path).stem
        self.stats_path = self.output_dir / STATS_NAME

    # ------------------------------------------------------------------ MONAI Label interface
    def config(self) -> dict[str, Any]:
        """Options shown by clients (a list offers choices, its first item is the default)."""
        others = [loss for loss in PSEUDO_LOSSES if loss != self.conf.pseudo_loss]
        defaults = train_defaults(self.conf)
        return {
            "max_epochs": self.conf.max_epochs,
            "use_pseudo": [self.conf.use_pseudo, not self.conf.use_pseudo],
            "pseudo_loss": [self.conf.pseudo_loss, *others],
            "q": self.conf.q,
            "beta": self.conf.beta,
            "alpha": self.conf.alpha,
            "gamma": self.conf.gamma,
            "val_split": self.conf.val_split,
            "mode": [self.conf.mode, *(m for m in SOURCE_MODES if m != self.conf.mode)],
            "train_batch_size": defaults["train_batch_size"],
            "learning_rate": defaults["learning_rate"],
            "seed": self.conf.seed,
            "multi_gpu": False,
            "gpus": "all",
            "ranks": 1,
        }

    def stats(self) -> dict[str, Any]:
        try:
            return json.loads(self.stats_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        if not isinstance(datastore, BratsDatastore):
            raise AppRequestError("training needs the app's local studies datastore")
        run = parse_train_request(self.conf, request)
        conf, ranks = run.conf, run.ranks
        config = self._train_config(run)
        train_items, val_items = self._datalists(datastore.studies_dir, conf)
        run_id = datetime.datetime.now().strftime("%Y%m%d_%H%M%S_%f")
        run_dir = self.output_dir / "runs" / run_id
        start = time.time()
        stats: dict[str, Any] = {
            "name": self.name,
            "run_id": run_id,
            "status": "RUNNING",
            "start_ts": int(start),
            "epoch": 0,
            "total_epochs": config.epochs,
            "best_metric": 0.0,
            "use_pseudo": conf.use_pseudo,
            "pseudo_loss": conf.pseudo_loss if conf.use_pseudo else None,
            "pseudo_params": conf.loss_params() if conf.use_pseudo else None,
            "train_final": sum(i["source"] == FINAL for i in train_items),
            "train_pseudo": sum(i["source"] == PSEUDO for i in train_items),
            "val_final": len(val_items),
            "val_cases": [i["case"] for i in val_items],
            "train_cases": sorted({i["case"] for i in train_items}),
            "mode": conf.mode,
            "device": config.device,
            "ranks": ranks,
            "run_dir": str(run_dir),
        }
        self._write_stats(stats)

        def on_epoch(entry: dict[str, Any]) -> None:
            stats.update(epoch=entry["epoch"], last=entry, current_time=str(datetime.timedelta(seconds=int(time.time() - start))))
            if "val_mean_dice" in entry and entry["val_mean_dice"] > stats.get("best_val_mean_dice", float("-inf")):
                stats.update(best_metric=entry["val_mean_dice"], best_val_mean_dice=entry["val_mean_dice"], best_epoch=entry["epoch"])
            self._write_stats(stats)

        try:
            if ranks > 1:  # rank 0 writes run_dir; its history fills the stats afterwards
                gpus = None if run.gpus is None else list(run.gpus)
                result = train_on_local_ranks(train_items, val_items, run_dir, config, ranks, cuda_devices=gpus,
                                              resume=False, progress=True)
                for entry in result.history:
                    on_epoch(entry)
            else:
                result = train(train_items, val_items, run_dir, config, resume=False, progress=True, on_epoch=on_epoch)
            sha = publish_checkpoint(result.best_checkpoint, self.publish_path)
        except Exception as exc:
            stats.update(status="ERROR", error=f"{type(exc).__name__}: {exc}")
            self._write_stats(stats)
            raise
        result.last_checkpoint.unlink(missing_ok=True)
        stats.pop("current_time", None)
        stats.update(
            status="DONE",
            total_time=str(datetime.timedelta(seconds=int(time.time() - start))),
            best_epoch=result.best_epoch,
            published=str(self.publish_path),
            published_sha256=sha,
        )
        self._write_stats(stats)
        logger.info(f"Published {result.best_checkpoint} (epoch {result.best_epoch}) to {self.publish_path}")
        return stats

    # ------------------------------------------------------------------ helpers
    def _train_config(self, run: TrainRequest) -> TrainConfig:
        """The engine's config of one run (every value already parsed by :func:`lib.conf.parse_train_request`)."""
        conf = run.conf
        return TrainConfig(
            network=self.network_config,
            roi_size=conf.roi_size,
            batch_size=run.batch_size,
            epochs=conf.max_epochs,
            lr=run.learning_rate,
            pseudo_loss=conf.pseudo_loss,
            pseudo_params=conf.loss_params(),
            val_interval=run.val_interval,
            num_workers=run.num_workers,
            seed=conf.seed,
            device=run.device,
            mode=conf.mode,
        )

    def _datalists(self, studies: Path, conf: AppConf) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        sources = (FINAL, PSEUDO) if conf.use_pseudo else (FINAL,)
        items = studies_datalist(studies, sources)
        finals = [i for i in items if i["source"] == FINAL]
        if not finals:
            raise AppRequestError(
                f"no clinician labels in {studies}: submit at least one label with tag 'final' before training",
                status_code=409,
            )
        if conf.use_pseudo and not any(i["source"] == PSEUDO for i in items):
            logger.warning("use_pseudo is on but there are no pseudo-labels yet: the student trains on final labels only")
        val_items = split_validation(finals, conf.val_split, conf.seed)
        val_cases = {i["case"] for i in val_items}
        train_items = [i for i in items if i["case"] not in val_cases]
        logger.info(f"training on {len(train_items)} item(s) ({len(finals) - len(val_items)} final, "
                    f"{len(train_items) - len(finals) + len(val_items)} pseudo); validating on {len(val_items)} final "
                    f"case(s) (val_split {conf.val_split}, seed {conf.seed}, assigned by SHA-256 of seed and case id)")
        return train_items, val_items

    def _write_stats(self, stats: dict[str, Any]) -> None:
        write_json_atomic(self.stats_path, stats)
