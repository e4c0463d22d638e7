"""Helpers of the engine tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

from pathlib import Path

from robustlabel.engine.checkpoint import sha256_file
from robustlabel.engine.config import TrainConfig
from robustlabel.networks import TINY_TRANSBTS

CASES = 6
SHAPE = (32, 32, 32)


def tiny_config(**changes) -> TrainConfig:
    """Tiny TransBTS, 32³ crops, CPU, float32, no workers: about a second per epoch."""
    base = dict(network=dict(TINY_TRANSBTS), batch_size=2, epochs=1, val_interval=1, sw_batch_size=2,
                num_workers=0, device="cpu", seed=0)
    return TrainConfig(**{**base, **changes})


def sha256_tree(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file below ``folder``."""
    return {str(p.relative_to(folder)): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}
