"""The one device choice (robustlabel.machine.resolve_device) and its users."""

from __future__ import annotations

import pytest
import torch

from robustlabel.engine.config import TrainConfig
from robustlabel.machine import environment_info, resolve_device


def test_auto_and_explicit_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", ""])
def test_unparsable_device_names_the_parameter(bad: str) -> None:
    with pytest.raises(ValueError, match="device"):
        resolve_device(bad)
    with pytest.raises(ValueError, match="device"):
        TrainConfig(device=bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_refused_but_a_cuda_config_still_loads() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:0")
    # a config saved by a GPU run (e.g. inside a checkpoint) must still parse on this machine
    assert TrainConfig(device="cuda:0").device == "cuda:0"


def test_environment_info_names_the_machine() -> None:
    env = environment_info("cpu")
    for key in ("date", "cpu", "torch", "monai", "python", "device", "accelerator"):
        assert env[key]
    assert env["device"] == "cpu" and "CPU" in env["accelerator"]
