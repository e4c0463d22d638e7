"""Teacher–student training and prediction for image classification (Cui et al. Sec. 2.2, CIFAR-10 Table 1).

The recipe, for a training set split into a labelled part ``L`` (true labels ``y``), an
unlabelled part ``U`` and a validation part (:func:`robustlabel.data.splits.split_indices`)::

    teacher  f_T = argmin  (1/|L|) Σ_{i∈L} CE(f(x_i), y_i)                         (lower bound)
    pseudo   ŷ_j = argmax_k f_T(x_j)_k ,  j ∈ U
    student  f_S = argmin  (1/|L∪U|) [ Σ_{i∈L} CE(f(x_i), y_i) + Σ_{j∈U} ℓ_robust(f(x_j), ŷ_j) ]
    upper    f_U = argmin  (1/|L∪U|) Σ_{i∈L∪U} CE(f(x_i), y_i)                    (upper bound)

The per-sample choice of loss is :class:`robustlabel.losses.SourceAwareLoss` (built by
:func:`robustlabel.losses.source_aware.source_aware_loss`); every model is trained by
:func:`train_classifier` with the segmentation engine's machinery: the ignite/MONAI
:class:`~robustlabel.engine.trainer.SourceAwareTrainer` (a ``SupervisedTrainer`` that hands
each item's label source to the loss), SGD + step learning rate
(:class:`~monai.handlers.LrScheduleHandler`), ignite's tqdm ``ProgressBar``, an atomic
``last.pt`` written every epoch (:class:`~robustlabel.engine.checkpoint.AtomicCheckpointer`)
and MONAI's ``CheckpointLoader`` to resume an interrupted run.

The pieces it stands on live by job: the network in :mod:`robustlabel.networks.resnet`, the
transforms in :mod:`robustlabel.data.cifar_transforms`, the splits and training sets in
:mod:`robustlabel.data.splits`, top-1 accuracy in :mod:`robustlabel.metrics.classification`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from robustlabel.data.cifar_transforms import image_transform
from robustlabel.data.splits import AugmentedImageDataset, TrainingSet
from robustlabel.engine.checkpoint import BEST_NAME, LAST_NAME, AtomicCheckpointer
from robustlabel.engine.config import PRECISIONS, SELECTIONS, amp_dtype_for, precision_used
from robustlabel.engine.sampler import SourceBalancedSampler
from robustlabel.losses import SourceAwareLoss
from robustlabel.machine import resolve_device
from robustlabel.metrics.classification import accuracy

#: optimisers :class:`ClassifierConfig` can ask for
OPTIMIZERS = ("sgd", "adam")


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class ClassifierConfig:
    """SGD (or Adam, ``optimizer="adam"``) with a step schedule: ``lr`` is multiplied by ``lr_gamma``
    at each epoch in ``lr_milestones`` (none: a constant ``lr``).

    Defaults are Cui et al.'s CIFAR-10 settings: 150 epochs, lr 0.1 → 0.01 after epoch 100,
    momentum 0.9, weight decay 1e-4.  ``device="auto"`` picks CUDA when available; ``amp=None``
    enables float16 mixed precision (with loss scaling) exactly when the device is CUDA.
    ``precision`` (``"fp32"`` | ``"bf16"`` | ``"fp16"``, :data:`~robustlabel.engine.config.PRECISIONS`)
    overrides ``amp``: fp32 everywhere, or autocast to that dtype on CUDA (CPU: always fp32).
    """

    epochs: int = 150
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_milestones: tuple[int, ...] = (100,)
    lr_gamma: float = 0.1
    num_workers: int = 0
    device: str = "auto"
    amp: bool | None = None
    eval_batch_size: int = 512
    #: ``"sgd"`` (momentum, weight decay) or ``"adam"`` (weight decay; ``momentum`` unused)
    optimizer: str = "sgd"
    #: random crop + flip on the training images (``False``: normalisation only)
    augment: bool = True
    #: ``"fp32"`` | ``"bf16"`` | ``"fp16"`` (``None``: ``amp`` decides)
    precision: str | None = None

    def __post_init__(self) -> None:
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or not 0 < self.lr_gamma <= 1:
            raise ValueError(f"need lr > 0 and 0 < lr_gamma <= 1, got lr={self.lr}, lr_gamma={self.lr_gamma}")
        if self.num_workers < 0 or self.momentum < 0 or self.weight_decay < 0:
            raise ValueError("num_workers, momentum and weight_decay must be >= 0")
        if any(int(m) < 1 for m in self.lr_milestones):
            raise ValueError(f"lr_milestones must be epochs >= 1, got {self.lr_milestones}")

    @property
    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    @property
    def use_amp(self) -> bool:
        return self.autocast_dtype is not None

    def _autocast_request(self) -> tuple[bool, str]:
        """``(amp, amp_dtype)`` for :func:`~robustlabel.engine.config.amp_dtype_for`: ``precision``
        when given, else ``amp`` (``None``: on) with float16."""
        if self.precision is not None:
            return self.precision != "fp32", self.precision if self.precision != "fp32" else "auto"
        return (True if self.amp is None else bool(self.amp)), "fp16"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype of training and prediction (``None``: float32; always on CPU)."""
        return amp_dtype_for(self.torch_device, *self._autocast_request())

    @property
    def precision_used(self) -> str:
        """``"fp32"``, ``"bf16"`` or ``"fp16"``: what actually runs on this config's device."""
        return precision_used(*self._autocast_request(), self.torch_device)



# --------------------------------------------------------------------------- training
def finished_epochs(checkpoint_dir: str | Path) -> int:
    """Epochs completed in ``checkpoint_dir/last.pt`` (0 when there is none)."""
    path = Path(checkpoint_dir) / LAST_NAME
    if not path.is_file():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["trainer"]
    return int(state["iteration"]) // int(state["epoch_length"])


@dataclass(frozen=True)
class TrainSummary:
    """What :func:`train_classifier` did: epochs trained now, the epoch it resumed from, time."""

    epochs_trained: int
    resumed_from_epoch: int
    seconds: float
    last_loss: float | None
    best_epoch: int | None = None
    best_accuracy: float | None = None


def train_classifier(
    network: nn.Module,
    data: TrainingSet,
    loss: SourceAwareLoss,
    config: ClassifierConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    seed: int = 0,
    description: str = "train",
    progress: bool | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> TrainSummary:
    """Train ``network`` in place on ``data`` with ``loss(logits, label, is_pseudo)``.

    With ``val`` (images, labels) the validation accuracy is measured after every epoch and the
    weights of the best epoch so far are written to ``checkpoint_dir/best.pt`` (needs
    ``checkpoint_dir``; the best score is part of ``last.pt``, so a resumed run continues it).
    With ``loss.mode == "per_source"`` the batches are 1:1 true/pseudo
    (:class:`~robustlabel.engine.sampler.SourceBalancedSampler`).

    SGD (``config.lr``, momentum, weight decay) with :class:`torch.optim.lr_scheduler.MultiStepLR`
    stepped after every epoch.  With ``checkpoint_dir`` the network, optimiser, scheduler, AMP
    scaler and engine state go to ``checkpoint_dir/last.pt`` atomically after every epoch; a
    later call with the same directory resumes after the last finished epoch (``config.epochs``
    may have grown), and returns at once, with the trained weights loaded, when all epochs are
    done.  ``seed`` fixes the shuffling order (the initial weights are the caller's).
    ``progress``: show a tqdm bar (``None``: only when stderr is a terminal).

    Under ``torch.distributed`` (``torchrun … scripts/cifar10_robust_ssl.py``) every rank calls
    it with the same network and data: the network trains as ``DistributedDataParallel``
    (``SyncBatchNorm`` on CUDA), each rank draws its part of the epoch (MONAI
    ``DistributedSampler``, or whole 1:1 pairs of
    :class:`~robustlabel.engine.sampler.DistributedSourceBalancedSampler`), ``batch_size`` is
    per rank, every rank validates (same weights, same scores) and only rank 0 writes
    ``last.pt`` / ``best.pt`` and shows progress; a run resumes on any number of ranks.
    """
    from ignite.contrib.handlers import ProgressBar
    from ignite.engine import Events
    from monai.handlers import CheckpointLoader, LrScheduleHandler
    from monai.utils import CommonKeys

    from monai.data import DistributedSampler
    from torch.nn.parallel import DistributedDataParallel

    from robustlabel.engine.distributed import barrier, current, rank_device
    from robustlabel.engine.sampler import DistributedSourceBalancedSampler
    from robustlabel.engine.trainer import EpochCounter, SourceAwareTrainer

    ctx = current()
    device = rank_device(config.torch_device)
    network.to(device)
    sampler = SourceBalancedSampler(data.is_pseudo.tolist(), seed=seed) if loss.mode == "per_source" else None
    if sampler is not None and not sampler.balanced:
        sampler = None
    if ctx.distributed:
        sampler = (DistributedSourceBalancedSampler(sampler, ctx.world_size, ctx.rank) if sampler is not None else
                   DistributedSampler(range(len(data)), even_divisible=True, num_replicas=ctx.world_size, rank=ctx.rank,
                                      shuffle=True, seed=seed))
        if device.type == "cuda":
            network = nn.SyncBatchNorm.convert_sync_batchnorm(network)  # the root module itself is kept
    stepped = (DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
               if ctx.distributed else network)
    progress = progress if ctx.is_main else False
    loader = DataLoader(
        AugmentedImageDataset(data, image_transform(train=config.augment)),
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=config.num_workers > 0,
        generator=torch.Generator().manual_seed(seed + ctx.rank),
    )
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.SGD(network.parameters(), lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.lr_milestones),
                                                     gamma=config.lr_gamma)
    trainer = SourceAwareTrainer(
        device=device,
        max_epochs=config.epochs,
        train_data_loader=loader,
        network=stepped,
        optimizer=optimizer,
        loss_function=loss.to(device),
        non_blocking=True,
        amp=config.use_amp,
        amp_kwargs={"dtype": config.autocast_dtype} if config.use_amp else None,
        decollate=False,
        optim_set_to_none=True,
    )
    if trainer.scaler is not None and config.autocast_dtype != torch.float16:
        trainer.scaler = torch.amp.GradScaler("cuda", enabled=False)  # bf16 needs no loss scaling
    if sampler is not None:  # 1:1 batches of mode per_source; pairs depend on (seed, epoch) only
        trainer.add_event_handler(Events.EPOCH_STARTED, lambda engine: sampler.set_epoch(engine.state.epoch))
    LrScheduleHandler(scheduler, print_lr=False, epoch_level=True).attach(trainer)
    ProgressBar(persist=False, desc=description, disable=None if progress is None else not progress).attach(
        trainer, output_transform=lambda out: {"loss": out[CommonKeys.LOSS].detach().item()}
    )

    best = BestEpoch()
    if val is not None:
        if checkpoint_dir is None:
            raise ValueError("validating every epoch (val=...) needs a checkpoint_dir for best.pt")
        best_saver = AtomicCheckpointer(Path(checkpoint_dir) / BEST_NAME, {"network": network, "best": best})

        def validate(engine: Any) -> None:
            score = accuracy(predict_logits(network, val[0], config.eval_batch_size, device, config.autocast_dtype), val[1])
            if score > best.accuracy:
                best.accuracy, best.epoch = score, int(engine.state.epoch)
                if ctx.is_main:
                    best_saver()

        trainer.add_event_handler(Events.EPOCH_COMPLETED, validate)

    resumed_from = 0
    if checkpoint_dir is not None:
        saved: dict[str, Any] = {"network": network, "optimizer": optimizer, "lr_scheduler": scheduler, "trainer": trainer}
        if val is not None:
            saved["best"] = best
        if trainer.scaler is not None and trainer.scaler.is_enabled():
            saved["scaler"] = trainer.scaler
        last = Path(checkpoint_dir) / LAST_NAME
        resumed_from = finished_epochs(checkpoint_dir)
        if resumed_from > config.epochs:
            raise ValueError(f"{last} has {resumed_from} epochs, more than the {config.epochs} asked for")
        if resumed_from == config.epochs:
            network.load_state_dict(torch.load(last, map_location=device, weights_only=True)["network"])
            network.eval()
            return TrainSummary(0, resumed_from, 0.0, None, *_stored_best(last, val is not None))
        if resumed_from:
            stored = torch.load(last, map_location="cpu", weights_only=True, mmap=True).keys()
            loadable = {**saved, "trainer": EpochCounter(trainer, len(loader))}  # any number of ranks
            CheckpointLoader(str(last), {k: v for k, v in loadable.items() if k in stored}, map_location=device).attach(trainer)
        if ctx.is_main:
            trainer.add_event_handler(Events.EPOCH_COMPLETED, AtomicCheckpointer(last, saved))

    start = time.perf_counter()
    trainer.run()
    barrier()  # rank 0's checkpoints are complete before any rank reads them
    network.eval()
    last_loss = trainer.state.output[CommonKeys.LOSS] if trainer.state.output else None
    return TrainSummary(
        epochs_trained=config.epochs - resumed_from,
        resumed_from_epoch=resumed_from,
        seconds=time.perf_counter() - start,
        last_loss=None if last_loss is None else float(last_loss.detach()),
        best_epoch=best.epoch if val is not None else None,
        best_accuracy=best.accuracy if val is not None else None,
    )


class BestEpoch:
    """The best validation accuracy so far and its epoch (``state_dict``-able, stored in the checkpoints)."""

    def __init__(self) -> None:
        self.accuracy, self.epoch = float("-inf"), 0

    def state_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "epoch": self.epoch}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.accuracy, self.epoch = float(state["accuracy"]), int(state["epoch"])


def _stored_best(last: Path, wanted: bool) -> tuple[int | None, float | None]:
    """``(best_epoch, best_accuracy)`` stored in a finished run's ``last.pt`` (``None`` when not validated)."""
    if not wanted:
        return None, None
    state = torch.load(last, map_location="cpu", weights_only=True, mmap=True).get("best")
    return (None, None) if state is None else (int(state["epoch"]), float(state["accuracy"]))


@torch.inference_mode()
def predict_logits(
    network: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 512, device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None | str = "auto",
) -> torch.Tensor:
    """Logits ``(N, C)`` (float32, on CPU) of uint8 images ``(N, 3, H, W)``, in eval mode.

    ``amp_dtype``: autocast dtype on CUDA (``None``: float32; ``"auto"``: torch's CUDA default, fp16).

    A forward pass over an in-memory tensor: the evaluation transform is applied to whole
    batches on ``device``, so no data loader or evaluator engine is needed.
    """
    device = resolve_device("auto" if device is None else device)
    images = torch.as_tensor(images)
    transform = image_transform(train=False)
    network.to(device).eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        batch = transform(images[start : start + batch_size].to(device, non_blocking=True))
        dtype = None if amp_dtype == "auto" else amp_dtype
        enabled = device.type == "cuda" and amp_dtype is not None
        with torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled):
            out.append(network(batch).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


def pseudo_label(
    network: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 512, device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None | str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Hard pseudo-labels ``ŷ = argmax_k p_k`` and their confidence ``max_k p_k`` (teacher step)."""
    probs = predict_logits(network, images, batch_size, device, amp_dtype).softmax(1)
    confidence, labels = probs.max(1)
    return labels.numpy().astype(np.int64), confidence.numpy()


def fit_classifier(
    build_network: Callable[[], nn.Module],
    data: TrainingSet,
    loss: SourceAwareLoss,
    config: ClassifierConfig,
    *,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    description: str = "train",
    progress: bool | None = None,
    select: str = "last",
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Seed, build and :func:`train_classifier` one model; load the epoch to be scored.

    ``torch.manual_seed(seed)`` precedes ``build_network()``, so every model of one seed
    starts from the same weights and sees the same shuffling: rows of a table differ only in
    their training labels and loss.  ``select="last"`` (default, the paper) keeps the last
    epoch; ``"best"`` loads the epoch of best accuracy on ``val`` (validated after every epoch;
    needs ``checkpoint_dir``).

    Returns:
        The network in eval mode and the JSON-ready training part of a run record,
        ``{"train_size", "n_pseudo", "epochs", "seconds", "resumed_from_epoch", "device", "select",
        "scored_epoch"}``.

    Raises:
        ValueError: unknown ``select``, or ``"best"`` without ``val`` or ``checkpoint_dir``.
    """
    if select not in SELECTIONS:
        raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
    if select == "best" and val is None:
        raise ValueError("select='best' needs a 'val' evaluation set")
    torch.manual_seed(seed)
    network = build_network()
    summary = train_classifier(network, data, loss, config, checkpoint_dir=checkpoint_dir, seed=seed,
                               description=description, progress=progress, val=val if select == "best" else None)
    scored_epoch = config.epochs
    if select == "best":
        best = torch.load(Path(checkpoint_dir) / BEST_NAME, map_location=config.torch_device, weights_only=True)
        network.load_state_dict(best["network"])
        network.eval()
        scored_epoch = int(best["best"]["epoch"])
    return network, {
        "train_size": len(data),
        "n_pseudo": int(data.is_pseudo.sum()),
        "epochs": config.epochs,
        "seconds": round(summary.seconds, 1),
        "resumed_from_epoch": summary.resumed_from_epoch,
        "device": str(config.torch_device),
        "select": select,
        "scored_epoch": scored_epoch,
    }


def score_classifier(
    network: nn.Module, eval_sets: Mapping[str, tuple[np.ndarray, np.ndarray]], config: ClassifierConfig
) -> dict[str, float]:
    """Top-1 accuracy (%) of ``network`` on each ``(images, labels)`` set: ``{"<name>_acc": ...}``
    (prediction on ``config``'s device and autocast dtype)."""
    return {
        f"{name}_acc": accuracy(predict_logits(network, images, config.eval_batch_size, config.torch_device,
                                               config.autocast_dtype), labels)
        for name, (images, labels) in eval_sets.items()
    }


def fit_and_evaluate(
    build_network: Callable[[], nn.Module],
    data: TrainingSet,
    loss: SourceAwareLoss,
    config: ClassifierConfig,
    eval_sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    description: str = "train",
    progress: bool | None = None,
    select: str = "last",
) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`fit_classifier`, then :func:`score_classifier` on each eval set.

    ``select="best"`` scores the epoch of best accuracy on ``eval_sets["val"]``.  Returns the
    network that was scored and the record ``{"<name>_acc": ..., "train_size", "n_pseudo",
    "epochs", "seconds", "resumed_from_epoch", "device", "select", "scored_epoch"}``.

    Raises:
        ValueError: unknown ``select``, or ``"best"`` without a ``"val"`` set or ``checkpoint_dir``.
    """
    network, training = fit_classifier(build_network, data, loss, config, seed=seed, checkpoint_dir=checkpoint_dir,
                                       description=description, progress=progress, select=select,
                                       val=eval_sets.get("val"))
    return network, {**score_classifier(network, eval_sets, config), **training}
