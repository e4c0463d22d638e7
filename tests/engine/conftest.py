"""Shared fixtures of the engine tests: a tiny synthetic studies folder (6 cases of 32³, 3 with a
clinician label) and a tiny TransBTS teacher trained for one epoch on CPU."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from robustlabel.data.studies import import_brats, studies_datalist
from robustlabel.data.synthetic import write_synthetic_brats
from robustlabel.engine.trainer import TrainResult, train

from engine_helpers import CASES, SHAPE, tiny_config


@pytest.fixture(scope="session")
def studies_template(tmp_path_factory) -> Path:
    """A read-only template: copy it (``studies`` fixture) before writing into it."""
    root = tmp_path_factory.mktemp("engine_data")
    write_synthetic_brats(root / "syn", cases=CASES, shape=SHAPE, seed=0, progress=False)
    studies = root / "studies"
    report = import_brats(root / "syn", studies, labeled_fraction=0.5, seed=0, progress=False)
    assert len(report.labeled) == 3 and len(report.unlabeled) == 3
    return studies


@pytest.fixture()
def studies(studies_template, tmp_path) -> Path:
    """A private copy of the template studies folder."""
    return Path(shutil.copytree(studies_template, tmp_path / "studies"))


@pytest.fixture(scope="session")
def teacher(studies_template, tmp_path_factory) -> TrainResult:
    """A tiny teacher: one epoch of CE on two clinician cases, validated on the third."""
    final = studies_datalist(studies_template, sources=("final",))
    out = tmp_path_factory.mktemp("teacher")
    return train(final[:2], final[2:], out, tiny_config(pseudo_loss="ce", pseudo_params={}), progress=False)
