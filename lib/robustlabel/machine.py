"""Describe the machine a result was measured on, for benchmark and paper tables."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone

import torch


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The one device choice of robustlabel: ``"auto"`` → CUDA when available, else CPU;
    anything else is passed to ``torch.device``.

    Raises:
        ValueError: an unparsable device string, or a CUDA device asked for without CUDA.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda[:i]', got {str(device)!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return dev


#: old name, kept for callers not yet switched (scripts/bench_pseudo_label.py)
pick_device = resolve_device


def describe_machine(device: str | torch.device = "auto") -> dict[str, str | int]:
    """A small dict: device in words, CPU model and cores, torch version, UTC date."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        words = f"CUDA {torch.cuda.get_device_name(dev)}"
    else:
        words = f"CPU ({os.cpu_count()} cores, {_cpu_model()})"
    return {
        "device": words,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
