"""Train a segmentation network on clinician and pseudo-labels: :func:`train`.

One training step on a batch ``{(x_n, y_n, s_n)}`` with label source ``s_n ∈ {final, pseudo}``
minimises :class:`~robustlabel.losses.SourceAwareLoss`

.. math:: L = \\frac{1}{|V|}\\Big(\\sum_{n: s_n = final} \\sum_v CE(z_{n,v}, y_{n,v})
          + w \\sum_{n: s_n = pseudo} \\sum_v ℓ_{robust}(z_{n,v}, y_{n,v})\\Big)

(``config.mode="union"``; ``"robust_all"`` applies the robust loss to every sample and
``"per_source"`` draws 1:1 batches with :class:`~robustlabel.engine.sampler.SourceBalancedSampler`
and adds the two per-source means), with Adam (``lr_0 = 2e-4``, weight decay 1e-5, AMSGrad) and the poly decay
``lr_e = lr_0 (1 − e/E)^{0.9}`` per epoch (torch ``PolynomialLR``), as the official TransBTS.

Machinery (MONAI ignite engines and handlers):

* :class:`SourceAwareTrainer` (a minimal ``SupervisedTrainer`` subclass) runs the steps, with
  autocast + ``GradScaler`` on CUDA (bf16 where supported; the scaler is only active for fp16);
* ``SupervisedEvaluator`` + ``SlidingWindowInferer`` validate WT/TC/ET Dice (MONAI
  ``DiceMetric`` on ``ConvertToMultiChannelBasedOnBratsClasses`` regions) on the clinician
  (``final``) cases only, every ``val_interval`` epochs and after the last one;
* ``LrScheduleHandler``, ``TensorBoardStatsHandler``, ``StatsHandler`` and ignite's tqdm
  ``ProgressBar``; ``CheckpointLoader`` resumes from ``last.pt``;
* :class:`~robustlabel.engine.checkpoint.AtomicCheckpointer` writes ``last.pt`` every epoch and
  ``best.pt`` whenever the mean validation Dice improves, so a run killed with ``kill -9``
  loses at most the epoch in progress.

Files in ``out_dir``: ``last.pt``, ``best.pt``, ``history.jsonl`` (one JSON object per epoch),
``tensorboard/``.

Data parallel (``torch.distributed``, :mod:`robustlabel.engine.distributed`): the same code runs
in one process and in each of ``N`` ranks of a job started by ``torchrun`` or
:func:`~robustlabel.engine.distributed.launch_local`.  With a process group the network is
wrapped in ``DistributedDataParallel`` (gradients averaged over ranks; BatchNorm becomes
``SyncBatchNorm`` on CUDA unless ``freeze_batchnorm``); each rank draws its part of the epoch
from MONAI's ``DistributedSampler`` (shuffled, padded to equal length) or, for
``mode="per_source"``, whole pairs from
:class:`~robustlabel.engine.sampler.DistributedSourceBalancedSampler`; ``batch_size`` is per
rank, so a step sees the global batch ``N · batch_size``; random augmentations are seeded with
``seed + rank``.  Validation cases are split with ``DistributedSampler(even_divisible=False,
shuffle=False)`` and MONAI's ``DiceMetric`` gathers the per-case scores of all ranks; the
epoch's mean loss is averaged over ranks.  Only rank 0 writes checkpoints, ``history.jsonl``,
TensorBoard logs and progress; every rank returns the same :class:`TrainResult`.  ``last.pt``
resumes on any number of ranks (the epoch counter is restored, not the iteration count);
``batch_size`` may change on resume as long as the global batch stays the same.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from ignite.contrib.handlers import ProgressBar
from ignite.engine import Engine, Events
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.engines.utils import default_prepare_batch
from monai.handlers import (
    CheckpointLoader,
    IgniteMetricHandler,
    LrScheduleHandler,
    StatsHandler,
    TensorBoardStatsHandler,
    ValidationHandler,
    from_engine,
)
from monai.apps import get_logger
from monai.data import DistributedSampler
from monai.metrics import DiceMetric
from monai.transforms import AsDiscreted, Compose, Lambdad, RandFlipd, RandScaleIntensityd, RandShiftIntensityd
from monai.utils import CommonKeys
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Adam
from torch.optim.lr_scheduler import PolynomialLR
from torch.utils.tensorboard import SummaryWriter

from ..data.labels import REGIONS, TrainToBratsLabelsd, brats_regions
from ..atomic import write_bytes_atomic
from ..data.transforms import train_transforms, val_transforms
from ..losses import SourceAwareLoss
from ..losses.source_aware import source_aware_loss
from ..networks import build_network
from .checkpoint import BEST_NAME, LAST_NAME, AtomicCheckpointer, TrainingRecord, read_checkpoint
from .config import SELECTIONS, TrainConfig, resolve_amp_dtype
from .distributed import DistContext, all_reduce_mean, any_rank, barrier, current, rank_device
from .sampler import DistributedSourceBalancedSampler, SourceBalancedSampler
from .datalist import FINAL, PSEUDO, check_datalist, make_loader, pseudo_flags, require_clinician_labels
from .inference import make_inferer

logger = logging.getLogger(__name__)
#: stdout logger (MONAI ``get_logger``) of the epoch summaries and validation scores when ``progress``
#: is on; without ``progress`` the summaries go to this module's logger (standard propagation)
STATS_LOGGER = "robustlabel.train"

HISTORY_NAME = "history.jsonl"
TENSORBOARD_DIR = "tensorboard"
#: key validation metric: mean Dice over the regions WT, TC, ET and the validation cases
KEY_METRIC = "val_mean_dice"
#: per-region validation Dice, in REGIONS order
REGION_METRICS: tuple[str, ...] = tuple(f"val_dice_{r.lower()}" for r in REGIONS)
#: config fields that may change when a run is resumed (they do not change the maths)
RESUMABLE_CHANGES = frozenset({"num_workers", "device", "sw_batch_size", "val_interval", "amp", "amp_dtype"})
#: the training pipeline's random augmentations, left out with ``config.augment=False``
RANDOM_AUGMENTATIONS = (RandFlipd, RandScaleIntensityd, RandShiftIntensityd)

EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        out_dir: the run folder.
        last_checkpoint: ``out_dir/last.pt`` (every epoch; resumable).
        best_checkpoint: ``out_dir/best.pt`` (best mean validation Dice; the last epoch when
            there are no validation cases).
        history: one dict per epoch (``epoch``, ``loss``, ``lr``, ``time_s`` and, on validation
            epochs, ``val_mean_dice`` and ``val_dice_{wt,tc,et}``), including resumed epochs.
        best_metric: best ``val_mean_dice`` (``None`` without validation).
        best_epoch: epoch of ``best_checkpoint``.
        start_epoch: epochs already done when this call began (0 for a fresh run).

    :meth:`checkpoint` picks one of the two by name (``--select last|best``).
    """

    out_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int = 0
    start_epoch: int = 0

    def checkpoint(self, select: str) -> Path:
        """``last_checkpoint`` for ``"last"`` (the seed paper scores the last epoch),
        ``best_checkpoint`` for ``"best"`` (best validation Dice); ``ValueError`` otherwise."""
        if select not in SELECTIONS:
            raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
        return self.last_checkpoint if select == "last" else self.best_checkpoint

    @property
    def epochs(self) -> int:
        """Epochs finished (the last history entry)."""
        return int(self.history[-1]["epoch"]) if self.history else 0


# --------------------------------------------------------------------------- building blocks
def build_source_aware_loss(config: TrainConfig) -> SourceAwareLoss:
    """:func:`~robustlabel.losses.source_aware.source_aware_loss` of ``config``'s pseudo loss,
    its parameters, ``pseudo_weight`` and ``mode`` (``get_loss``' ``ValueError`` propagates)."""
    return source_aware_loss(config.pseudo_loss, config.resolved_pseudo_params,
                             pseudo_weight=config.pseudo_weight, mode=config.mode)


def balanced_sampler(items: Sequence[Mapping[str, Any]], config: TrainConfig) -> SourceBalancedSampler | None:
    """The 1:1 sampler of ``mode="per_source"`` when ``items`` hold both sources, else ``None``
    (plain shuffling).  An odd ``batch_size`` is logged: its batches alternate between one
    extra clinician and one extra pseudo sample."""
    if config.mode != "per_source":
        return None
    sampler = SourceBalancedSampler([item["source"] == PSEUDO for item in items], seed=config.seed)
    if not sampler.balanced:
        return None
    if config.batch_size % 2:
        logger.warning("mode per_source with odd batch_size %d: batches are balanced only in pairs", config.batch_size)
    return sampler


def training_sampler(
    items: Sequence[Mapping[str, Any]], config: TrainConfig, ctx: DistContext
) -> torch.utils.data.Sampler | None:
    """The training loader's sampler on this rank: :func:`balanced_sampler` in one process
    (``None``: plain shuffling); under a process group its distributed form, whole pairs of
    :class:`DistributedSourceBalancedSampler` or MONAI's shuffled ``DistributedSampler``
    (seeded with ``config.seed``, padded so every rank takes the same number of steps)."""
    balanced = balanced_sampler(items, config)
    if not ctx.distributed:
        return balanced
    if balanced is not None:
        return DistributedSourceBalancedSampler(balanced, ctx.world_size, ctx.rank)
    return DistributedSampler(list(items), even_divisible=True, num_replicas=ctx.world_size, rank=ctx.rank,
                              shuffle=True, seed=config.seed)


def training_transforms(config: TrainConfig) -> Compose:
    """:func:`~robustlabel.data.transforms.train_transforms` at ``config``'s crop size, without
    :data:`RANDOM_AUGMENTATIONS` when ``config.augment`` is off."""
    pipeline = train_transforms(config.resolved_roi_size)
    if config.augment:
        return pipeline
    return Compose([t for t in pipeline.transforms if not isinstance(t, RANDOM_AUGMENTATIONS)])


def _train_keeps_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(module, False)


def freeze_batchnorm(network: nn.Module) -> int:
    """Keep every BatchNorm layer of ``network`` in eval mode, even when ``network.train()`` is
    called (the engines call it every step): normalisation by the running statistics, which are
    no longer updated.  Returns the number of layers frozen."""
    frozen = 0
    for module in network.modules():
        if isinstance(module, _BatchNorm):
            module.train = functools.partial(_train_keeps_eval, module)  # type: ignore[method-assign]
            module.eval()
            frozen += 1
    return frozen


def data_parallel(network: nn.Module, config: TrainConfig, device: torch.device, ctx: DistContext) -> nn.Module:
    """The module the trainer steps: ``network`` itself in one process; under a process group
    ``DistributedDataParallel(network)`` (BatchNorm converted to ``SyncBatchNorm`` first on CUDA
    unless ``config.freeze_batchnorm``).  Parameters are shared, so ``network`` stays the
    module to checkpoint and to validate."""
    if config.freeze_batchnorm:
        freeze_batchnorm(network)
    if not ctx.distributed:
        return network
    if device.type == "cuda" and not config.freeze_batchnorm:
        network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
    elif any(isinstance(m, _BatchNorm) for m in network.modules()) and not config.freeze_batchnorm:
        logger.info("BatchNorm on CPU ranks normalises with each rank's batch (SyncBatchNorm needs CUDA)")
    return DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)


def build_optimizer(network: torch.nn.Module, config: TrainConfig) -> Adam:
    """Adam with the TransBTS settings (``lr``, ``weight_decay``, ``amsgrad``)."""
    return Adam(network.parameters(), lr=config.lr, weight_decay=config.weight_decay, amsgrad=config.amsgrad)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> PolynomialLR:
    """Poly decay ``lr_e = lr_0 (1 − e/E)^p`` stepped once per epoch (``e`` = epochs done)."""
    return PolynomialLR(optimizer, total_iters=config.epochs, power=config.poly_power)


def prepare_plain_batch(
    batchdata: Mapping[str, Any], device: torch.device | str | None = None, non_blocking: bool = False, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """MONAI's ``default_prepare_batch`` returning plain tensors (no ``MetaTensor`` bookkeeping
    in the training and validation steps)."""
    image, label = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
    plain = [t.as_tensor() if hasattr(t, "as_tensor") else t for t in (image, label)]
    return plain[0], plain[1]


class SourceAwareTrainer(SupervisedTrainer):
    """MONAI ``SupervisedTrainer`` whose loss also receives each sample's label source.

    ``SupervisedTrainer._iteration`` calls ``loss_function(pred, label)``, but
    :class:`~robustlabel.losses.SourceAwareLoss` needs a third argument, the bool tensor
    ``is_pseudo`` ``(N,)``.  Instead of copying MONAI's iteration (forward, autocast,
    ``GradScaler``, events), this subclass overrides it only to put the batch's collated
    ``source`` strings into ``engine.state.is_pseudo`` and then calls MONAI's iteration; the
    ``loss_function`` handed to MONAI is a bound adapter that reads that flag.
    """

    def __init__(self, *, loss_function: SourceAwareLoss, source_key: str = "source", **kwargs: Any) -> None:
        if not isinstance(loss_function, SourceAwareLoss):
            raise ValueError(f"loss_function must be a SourceAwareLoss, got {type(loss_function).__name__}")
        super().__init__(loss_function=self._source_aware_loss, **kwargs)
        self.source_aware_loss = loss_function
        self.source_key = source_key

    def _iteration(self, engine: SupervisedTrainer, batchdata: dict[str, Any]) -> dict:
        if batchdata is None or self.source_key not in batchdata:
            raise ValueError(f"training batch has no {self.source_key!r} entry (label source of each item)")
        engine.state.is_pseudo = pseudo_flags(batchdata[self.source_key], device=engine.state.device)
        return super()._iteration(engine, batchdata)

    def _source_aware_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.source_aware_loss(pred, target, self.state.is_pseudo)


def validation_postprocessing() -> Compose:
    """Per validation case: logits → argmax classes → BraTS values → WT/TC/ET masks, for
    prediction and label alike (MONAI ``ConvertToMultiChannelBasedOnBratsClasses``, reordered)."""
    both = [CommonKeys.PRED, CommonKeys.LABEL]
    return Compose(
        [
            AsDiscreted(keys=CommonKeys.PRED, argmax=True, dtype=torch.int64),
            TrainToBratsLabelsd(keys=both),
            Lambdad(keys=both, func=brats_regions),
        ]
    )


def validation_metrics() -> tuple[dict[str, IgniteMetricHandler], dict[str, IgniteMetricHandler]]:
    """(key metric ``val_mean_dice``, additional per-region metrics ``val_dice_{wt,tc,et}``; MONAI
    rounds the per-region values to 4 decimals).

    Dice per region ``2|P∩G| / (|P| + |G|)`` (MONAI ``DiceMetric``), averaged over the cases;
    with ``ignore_empty=False`` a region absent from both prediction and label scores 1 and a
    region absent only from the label scores 0 (BraTS convention).
    """
    transform = from_engine([CommonKeys.PRED, CommonKeys.LABEL])
    key = IgniteMetricHandler(
        metric_fn=DiceMetric(include_background=True, reduction="mean", ignore_empty=False),
        output_transform=transform,
        save_details=False,
    )
    per_region = IgniteMetricHandler(
        metric_fn=DiceMetric(
            include_background=True, reduction="mean_batch", ignore_empty=False, return_with_label=list(REGION_METRICS)
        ),
        output_transform=transform,
        save_details=False,
    )
    return {KEY_METRIC: key}, {"val_dice": per_region}


# --------------------------------------------------------------------------- resume checks
def _peek_record(path: Path) -> dict[str, Any]:
    """The ``record`` of a checkpoint, read memory-mapped (cheap even for large checkpoints)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return dict(checkpoint["record"])
    except Exception as exc:
        raise ValueError(f"cannot resume from {path}: {type(exc).__name__}: {exc}; pass resume=False to start over") from exc


def _check_resumable(path: Path, config: TrainConfig, world_size: int = 1) -> TrainingRecord:
    """Raise ``ValueError`` when ``path`` was written with an incompatible config; return its record.

    ``batch_size`` (per rank) may differ when the global batch ``batch_size · ranks`` is the same
    (the ranks of the saved run are its last history entry's ``ranks``, 1 when absent)."""
    record = _peek_record(path)
    saved = TrainConfig.from_dict(record["config"]).to_dict()
    wanted = config.to_dict()
    saved_ranks = int(record["history"][-1].get("ranks", 1)) if record.get("history") else 1
    same_global_batch = saved["batch_size"] * saved_ranks == config.batch_size * world_size
    allowed = RESUMABLE_CHANGES | ({"batch_size"} if same_global_batch else set())
    changed = sorted(k for k in wanted if k not in allowed and saved.get(k) != wanted[k])
    if "batch_size" in changed:
        wanted["batch_size"] = f"{config.batch_size} per rank x {world_size} rank(s)"
        saved["batch_size"] = f"{saved['batch_size']} per rank x {saved_ranks} rank(s)"
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted[k]!r}" for k in changed)
        raise ValueError(
            f"{path} was written by a run with a different configuration ({details}); "
            f"use another out_dir or resume=False"
        )
    restored = TrainingRecord()
    restored.load_state_dict(record)
    return restored


def _epochs_done(record: TrainingRecord) -> int:
    return int(record.history[-1]["epoch"]) if record.history else 0


def _result(out: Path, record: TrainingRecord, start_epoch: int) -> TrainResult:
    return TrainResult(
        out_dir=out,
        last_checkpoint=out / LAST_NAME,
        best_checkpoint=out / BEST_NAME,
        history=list(record.history),
        best_metric=record.best_metric if math.isfinite(record.best_metric) else None,
        best_epoch=record.best_epoch,
        start_epoch=start_epoch,
    )


def read_result(out_dir: str | Path) -> TrainResult:
    """The :class:`TrainResult` of the run in ``out_dir``, read back from its ``last.pt`` (e.g.
    after its ranks ran in other processes, :func:`robustlabel.engine.local_ranks.train_on_local_ranks`).

    Raises:
        ValueError: ``out_dir/last.pt`` is missing or unreadable.
    """
    out = Path(out_dir)
    restored = TrainingRecord()
    restored.load_state_dict(_peek_record(out / LAST_NAME))
    return _result(out, restored, 0)


# --------------------------------------------------------------------------- train
def releases_memory(fn: Callable[..., TrainResult]) -> Callable[..., TrainResult]:
    """Free a finished run's network, optimiser state and loaders when ``fn`` returns or raises.

    MONAI's ignite engines and their handlers hold each other in reference cycles, so without
    a collection a finished run stays in (GPU) memory until the cyclic GC happens to run; over
    the many runs of a paper table that piles up (measured: +30 MB per tiny run on CPU).  The
    collection must run after ``fn``'s frame is gone, hence a wrapper.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> TrainResult:
        try:
            return fn(*args, **kwargs)
        finally:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    return wrapper


@releases_memory
def train(
    train_items: Sequence[Mapping[str, Any]],
    val_items: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train ``config.network`` on ``train_items`` and validate on the ``final`` ``val_items``.

    Args:
        train_items: datalist items ``{"image", "label", "source", "case"}``; ``source`` selects
            CE (``final``) or the robust loss (``pseudo``) per item; batches may mix both.
        val_items: validation items; only ``source == "final"`` items (or items without a
            source) are used.  Empty: no validation, ``best.pt`` follows the last epoch.
        out_dir: run folder (created); holds the checkpoints, ``history.jsonl`` and TensorBoard logs.
        config: hyper-parameters (default :class:`TrainConfig`).
        resume: continue from ``out_dir/last.pt`` when it exists (the optimiser, scheduler,
            scaler, epoch counter and best metric are restored); ``False`` starts over.
        progress: show a tqdm bar and log epoch summaries.
        on_epoch: called with each epoch's history entry after its checkpoint is written.
        stop: polled after each epoch's checkpoint; returning ``True`` ends the run there
            (e.g. a MONAI Label "stop training" request); a later call resumes it.

    Raises:
        ValueError: no clinician labels in ``train_items`` (:class:`NoClinicianLabelsError`),
            an unknown loss or loss parameter (``get_loss``' message), a missing or unreadable
            case (:class:`UnreadableCaseError`, naming the file), an incompatible checkpoint.
    """
    config = config or TrainConfig()
    ctx = current()
    loss_function = build_source_aware_loss(config)  # fail fast on a bad loss name
    train_items = check_datalist(train_items, "training")
    require_clinician_labels(train_items)
    checked_val = check_datalist([{"source": FINAL, **dict(v)} for v in val_items], "validation")
    val_items = [item for item in checked_val if item["source"] == FINAL]
    if len(val_items) < len(checked_val):
        logger.info("validation uses clinician labels only: %d pseudo-labelled item(s) left out",
                    len(checked_val) - len(val_items))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / LAST_NAME, out / BEST_NAME
    saved = _check_resumable(last_path, config, ctx.world_size) if resume and last_path.is_file() else None
    start_epoch = _epochs_done(saved) if saved else 0
    if start_epoch > config.epochs:
        raise ValueError(f"{last_path} has {start_epoch} epochs, more than config.epochs={config.epochs}")
    if saved is not None and start_epoch == config.epochs and best_path.is_file():
        return _result(out, saved, start_epoch)  # finished earlier: nothing to do
    device = rank_device(config.device)
    cuda_devices = [device.index] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        result = _run(train_items, val_items, out, config, loss_function, device, start_epoch, progress, on_epoch,
                      stop, ctx)
    barrier()  # rank 0's checkpoints are complete before any rank reads them
    return result


def _run(
    train_items: list[dict[str, Any]],
    val_items: list[dict[str, Any]],
    out: Path,
    config: TrainConfig,
    loss_function: SourceAwareLoss,
    device: torch.device,
    start_epoch: int,
    progress: bool,
    on_epoch: EpochCallback | None,
    stop: Callable[[], bool] | None,
    ctx: DistContext,
) -> TrainResult:
    amp_dtype = resolve_amp_dtype(config, device)
    roi = config.resolved_roi_size
    network = build_network(config.network).to(device)
    if config.init_checkpoint is not None and not start_epoch:
        network.load_state_dict(read_checkpoint(config.init_checkpoint, device)["network"])
    stepped = data_parallel(network, config, device, ctx)
    optimizer = build_optimizer(network, config)
    scheduler = build_scheduler(optimizer, config)
    sampler = training_sampler(train_items, config, ctx)
    train_loader = make_loader(
        train_items, training_transforms(config), batch_size=config.batch_size, shuffle=sampler is None,
        num_workers=config.num_workers, seed=config.seed + ctx.rank, sampler=sampler,
    )
    trainer = SourceAwareTrainer(
        device=device,
        max_epochs=config.epochs,
        train_data_loader=train_loader,
        network=stepped,
        optimizer=optimizer,
        loss_function=loss_function.to(device),
        prepare_batch=prepare_plain_batch,
        amp=amp_dtype is not None,
        amp_kwargs={"dtype": amp_dtype} if amp_dtype is not None else None,
        decollate=False,
        optim_set_to_none=True,
    )
    if trainer.scaler is not None and amp_dtype != torch.float16:
        # bf16 has float32's range: no loss scaling (a disabled scaler passes calls through)
        trainer.scaler = torch.amp.GradScaler("cuda", enabled=False)

    if sampler is not None:  # the epoch's pairs depend on (seed, epoch) only: resumable
        trainer.add_event_handler(Events.EPOCH_STARTED, lambda engine: sampler.set_epoch(engine.state.epoch))

    progress = progress and ctx.is_main
    writer = SummaryWriter(log_dir=str(out / TENSORBOARD_DIR)) if ctx.is_main else None
    record = TrainingRecord(config=config.to_dict())
    # progress: MONAI's stdout logger; otherwise the module logger, which propagates to the caller's handlers
    stats_logger = get_logger(STATS_LOGGER) if progress else logger
    evaluator = _attach_validation(trainer, network, val_items, config, device, amp_dtype, writer, progress, ctx)
    LrScheduleHandler(scheduler, print_lr=False, epoch_level=True).attach(trainer)
    if writer is not None:
        TensorBoardStatsHandler(
            summary_writer=writer, iteration_log=True, epoch_log=False,
            output_transform=lambda out: out[CommonKeys.LOSS], tag_name="train_loss",
        ).attach(trainer)
    if progress:
        ProgressBar(persist=False, desc="train").attach(trainer, output_transform=lambda out: {"loss": out[CommonKeys.LOSS].item()})

    saved_objects: dict[str, Any] = {
        "network": network, "optimizer": optimizer, "lr_scheduler": scheduler, "trainer": trainer, "record": record,
    }
    if trainer.scaler is not None and trainer.scaler.is_enabled():  # fp16 loss scaling state
        saved_objects["scaler"] = trainer.scaler
    last_saver = AtomicCheckpointer(out / LAST_NAME, saved_objects)
    best_saver = AtomicCheckpointer(out / BEST_NAME, {"network": network, "record": record})
    if start_epoch:
        loadable = {**saved_objects, "trainer": EpochCounter(trainer, len(train_loader))}
        CheckpointLoader(str(out / LAST_NAME), _loadable(out / LAST_NAME, loadable), map_location=device).attach(trainer)
        trainer.add_event_handler(Events.STARTED, lambda _: setattr(record, "config", config.to_dict()))
    _attach_epoch_record(trainer, evaluator, record, out, last_saver, best_saver, writer, stats_logger, on_epoch, stop, ctx)

    try:
        trainer.run()
    finally:
        if writer is not None:
            writer.close()
    return _result(out, record, start_epoch)


class EpochCounter:
    """Restores a trainer's epoch counter from a saved ignite state, whatever the saved epoch
    length: a run resumed on another number of ranks has another number of steps per epoch.
    (Checkpoints are written at epoch ends, so ``iteration / epoch_length`` is whole.)"""

    def __init__(self, engine: Engine, epoch_length: int) -> None:
        self.engine, self.epoch_length = engine, int(epoch_length)

    def state_dict(self) -> dict[str, Any]:
        return self.engine.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        epoch = int(state["epoch"]) if "epoch" in state else int(state["iteration"]) // int(state["epoch_length"])
        self.engine.load_state_dict({"epoch": epoch, "max_epochs": state["max_epochs"], "epoch_length": self.epoch_length})


def _loadable(path: Path, objects: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``objects`` stored in ``path`` (a CPU run has no ``scaler`` to restore)."""
    stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True).keys()
    return {k: v for k, v in objects.items() if k in stored}


def _attach_validation(
    trainer: SupervisedTrainer,
    network: torch.nn.Module,
    val_items: list[dict[str, Any]],
    config: TrainConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    writer: SummaryWriter | None,
    progress: bool,
    ctx: DistContext,
) -> SupervisedEvaluator | None:
    """A ``SupervisedEvaluator`` run every ``val_interval`` epochs and after the last one.

    Under a process group each rank validates its ``DistributedSampler(even_divisible=False,
    shuffle=False)`` share of the cases and ``DiceMetric`` gathers every rank's per-case scores;
    with fewer cases than ranks every rank validates all of them (each case then counts ``N``
    times, which leaves the mean unchanged)."""
    if not val_items:
        return None
    key_metric, region_metrics = validation_metrics()
    shards = ctx.distributed and len(val_items) >= ctx.world_size
    sampler = DistributedSampler(val_items, even_divisible=False, num_replicas=ctx.world_size, rank=ctx.rank,
                                 shuffle=False) if shards else None
    evaluator = SupervisedEvaluator(
        device=device,
        val_data_loader=make_loader(
            val_items, val_transforms(), batch_size=1, shuffle=False, num_workers=config.num_workers, seed=config.seed,
            sampler=sampler,
        ),
        network=network,
        inferer=make_inferer(config.resolved_roi_size, config.sw_batch_size, config.sw_overlap),
        prepare_batch=prepare_plain_batch,
        postprocessing=validation_postprocessing(),
        key_val_metric=key_metric,
        additional_metrics=region_metrics,
        amp=amp_dtype is not None,
        amp_kwargs={"dtype": amp_dtype} if amp_dtype is not None else None,
    )
    if writer is not None:
        TensorBoardStatsHandler(
            summary_writer=writer, iteration_log=False, output_transform=lambda x: None,
            global_epoch_transform=lambda _: trainer.state.epoch,
        ).attach(evaluator)
    if progress:
        StatsHandler(name=STATS_LOGGER, iteration_log=False, output_transform=lambda x: None,
                     global_epoch_transform=lambda _: trainer.state.epoch).attach(evaluator)

    def due(engine: Engine, epoch: int) -> bool:
        return epoch % config.val_interval == 0 or epoch == engine.state.max_epochs

    trainer.add_event_handler(Events.EPOCH_COMPLETED(event_filter=due), ValidationHandler(interval=1, validator=evaluator))
    return evaluator


def _attach_epoch_record(
    trainer: SupervisedTrainer,
    evaluator: SupervisedEvaluator | None,
    record: TrainingRecord,
    out: Path,
    last_saver: AtomicCheckpointer,
    best_saver: AtomicCheckpointer,
    writer: SummaryWriter | None,
    stats_logger: logging.Logger,
    on_epoch: EpochCallback | None,
    stop: Callable[[], bool] | None,
    ctx: DistContext,
) -> None:
    """Per epoch: mean loss (averaged over ranks), learning rate, validation scores → history
    (the same on every rank); on rank 0 only: best/last checkpoints, ``history.jsonl``,
    TensorBoard, the log line and ``on_epoch``; ``stop`` is polled on rank 0 and obeyed by
    every rank.  Attached after validation and the LR step."""
    totals: dict[str, Any] = {}

    def epoch_started(engine: Engine) -> None:
        totals.update(loss=0.0, steps=0, lr=float(engine.optimizer.param_groups[0]["lr"]), start=time.perf_counter())

    def iteration_completed(engine: Engine) -> None:
        totals["loss"] = totals["loss"] + engine.state.output[CommonKeys.LOSS].detach()
        totals["steps"] += 1

    def epoch_completed(engine: Engine) -> None:
        epoch = engine.state.epoch
        loss = float(totals["loss"]) / max(totals["steps"], 1)
        if ctx.distributed:
            loss = all_reduce_mean({"loss": loss})["loss"]
        entry: dict[str, Any] = {"epoch": epoch, "loss": loss, "lr": totals["lr"], "iterations": totals["steps"]}
        if ctx.distributed:
            entry["ranks"] = ctx.world_size
        validated = evaluator is not None and evaluator.state.epoch == epoch and KEY_METRIC in evaluator.state.metrics
        if validated:
            entry.update({k: float(evaluator.state.metrics[k]) for k in (KEY_METRIC, *REGION_METRICS)})
        entry["time_s"] = round(time.perf_counter() - totals["start"], 3)
        record.history.append(entry)
        improved = evaluator is None or (validated and entry[KEY_METRIC] > record.best_metric)
        if evaluator is None:
            record.best_epoch = epoch
        elif improved:
            record.best_metric, record.best_epoch = entry[KEY_METRIC], epoch
        if ctx.is_main:
            if improved:
                best_saver()
            last_saver()
            write_bytes_atomic(out / HISTORY_NAME, "".join(json.dumps(h) + "\n" for h in record.history).encode())
            if writer is not None:
                writer.add_scalar("train_loss_epoch", loss, epoch)
                writer.add_scalar("lr", entry["lr"], epoch)
            stats_logger.info("epoch %d/%d: %s", epoch, engine.state.max_epochs, json.dumps(entry))
            if on_epoch is not None:
                on_epoch(dict(entry))
        if stop is not None and any_rank(ctx.is_main and bool(stop())):
            engine.terminate()

    trainer.add_event_handler(Events.EPOCH_STARTED, epoch_started)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, iteration_completed)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, epoch_completed)
