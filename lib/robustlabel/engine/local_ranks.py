"""Train on ``N`` ranks started on this machine by Python, for callers that are not launched by
torchrun: the MONAI Label app's ``multi_gpu`` / ``gpus`` / ``ranks`` train options.

MONAI Label 0.8.5's ``BasicTrainTask`` starts one process per GPU with
``torch.multiprocessing.spawn`` when a request sets ``multi_gpu``; :func:`train_on_local_ranks`
does the same through :func:`robustlabel.engine.distributed.launch_local` (NCCL, one GPU per rank,
on CUDA; gloo on CPU), each rank running the unchanged :func:`robustlabel.engine.train`.  Rank 0
writes the run folder; the caller reads the result back from it once every rank has exited.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .distributed import init_distributed, launch_local
from .trainer import TrainResult, read_result, train


def _train_rank(train_items: list[dict[str, Any]], val_items: list[dict[str, Any]], out_dir: str,
                config: dict[str, Any], resume: bool, progress: bool) -> None:
    config_ = TrainConfig.from_dict(config)
    init_distributed(config_.device)
    train(train_items, val_items, out_dir, config_, resume=resume, progress=progress)


def train_on_local_ranks(
    train_items: Sequence[Mapping[str, Any]],
    val_items: Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike,
    config: TrainConfig,
    nprocs: int,
    *,
    cuda_devices: Sequence[int] | None = None,
    resume: bool = True,
    progress: bool = True,
) -> TrainResult:
    """:func:`~robustlabel.engine.train` data parallel on ``nprocs`` local ranks; returns its result.

    Args:
        nprocs: ranks ``N`` (``config.batch_size`` is per rank: the global batch is ``N`` times it).
        cuda_devices: the GPUs to use, one per rank (``CUDA_VISIBLE_DEVICES`` of the ranks);
            ``None``: the visible ones in order.
        resume, progress: as for :func:`~robustlabel.engine.train` (progress on rank 0 only).

    Raises:
        ValueError: ``nprocs < 1`` or as many ``cuda_devices`` as ranks not given.
        torch.multiprocessing.ProcessRaisedException: a rank failed (the others are terminated).
    """
    env = {}
    if cuda_devices is not None:
        if len(cuda_devices) != int(nprocs):
            raise ValueError(f"{nprocs} ranks need {nprocs} GPUs, got {list(cuda_devices)}")
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(int(d)) for d in cuda_devices)
    launch_local(_train_rank, nprocs, (list(map(dict, train_items)), list(map(dict, val_items)), str(out_dir),
                                       config.to_dict(), resume, progress), env=env)
    return read_result(Path(out_dir))
