"""Teacher–student training for image classification (Cui et al. Sec. 2.2, CIFAR-10 Table 1).

The recipe, for a training set split into a labelled part ``L`` (true labels ``y``), an
unlabelled part ``U`` and a validation part::

    teacher  f_T = argmin  (1/|L|) Σ_{i∈L} CE(f(x_i), y_i)                         (lower bound)
    pseudo   ŷ_j = argmax_k f_T(x_j)_k ,  j ∈ U
    student  f_S = argmin  (1/|L∪U|) [ Σ_{i∈L} CE(f(x_i), y_i) + Σ_{j∈U} ℓ_robust(f(x_j), ŷ_j) ]
    upper    f_U = argmin  (1/|L∪U|) Σ_{i∈L∪U} CE(f(x_i), y_i)                    (upper bound)

The per-sample choice of loss is :class:`robustlabel.losses.SourceAwareLoss`; every model is
trained by :func:`train_classifier` with the segmentation engine's machinery: the ignite/MONAI
:class:`~robustlabel.engine.trainer.SourceAwareTrainer` (a ``SupervisedTrainer`` that hands
each item's label source to the loss), SGD + step learning rate
(:class:`~monai.handlers.LrScheduleHandler`), ignite's tqdm ``ProgressBar``, an atomic
``last.pt`` written every epoch (:class:`~robustlabel.engine.checkpoint.AtomicCheckpointer`)
and MONAI's ``CheckpointLoader`` to resume an interrupted run.

Augmentation uses ``torchvision.transforms.v2`` rather than MONAI transforms: on 32 x 32
images MONAI's per-sample pipeline costs ~1.3 ms (0.3 ms without meta-data) against ~0.1 ms,
which would make the data loader, not the GPU, the bottleneck of a 150-epoch run.

:func:`fit_full_batch` trains the 2-D toy perceptron of Fig. 2 with a plain loop: one
full-batch Adam step per iteration on a few hundred points, where an engine, a data loader
and checkpoints would add nothing.
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
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2
from tqdm.auto import tqdm

from robustlabel.engine.checkpoint import BEST_NAME, LAST_NAME, AtomicCheckpointer
from robustlabel.engine.config import AMP_DTYPES, PRECISIONS, SELECTIONS
from robustlabel.engine.sampler import SourceBalancedSampler
from robustlabel.machine import resolve_device
from robustlabel.engine.datalist import FINAL, PSEUDO
from robustlabel.losses import PixelwiseLoss, SourceAwareLoss, get_loss

#: per-channel mean and std of the CIFAR-10 training images (in [0, 1])
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
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

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype of training and prediction (``None``: float32)."""
        if self.torch_device.type != "cuda":
            return None
        if self.precision is not None:
            return None if self.precision == "fp32" else AMP_DTYPES[self.precision]
        on = True if self.amp is None else bool(self.amp)
        return torch.float16 if on else None

    @property
    def precision_used(self) -> str:
        """``"fp32"``, ``"bf16"`` or ``"fp16"``: what actually runs on this config's device."""
        dtype = self.autocast_dtype
        return "fp32" if dtype is None else ("bf16" if dtype == torch.bfloat16 else "fp16")


# --------------------------------------------------------------------------- model and data
def cifar_resnet18(num_classes: int = 10, widen_factor: float = 1.0, in_channels: int = 3) -> nn.Module:
    """ResNet-18, CIFAR variant: 3 x 3 stride-1 stem, no max-pool, basic blocks [2, 2, 2, 2].

    MONAI's :class:`~monai.networks.nets.ResNet` with ``spatial_dims=2``; widths
    ``64·w, 128·w, 256·w, 512·w`` (``w = widen_factor``; 1.0 gives the 11.2 M-parameter model).
    """
    from monai.networks.nets import ResNet

    if not widen_factor > 0 or int(64 * widen_factor) < 1:
        raise ValueError(f"widen_factor must give at least one channel (64·w >= 1), got {widen_factor}")
    return ResNet(
        block="basic",
        layers=[2, 2, 2, 2],
        block_inplanes=[64, 128, 256, 512],
        spatial_dims=2,
        n_input_channels=in_channels,
        conv1_t_size=3,
        conv1_t_stride=1,
        no_max_pool=True,
        shortcut_type="B",
        widen_factor=widen_factor,
        num_classes=num_classes,
    )


def image_transform(train: bool) -> v2.Compose:
    """uint8 ``(…, 3, H, W)`` → normalised float32; training adds the standard CIFAR augmentation.

    Training: random 32 x 32 crop of the image zero-padded by 4 px, then a horizontal flip with
    probability 0.5.  Both: ``x ↦ (x/255 − μ_c)/σ_c`` with :data:`CIFAR_MEAN` / :data:`CIFAR_STD`.
    The evaluation transform also works on whole batches ``(B, 3, H, W)``.
    """
    steps: list[Any] = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()] if train else []
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(CIFAR_MEAN, CIFAR_STD)]
    return v2.Compose(steps)


@dataclass(frozen=True)
class TrainingSet:
    """Images ``(N, 3, H, W)`` uint8, labels ``(N,)`` int64 and the per-sample ``is_pseudo`` flag."""

    images: torch.Tensor
    labels: torch.Tensor
    is_pseudo: torch.Tensor

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be a uint8 tensor (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if tuple(self.labels.shape) != (n,) or tuple(self.is_pseudo.shape) != (n,):
            raise ValueError(
                f"{n} images need labels and is_pseudo of shape ({n},), got {tuple(self.labels.shape)} "
                f"and {tuple(self.is_pseudo.shape)}"
            )
        if self.is_pseudo.dtype != torch.bool:
            raise ValueError(f"is_pseudo must be a bool tensor, got {self.is_pseudo.dtype}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def make_training_set(
    images: np.ndarray | torch.Tensor,
    true_labels: np.ndarray | torch.Tensor,
    labelled: np.ndarray,
    unlabelled: np.ndarray | None = None,
    pseudo_labels: np.ndarray | torch.Tensor | None = None,
) -> TrainingSet:
    """The training set of one row of the teacher–student table.

    * teacher / lower bound: ``labelled`` only, true labels;
    * student: ``labelled`` with true labels + ``unlabelled`` with ``pseudo_labels`` (``is_pseudo``);
    * upper bound: ``labelled`` + ``unlabelled``, all with true labels (``pseudo_labels=None``).

    ``pseudo_labels[j]`` belongs to ``unlabelled[j]``.
    """
    images = torch.as_tensor(images)
    true_labels = torch.as_tensor(true_labels, dtype=torch.int64)
    labelled = torch.as_tensor(labelled, dtype=torch.int64)
    unlabelled = torch.as_tensor(np.asarray([] if unlabelled is None else unlabelled), dtype=torch.int64)
    if pseudo_labels is not None:
        pseudo_labels = torch.as_tensor(pseudo_labels, dtype=torch.int64)
        if pseudo_labels.shape != unlabelled.shape:
            raise ValueError(f"{unlabelled.numel()} unlabelled samples but {pseudo_labels.numel()} pseudo-labels")
        extra_labels, extra_flag = pseudo_labels, torch.ones_like(unlabelled, dtype=torch.bool)
    else:
        extra_labels, extra_flag = true_labels[unlabelled], torch.zeros_like(unlabelled, dtype=torch.bool)
    index = torch.cat([labelled, unlabelled])
    return TrainingSet(
        images=images[index],
        labels=torch.cat([true_labels[labelled], extra_labels]),
        is_pseudo=torch.cat([torch.zeros_like(labelled, dtype=torch.bool), extra_flag]),
    )


class AugmentedImageDataset(Dataset):
    """Items ``{"image": float (3, H, W), "label": int64, "source": "final" | "pseudo"}`` of a :class:`TrainingSet`."""

    def __init__(self, data: TrainingSet, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.data = data
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.transform(self.data.images[i]), "label": self.data.labels[i],
                "source": PSEUDO if self.data.is_pseudo[i] else FINAL}


@dataclass(frozen=True)
class DataSplit:
    """Disjoint index sets of a training set: labelled, unlabelled (for pseudo-labels), validation."""

    labelled: np.ndarray
    unlabelled: np.ndarray
    val: np.ndarray


def split_indices(n: int, labelled_fraction: float, val_fraction: float, seed: int) -> DataSplit:
    """Random split of ``range(n)``: ``round(val_fraction·n)`` validation samples, then
    ``round(labelled_fraction·(n − n_val))`` of the rest labelled, the others unlabelled.

    Deterministic in ``seed``; every part is sorted.
    """
    if not 0 < labelled_fraction <= 1 or not 0 <= val_fraction < 1:
        raise ValueError(
            f"need 0 < labelled_fraction <= 1 and 0 <= val_fraction < 1, got {labelled_fraction}, {val_fraction}"
        )
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(val_fraction * n))
    n_lab = int(round(labelled_fraction * (n - n_val)))
    if n_lab < 1:
        raise ValueError(f"labelled_fraction={labelled_fraction} of {n - n_val} training samples leaves none labelled")
    return DataSplit(
        labelled=np.sort(order[n_val : n_val + n_lab]), unlabelled=np.sort(order[n_val + n_lab :]), val=np.sort(order[:n_val])
    )


def source_aware_loss(pseudo_loss: str, mode: str = "union", **params: float) -> SourceAwareLoss:
    """CE on true labels, ``get_loss(pseudo_loss, **params)`` on pseudo-labels (Cui et al. Sec. 2.2),
    the two sources weighted by ``mode`` (see :class:`~robustlabel.losses.SourceAwareLoss`)."""
    return SourceAwareLoss(clinician=get_loss("ce"), pseudo=get_loss(pseudo_loss, **params), mode=mode)


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


def accuracy(logits: torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Top-1 accuracy in percent: ``100 · mean(argmax_k z_k == y)``."""
    labels = torch.as_tensor(labels)
    if logits.shape[0] != labels.shape[0] or labels.numel() == 0:
        raise ValueError(f"need as many (>0) logits as labels, got {logits.shape[0]} and {labels.shape[0]}")
    return 100.0 * float((logits.argmax(1) == labels).float().mean())


def pseudo_label(
    network: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 512, device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None | str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Hard pseudo-labels ``ŷ = argmax_k p_k`` and their confidence ``max_k p_k`` (teacher step)."""
    probs = predict_logits(network, images, batch_size, device, amp_dtype).softmax(1)
    confidence, labels = probs.max(1)
    return labels.numpy().astype(np.int64), confidence.numpy()


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
    """Seed, build, :func:`train_classifier` and measure top-1 accuracy (%) on each eval set.

    ``torch.manual_seed(seed)`` precedes ``build_network()``, so every model of one seed
    starts from the same weights and sees the same shuffling: rows of a table differ only in
    their training labels and loss.  ``select="last"`` (default, the paper) scores the last
    epoch; ``"best"`` scores the epoch of best accuracy on ``eval_sets["val"]`` (validated
    after every epoch; needs ``checkpoint_dir``).  Returns the network that was scored and a
    JSON-ready record ``{"<name>_acc": ..., "train_size", "n_pseudo", "epochs", "seconds",
    "resumed_from_epoch", "device", "select", "scored_epoch"}``.

    Raises:
        ValueError: unknown ``select``, or ``"best"`` without a ``"val"`` set or ``checkpoint_dir``.
    """
    if select not in SELECTIONS:
        raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
    if select == "best" and "val" not in eval_sets:
        raise ValueError("select='best' needs a 'val' evaluation set")
    torch.manual_seed(seed)
    network = build_network()
    summary = train_classifier(network, data, loss, config, checkpoint_dir=checkpoint_dir, seed=seed,
                               description=description, progress=progress,
                               val=eval_sets["val"] if select == "best" else None)
    scored_epoch = config.epochs
    if select == "best":
        best = torch.load(Path(checkpoint_dir) / BEST_NAME, map_location=config.torch_device, weights_only=True)
        network.load_state_dict(best["network"])
        network.eval()
        scored_epoch = int(best["best"]["epoch"])
    record: dict[str, Any] = {
        f"{name}_acc": accuracy(predict_logits(network, images, config.eval_batch_size, config.torch_device,
                                               config.autocast_dtype), labels)
        for name, (images, labels) in eval_sets.items()
    }
    record.update(
        train_size=len(data),
        n_pseudo=int(data.is_pseudo.sum()),
        epochs=config.epochs,
        seconds=round(summary.seconds, 1),
        resumed_from_epoch=summary.resumed_from_epoch,
        device=str(config.torch_device),
        select=select,
        scored_epoch=scored_epoch,
    )
    return network, record


# --------------------------------------------------------------------------- toy perceptron
def fit_full_batch(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss: PixelwiseLoss | nn.Module,
    *,
    steps: int = 2000,
    lr: float = 0.05,
    description: str = "fit",
) -> list[float]:
    """Full-batch Adam on ``loss(model(inputs), targets)`` for ``steps`` iterations; returns the loss curve."""
    if steps < 1 or not lr > 0:
        raise ValueError(f"need steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    curve = []
    for _ in tqdm(range(steps), desc=description, leave=False, mininterval=0.5):
        optimizer.zero_grad(set_to_none=True)
        value = loss(model(inputs), targets)
        value.backward()
        optimizer.step()
        curve.append(float(value.detach()))
    model.eval()
    return curve
