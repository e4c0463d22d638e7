"""Describe the machine a result was measured on, for benchmark and paper tables.

* :func:`resolve_device` - the one device choice (``"auto"``: CUDA when present, else CPU);
* :func:`describe_machine` - a short dict for benchmark tables (device in words, CPU, torch, date);
* :func:`environment_info` - the full record stored with every paper-table result (UTC time,
  host, platform, Python, torch, MONAI, the CUDA device when one was used).
"""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from typing import Any

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


def default_loader_workers(device: str | torch.device = "auto") -> int:
    """Data-loader workers when none are asked for: 0 on CPU (the main process decodes faster than
    it can hand batches over), ``min(8, max(1, cores - 1))`` on CUDA, one core kept for the main process.

    Raises:
        ValueError: as :func:`resolve_device`.
    """
    if resolve_device(device).type != "cuda":
        return 0
    return min(8, max(1, (os.cpu_count() or 2) - 1))


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


def environment_info(device: str | torch.device | None = None) -> dict[str, Any]:
    """Where and when a result was computed: :func:`describe_machine` plus the full UTC time,
    host name, platform, Python, MONAI and the CUDA device name.

    Args:
        device: the ``torch.device`` (or its string) the run used; ``None``/``"auto"`` records
            the default choice (CUDA when available).

    Raises:
        ValueError: ``device`` cannot be parsed or asks for CUDA without CUDA (:func:`resolve_device`).
    """
    machine = describe_machine("cpu")
    info: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": machine["cpu"],
        "cpu_count": machine["cpu_count"],
        "torch": machine["torch"],
        "cuda_available": torch.cuda.is_available(),
    }
    try:
        import monai

        info["monai"] = monai.__version__
    except ImportError:  # pragma: no cover - MONAI is a hard dependency
        info["monai"] = None
    dev = resolve_device("auto" if device is None else device)
    info["device"] = str(dev)
    if dev.type == "cuda" and torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(dev)
        info["cuda_version"] = torch.version.cuda
        info["accelerator"] = info["cuda_device"]
    else:
        info["accelerator"] = f"CPU: {info['cpu']} ({info['cpu_count']} logical cores), no GPU used"
    return info
