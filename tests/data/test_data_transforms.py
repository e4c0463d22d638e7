"""MONAI pipelines: normalisation, crop, label classes, pass-through keys, geometry kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from brats_layouts import phantom
from monai.data import MetaTensor

from robustlabel.data.labels import MODALITIES
from robustlabel.data.nifti import write_nifti_atomic
from robustlabel.data.transforms import infer_transforms, original_affine, train_transforms, val_transforms

SHAPE = (32, 32, 24)


@pytest.fixture(scope="module")
def item(tmp_path_factory):
    root = tmp_path_factory.mktemp("tr")
    case = phantom(2, SHAPE)
    image = np.stack([case.images[m] for m in MODALITIES], axis=-1).astype(np.float32)
    write_nifti_atomic(root / "modalities" / "c.nii.gz", image, case.affine)
    write_nifti_atomic(root / "labels" / "final" / "c.nii.gz", case.seg, case.affine)
    return {
        "image": str(root / "modalities" / "c.nii.gz"),
        "label": str(root / "labels" / "final" / "c.nii.gz"),
        "source": "final",
        "case": "c",
        "_case": case,
    }


def _plain(item):
    return {k: v for k, v in item.items() if k != "_case"}


def test_val_normalisation_inside_brain(item):
    out = val_transforms()(_plain(item))
    image, label = out["image"], out["label"]
    assert isinstance(image, MetaTensor) and image.shape == (4, *SHAPE) and image.dtype == torch.float32
    assert label.shape == (1, *SHAPE) and label.dtype == torch.int64
    brain = torch.from_numpy(item["_case"].brain)
    for c in range(4):
        inside = image[c][brain]
        assert abs(float(inside.mean())) < 1e-4 and abs(float(inside.std(unbiased=False)) - 1.0) < 1e-3
        assert float(image[c][~brain].abs().max()) == 0.0
    expected = np.where(item["_case"].seg == 4, 3, item["_case"].seg)
    np.testing.assert_array_equal(label[0].numpy(), expected)
    assert out["source"] == "final" and out["case"] == "c"


def test_infer_keeps_source_geometry(item):
    out = infer_transforms()({"image": item["image"], "case": "c"})
    image = out["image"]
    np.testing.assert_allclose(original_affine(image), item["_case"].affine, atol=1e-5)
    np.testing.assert_allclose(image.affine.numpy(), item["_case"].affine, atol=1e-5)
    assert tuple(int(s) for s in image.meta["spatial_shape"]) == SHAPE
    assert image.meta["filename_or_obj"] == item["image"] and "label" not in out
    with pytest.raises(ValueError, match="original_affine"):
        original_affine(torch.zeros(1))


def test_train_crop_classes_and_pass_through(item):
    pipeline = train_transforms(roi_size=(16, 16, 16))
    pipeline.set_random_state(seed=0)
    seen = set()
    crops = []
    for _ in range(6):
        out = pipeline(_plain(item))
        assert out["image"].shape == (4, 16, 16, 16) and out["image"].dtype == torch.float32
        assert out["label"].shape == (1, 16, 16, 16) and out["label"].dtype == torch.int64
        assert out["source"] == "final" and out["case"] == "c"
        seen |= set(out["label"].unique().tolist())
        crops.append(out["image"])
    assert seen <= {0, 1, 2, 3} and 3 in seen
    assert not torch.equal(crops[0], crops[1])  # random crops/flips/intensity
    # same seed, same samples
    pipeline.set_random_state(seed=0)
    assert torch.equal(pipeline(_plain(item))["image"], crops[0])


def test_train_pads_small_volumes_and_intensity_change_is_bounded(item):
    pipeline = train_transforms(roi_size=(40, 40, 40))
    pipeline.set_random_state(seed=1)
    out = pipeline(_plain(item))
    assert out["image"].shape == (4, 40, 40, 40) and out["label"].shape == (1, 40, 40, 40)
    # the padded border is background; shift |o| <= 0.1 moves the zero background by at most 0.1
    corner = out["image"][:, :2, :2, :2]
    assert float(corner.abs().max()) <= 0.1 + 1e-6
    assert int(out["label"][:, :2, :2, :2].abs().max()) == 0
    for c in range(4):  # one constant offset per channel
        assert torch.allclose(corner[c], corner[c].flatten()[0].expand_as(corner[c]))


def test_3d_image_instead_of_modalities_is_rejected(item, tmp_path):
    flair = write_nifti_atomic(tmp_path / "c.nii.gz", item["_case"].images["flair"], item["_case"].affine)
    with pytest.raises(RuntimeError) as info:  # MONAI wraps errors raised inside a transform
        infer_transforms()({"image": str(flair)})
    cause = info.value.__cause__
    assert isinstance(cause, ValueError) and "c.nii.gz: expected a 4-D image with 4 channels" in str(cause)


def test_bad_arguments():
    with pytest.raises(ValueError, match="roi_size"):
        train_transforms(roi_size=(16, 16))
    with pytest.raises(ValueError, match="label_key"):
        train_transforms(keys=("image",))
