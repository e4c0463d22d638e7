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


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def describe_machine(device: str | torch.device = "auto") -> dict[str, str | int]:
    """A small dict: device in words, CPU model and cores, torch version, UTC date."""
    dev = pick_device(device)
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
