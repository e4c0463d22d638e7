"""Load the standalone scripts in ``scripts/`` as modules, so tests can call their ``main(argv)``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str):
    path = SCRIPTS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def restore_threads():
    """The scripts may call ``torch.set_num_threads``; give the other tests their setting back."""
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)
