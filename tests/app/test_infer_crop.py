"""The ``/infer`` task's sliding-window options (crop to the brain, overlap, blending, the stock
switch), through the app's real infer task (MONAI Label's ``BasicInferTask`` pipeline: load,
transforms, sliding window, writer) on a fixed (seeded, untrained) tiny TransBTS."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from brats_server import APP_DIR
from robustlabel.data.studies import modalities_path
from robustlabel.engine.crop import align_to_windows
from robustlabel.engine.inference import INFER_WINDOWS, WindowSettings, cpu_bf16_supported

sys.path.insert(0, str(APP_DIR))  # what MONAI Label does before it imports an app's main.py and lib/
from lib.conf import parse_conf, parse_sliding_window  # noqa: E402
from lib.configs.transbts import network_config  # noqa: E402
from lib.errors import AppRequestError  # noqa: E402
from lib.infers.transbts import AMP_KEY, WINDOWS_KEY, TransBTSInfer  # noqa: E402

SHAPE = (96, 48, 40)
BRAIN = (slice(20, 44), slice(10, 32), slice(6, 26))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A studies image whose non-zero brain fills a small part of the volume."""
    root = tmp_path_factory.mktemp("infer_crop")
    data = np.zeros((*SHAPE, 4), np.float32)
    data[BRAIN] = np.random.default_rng(0).normal(100.0, 20.0, (24, 22, 20, 4))
    flair = root / "case0.nii.gz"
    modalities_path(flair).parent.mkdir()
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(modalities_path(flair)))
    nib.save(nib.Nifti1Image(data[..., 0], np.eye(4)), str(flair))
    return flair


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> TransBTSInfer:
    model_dir = tmp_path_factory.mktemp("model")
    conf = parse_conf({"tiny": "true", "device": "cpu"}, default_model_dir=str(model_dir))
    return TransBTSInfer(path=str(model_dir / "transbts_tiny.pt"), network_config=network_config(conf), conf=conf)


def _infer(task: TransBTSInfer, study: Path, **options: object) -> tuple[np.ndarray, dict]:
    path, result = task({"image": str(study), **options})
    return np.asarray(nib.load(path).dataobj), result


def test_infer_with_the_aligned_crop_labels_the_brain_as_stock(task: TransBTSInfer, study: Path) -> None:
    stock, stock_result = _infer(task, study, sw_stock=True, sw_overlap=0.1, crop_margin=4)  # stock wins over both
    assert stock_result[WINDOWS_KEY] == WindowSettings.stock().describe()  # today's: one window per forward
    # the crop aligned to stock's window grid, margin = one window overlap (32 - 16): exact on the brain
    crop, result = _infer(task, study, crop_margin=16, crop_align="true", sw_overlap=0.5, sw_blend="gaussian",
                          cpu_bf16=False)  # float32 like stock: the comparison is exact
    assert result[WINDOWS_KEY]["crop_margin"] == 16 and result[WINDOWS_KEY]["crop_align"] is True
    brain = np.zeros(SHAPE, bool)
    brain[BRAIN] = True
    assert np.array_equal(crop[brain], stock[brain])
    box = align_to_windows((slice(4, 60), slice(0, 48), slice(0, 40)), SHAPE, (32, 32, 32), 0.5)
    outside = np.ones(SHAPE, bool)
    outside[box] = False
    assert outside.any() and not crop[outside].any()  # background outside the box, pasted back full size
    assert crop.shape == SHAPE


def test_infer_defaults_and_the_crop_switch(task: TransBTSInfer, study: Path) -> None:
    label, result = _infer(task, study)
    assert result[WINDOWS_KEY] == INFER_WINDOWS.describe() and label.shape == SHAPE
    # bf16 by default exactly where the CPU has it natively; the stock switch and the option restore float32
    assert result[AMP_KEY] == ("bf16" if cpu_bf16_supported() else "fp32")
    assert _infer(task, study, sw_stock=True)[1][AMP_KEY] == "fp32"
    assert _infer(task, study, cpu_bf16="false")[1][AMP_KEY] == "fp32"
    # oneDNN's channels-last layout by default, today's contiguous one for the stock switch: one cached network each
    assert set(task._networks) == {("cpu", True), ("cpu", False)}
    for (_, channels_last), (network, _) in task._networks.items():
        kernels = [p for p in network.parameters() if p.dim() == 5]
        layout = torch.channels_last_3d if channels_last else torch.contiguous_format
        assert all(p.is_contiguous(memory_format=layout) for p in kernels)
        assert channels_last or not all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in kernels)
    _, result = _infer(task, study, crop_margin="none")
    assert result[WINDOWS_KEY]["crop_margin"] is None


@pytest.mark.parametrize(("options", "status", "field"), [
    ({"crop_margin": "wide"}, 422, "crop_margin"),
    ({"crop_margin": -1}, 400, "crop_margin"),
    ({"sw_overlap": 1.0}, 400, "sw_overlap"),
    ({"sw_blend": "median"}, 422, "sw_blend"),
    ({"sw_stock": "maybe"}, 422, "sw_stock"),
    ({"crop_align": "sometimes"}, 422, "crop_align"),
    ({"cpu_bf16": "fast"}, 422, "cpu_bf16"),
])
def test_bad_window_options_are_refused_naming_the_field(task: TransBTSInfer, study: Path, options: dict,
                                                         status: int, field: str) -> None:
    with pytest.raises(AppRequestError, match=field) as info:
        task({"image": str(study), **options})
    assert info.value.status_code == status
    with pytest.raises(AppRequestError, match=field):
        parse_sliding_window(options, INFER_WINDOWS)
    if field != "sw_stock":  # the stock switch ignores the other options but still checks them
        with pytest.raises(AppRequestError, match=field):
            parse_sliding_window({**options, "sw_stock": True}, INFER_WINDOWS)
