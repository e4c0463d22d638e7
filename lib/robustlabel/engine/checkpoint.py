"""Atomic checkpoints, the run record stored in them, and loading a trained network back.

Checkpoint layout (a ``torch.save`` dict; every value a ``state_dict``)::

    last.pt  {"network", "optimizer", "lr_scheduler", "trainer", "record"[, "scaler"]}  every epoch
    best.pt  {"network", "record"}                                                     best validation

``record`` (:class:`TrainingRecord`) holds the :class:`~robustlabel.engine.config.TrainConfig`
as a dict, the per-epoch history, the best metric and its epoch, so a checkpoint alone is
enough to rebuild the network (:func:`load_network`) and to resume training.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_path
from ..networks import build_network
from .config import TrainConfig

LAST_NAME = "last.pt"
BEST_NAME = "best.pt"
#: ``best_metric`` before any validation
NO_METRIC = float("-inf")


@dataclass
class TrainingRecord:
    """What a run knows about itself: its config, per-epoch history and best validation score.

    Implements ``state_dict``/``load_state_dict`` so that it is saved and restored with the
    other checkpointed objects.  Values are plain python (loadable with ``weights_only=True``).
    """

    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float = NO_METRIC
    best_epoch: int = 0

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.config = dict(state.get("config", {}))
        self.history = [dict(h) for h in state.get("history", [])]
        self.best_metric = float(state.get("best_metric", NO_METRIC))
        self.best_epoch = int(state.get("best_epoch", 0))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same directory, fsync, then ``os.replace``.

    A process killed at any moment leaves either the previous file or the new one, never a
    truncated checkpoint.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
    return path


class AtomicCheckpointer:
    """Ignite handler: save ``{name: obj.state_dict()}`` of ``objects`` atomically to ``path``.

    Written by hand because MONAI's ``CheckpointSaver`` does not fit an interruptible run: it
    writes with ignite's ``DiskSaver(atomic=False)`` and, with a fixed file name, removes the
    previous file *before* writing the new one, so a ``kill -9`` during the write leaves no
    usable checkpoint.  Loading uses MONAI's ``CheckpointLoader``.
    """

    def __init__(self, path: str | os.PathLike, objects: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.objects = dict(objects)

    def __call__(self, engine: Any = None) -> Path:
        return atomic_torch_save({name: obj.state_dict() for name, obj in self.objects.items()}, self.path)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (identifies a teacher checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by the engine (``weights_only``), with clear errors.

    Raises:
        ValueError: missing file, unreadable file, or a file without ``network``/``record``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise ValueError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    missing = [k for k in ("network", "record") if not isinstance(checkpoint, Mapping) or k not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint {path} is not a robustlabel engine checkpoint (missing {missing})")
    return checkpoint


def network_from_checkpoint(checkpoint: Mapping[str, Any], device: torch.device | str = "cpu") -> tuple[nn.Module, TrainConfig]:
    """Rebuild the network of a checkpoint dict (from :func:`read_checkpoint`), in eval mode."""
    config = TrainConfig.from_dict(checkpoint["record"]["config"])
    network = build_network(config.network)
    network.load_state_dict(checkpoint["network"])
    return network.to(device).eval(), config


def load_network(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, TrainConfig]:
    """Rebuild the network stored in an engine checkpoint, in eval mode on ``device``.

    Returns ``(network, config)``; ``config`` is the checkpoint's training configuration.
    """
    return network_from_checkpoint(read_checkpoint(path, device), device)
