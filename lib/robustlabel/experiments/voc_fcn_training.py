"""Training and snapshot evaluation of FCN-AlexNet on VOC label maps, shared by the thesis'
PASCAL experiments (:mod:`.ju_voc_segmentation`, :mod:`.ju_voc_transfer`).

**Solver.** The FCN reference's solver for FCN-AlexNet (shelhamer/fcn.berkeleyvision.org,
``voc-fcn-alexnet/solver.prototxt``), which the thesis kept unchanged: SGD, ``lr_policy
"fixed"``, ``base_lr 1e-4`` ("lr for normalized softmax"), ``momentum 0.9``, ``weight_decay
5e-4``, ``iter_size 20`` (gradient accumulation over 20 single-image batches),
``snapshot 4000``; the loss layer (``net.py``) is ``SoftmaxWithLoss`` with ``normalize: false``
and ``ignore_label: 255``.  So one *iteration* is one SGD step on the mean over ``iter_size``
images of each image's **sum** of per-pixel losses (void pixels excluded):

.. math:: θ ← θ - \\text{lr}·v,\\quad v ← 0.9\\,v + ∇\\Big[\\frac{1}{B}\\sum_{b=1}^{B} \\sum_{i ∉ \\text{void}} ℓ(z_{b,i}, y_{b,i})\\Big] + 5·10^{-4}\\,θ,\\quad B = 20.

(Caffe divides accumulated gradients by ``iter_size``; its momentum form ``v ← μv + lr·g``
equals PyTorch's ``v ← μv + g`` under a fixed learning rate.)

**Images** are fed one at a time at their own size (as the reference does), normalised with
torchvision's ImageNet mean/std because the ImageNet weights are torchvision's; the order is
a seeded shuffle per pass over the data.

The loop is plain PyTorch rather than MONAI/ignite's ``SupervisedTrainer``: single variable-size
images with Caffe-style accumulation, a snapshot evaluation every ``snapshot_every`` steps and
a resumable state file are not what those engines provide.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustlabel.data.voc import VOID
from robustlabel.engine.checkpoint import atomic_torch_save
from robustlabel.losses import get_loss
from robustlabel.machine import resolve_device
from robustlabel.metrics.segmentation import confusion_matrix, segmentation_scores
from robustlabel.networks.fcn import HEAD_INITS, FCNAlexNet, load_alexnet_weights

#: torchvision's ImageNet normalisation (its AlexNet weights were trained with it)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: where the solver settings come from, for the table notes
SOLVER_SOURCE = ("FCN reference solver for FCN-AlexNet (shelhamer/fcn.berkeleyvision.org, voc-fcn-alexnet/"
                 "solver.prototxt): SGD, fixed lr 1e-4, momentum 0.9, weight decay 5e-4, iter_size 20, snapshot 4000; "
                 "loss summed over non-void pixels (SoftmaxWithLoss normalize: false, ignore_label 255)")
#: loss names of the experiments -> how they are built (see :func:`build_loss`)
LOSS_NAMES = ("logistic", "class_weighted", "sigmoid")
ALEXNET_NOTE = ("**Network:** FCN-AlexNet (FCN-32s: conv1 padding 100, fc6/fc7 as convolutions, 1x1 score, learned "
                "63x63/32 transposed convolution, crop offset 18) built on torchvision's AlexNet, which differs from the "
                "Caffe AlexNet of FCN: 64/192/384/256/256 convolution channels instead of 96/256/384/384/256, no "
                "grouped convolutions, no LRN; pooling in Caffe's ceil mode")


@dataclass(frozen=True)
class SolverConfig:
    """Iterations, snapshots and the SGD settings (defaults: the FCN-AlexNet reference solver)."""

    iterations: int
    snapshot_every: int
    iter_size: int = 20
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.snapshot_every < 1 or self.iter_size < 1:
            raise ValueError(f"iterations, snapshot_every and iter_size must be >= 1, got {self}")

    @property
    def snapshots(self) -> list[int]:
        """Iterations at which a snapshot is evaluated (every ``snapshot_every``, and the last one)."""
        points = list(range(self.snapshot_every, self.iterations + 1, self.snapshot_every))
        return points if points and points[-1] == self.iterations else points + [self.iterations]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FcnConfig:
    """The settings both VOC experiments share: repeats, network and solver (defaults: the
    thesis' 3 repeats, FCN-AlexNet at full width, the FCN-AlexNet reference solver).

    Attributes:
        repeats: repeats, seeds ``0 .. repeats - 1``.
        width: channel multiplier (1 = AlexNet; < 1 only for smoke runs).
        head_init: initialisation of the upsampling layer (:data:`~robustlabel.networks.fcn.HEAD_INITS`;
            thesis: ``"xavier"``, FCN reference: ``"bilinear"``).
        alexnet_weights: a local torchvision ImageNet AlexNet state dict (nothing is downloaded).
        iter_size, lr, momentum, weight_decay: the solver (:class:`SolverConfig`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises:
        ValueError: a setting out of range, or ImageNet weights with ``width != 1``.
    """

    repeats: int = 3
    width: float = 1.0
    head_init: str = "xavier"
    alexnet_weights: Path | None = None
    iter_size: int = 20
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.alexnet_weights is not None and not isinstance(self.alexnet_weights, Path):
            object.__setattr__(self, "alexnet_weights", Path(self.alexnet_weights))
        if int(self.repeats) < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if not float(self.width) > 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {HEAD_INITS}, got {self.head_init!r}")
        if not float(self.lr) > 0 or not float(self.momentum) >= 0 or not float(self.weight_decay) >= 0:
            raise ValueError(f"need lr > 0, momentum >= 0 and weight_decay >= 0, got {self.lr}, {self.momentum}, "
                             f"{self.weight_decay}")
        if self.alexnet_weights is not None and self.width != 1.0:
            raise ValueError("--alexnet-weights needs --width 1 (ImageNet AlexNet channels)")

    def solver_config(self, iterations: int, snapshot_every: int) -> SolverConfig:
        """The SGD settings of a training phase of ``iterations`` steps."""
        return SolverConfig(iterations, snapshot_every, self.iter_size, self.lr, self.momentum, self.weight_decay)

    def network_fingerprint(self) -> dict[str, Any]:
        """The network part of a results folder's fingerprint."""
        return {"width": self.width, "head_init": self.head_init, "weights": str(self.alexnet_weights)}

    def weights_note(self, pretraining: bool) -> str:
        """Table note: which initialisation the runs used (``pretraining``: the §5.3 experiment)."""
        what = "pre-training" if pretraining else "training"
        baseline = "; the RandomWeights baseline always starts from random weights" if pretraining else ""
        if self.alexnet_weights is not None:
            return (f"**Initialisation:** the {what} starts from the ImageNet AlexNet weights in {self.alexnet_weights} "
                    f"(features, fc6, fc7), Xavier for the rest{baseline}")
        thesis = "" if pretraining else "; the thesis started from ImageNet AlexNet"
        return (f"**Initialisation:** random (Xavier) for every layer of the {what}, no ImageNet weights given "
                f"(--alexnet-weights){thesis}{baseline}")


# --------------------------------------------------------------------------- losses
class BackgroundSigmoidLoss(nn.Module):
    """The class-dependent sigmoid loss (thesis Eq. 8) for a two-class FCN.

    With logits ``(z_0, z_1)`` the foreground score is ``f = z_1 − z_0``; then ``−log σ(f)`` for
    foreground pixels and ``σ(f)`` for background ones (``cd_sigmoid``).  For two classes this
    equals ``cd_softmax`` (Eq. 9, ``1 − p_0 = σ(z_1 − z_0)``).  Void pixels (255) are ignored.
    """

    def __init__(self, reduction: str = "sum", ignore_index: int = VOID) -> None:
        super().__init__()
        self.loss = get_loss("cd_sigmoid", reduction=reduction, ignore_index=ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] != 2:
            raise ValueError(f"BackgroundSigmoidLoss needs two-class logits, got {tuple(logits.shape)}")
        return self.loss(logits[:, 1:2] - logits[:, 0:1], target)


def build_loss(name: str, n_classes: int, weights: Sequence[float] | None = None) -> nn.Module:
    """A void-ignoring, pixel-summed loss: ``logistic`` (cross-entropy), ``class_weighted``
    (Eq. 7 with ``weights``) or ``sigmoid`` (Eq. 8 for two classes, Eq. 9 for more).

    Raises:
        ValueError: for an unknown name or ``class_weighted`` without weights.
    """
    if name == "logistic":
        return get_loss("ce", reduction="sum", ignore_index=VOID)
    if name == "class_weighted":
        if weights is None:
            raise ValueError("class_weighted needs one weight per class")
        return get_loss("weighted_ce", weights=list(weights), reduction="sum", ignore_index=VOID)
    if name == "sigmoid":
        if n_classes == 2:
            return BackgroundSigmoidLoss()
        return get_loss("cd_softmax", reduction="sum", ignore_index=VOID)
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSS_NAMES)}")


# --------------------------------------------------------------------------- model and data
def build_fcn(n_classes: int, width: float, head_init: str, alexnet_weights: str | os.PathLike | None,
              seed: int) -> FCNAlexNet:
    """A seeded FCN-AlexNet; with ``alexnet_weights`` its features/fc6/fc7 start from ImageNet."""
    torch.manual_seed(seed)
    model = FCNAlexNet(n_classes, width=width, head_init=head_init)
    if alexnet_weights is not None:
        load_alexnet_weights(model, alexnet_weights)
    return model


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """``uint8 (H, W, 3)`` → normalised ``float32 (3, H, W)``."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def predict(model: nn.Module, images: Sequence[np.ndarray], device: torch.device) -> list[np.ndarray]:
    """Arg-max label maps ``uint8 (H, W)`` of ``images`` (eval mode, one image at a time)."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for image in images:
            logits = model(image_tensor(image)[None].to(device))
            out.append(logits[0].argmax(0).to(torch.uint8).cpu().numpy())
    model.train(was_training)
    return out


def evaluate(model: nn.Module, images: Sequence[np.ndarray], targets: Sequence[np.ndarray], n_classes: int,
             device: torch.device) -> tuple[dict[str, float], list[np.ndarray]]:
    """FCN scores (:func:`~robustlabel.metrics.segmentation.segmentation_scores`) over all test
    pixels (one pooled confusion matrix, void excluded), and the predictions."""
    predictions = predict(model, images, device)
    hist = np.zeros((n_classes, n_classes), dtype=np.int64)
    for target, prediction in zip(targets, predictions):
        hist += confusion_matrix(target, prediction, n_classes)
    return segmentation_scores(hist), predictions


# --------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    """The snapshots of one training run: ``history[i] = {"iteration": t, **scores}``, and the
    predictions of the snapshot with the best mean IU among the last five (when asked for)."""

    history: list[dict[str, float]]
    best_predictions: list[np.ndarray] | None = None


def train_fcn(
    model: FCNAlexNet,
    images: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    loss: nn.Module,
    solver: SolverConfig,
    *,
    seed: int,
    device: str | torch.device = "auto",
    test: tuple[Sequence[np.ndarray], Sequence[np.ndarray], int] | None = None,
    keep_predictions: bool = False,
    state_path: str | os.PathLike | None = None,
    progress: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train ``model`` with the FCN solver and evaluate ``test = (images, true maps, K)`` at every
    snapshot.

    Args:
        images, targets: training photos and (possibly corrupted) label maps, void = 255.
        loss: from :func:`build_loss` (pixel-summed).
        seed: seeds the image order and dropout.
        test: evaluated at each snapshot; ``None`` records no scores.
        keep_predictions: keep the test predictions of the best of the last five snapshots.
        state_path: a resumable state (model, optimiser, iteration, history) written after each
            snapshot; an existing file is resumed from.  ``None``: nothing is written.
        progress: called with the number of iterations just done (for a tqdm bar).

    Raises:
        ValueError: for empty or mismatched training data.
    """
    if not images or len(images) != len(targets):
        raise ValueError(f"need as many label maps as images (>0), got {len(images)} images and {len(targets)} maps")
    device = resolve_device(device)
    model.to(device).train()
    optimiser = torch.optim.SGD(model.parameters(), lr=solver.lr, momentum=solver.momentum,
                                weight_decay=solver.weight_decay)
    start, history = 0, []
    best: tuple[float, list[np.ndarray]] | None = None
    state_path = Path(state_path) if state_path is not None else None
    if state_path is not None and state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        start, history = int(state["iteration"]), list(state["history"])
        if state.get("best_predictions") is not None:
            best = (float(state["best_mean_iu"]), state["best_predictions"])
    tensors = [image_tensor(im) for im in images]
    labels = [torch.from_numpy(t.astype(np.int64)) for t in targets]
    n = len(tensors)
    snapshots = solver.snapshots
    last_five = set(snapshots[-5:])
    orders: dict[int, np.ndarray] = {}

    def sample(position: int) -> int:
        epoch = position // n
        if epoch not in orders:
            orders.clear()
            orders[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        return int(orders[epoch][position % n])

    torch.manual_seed(seed * 1_000_003 + start)
    for iteration in range(start + 1, solver.iterations + 1):
        optimiser.zero_grad(set_to_none=True)
        for k in range(solver.iter_size):
            i = sample((iteration - 1) * solver.iter_size + k)
            logits = model(tensors[i][None].to(device))
            value = loss(logits, labels[i][None].to(device)) / solver.iter_size
            value.backward()
        optimiser.step()
        if progress is not None:
            progress(1)
        if iteration in snapshots:
            record: dict[str, float] = {"iteration": iteration}
            if test is not None:
                scores, predictions = evaluate(model, test[0], test[1], test[2], device)
                record.update(scores)
                if keep_predictions and iteration in last_five and (best is None or scores["mean_iu"] > best[0]):
                    best = (scores["mean_iu"], predictions)
            history.append(record)
            if state_path is not None:
                atomic_torch_save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                                   "iteration": iteration, "history": history,
                                   "best_mean_iu": None if best is None else best[0],
                                   "best_predictions": None if best is None else best[1]}, state_path)
    return TrainResult(history, None if best is None else best[1])


def last_snapshots(history: Sequence[dict[str, float]], count: int = 5) -> list[dict[str, float]]:
    """The last ``count`` snapshot records (all of them when there are fewer)."""
    return list(history[-count:])


def best_of_last(history: Sequence[dict[str, float]], count: int = 5, key: str = "mean_iu") -> dict[str, float]:
    """The snapshot with the highest ``key`` among the last ``count`` (thesis §5.2)."""
    return max(last_snapshots(history, count), key=lambda r: r[key])
