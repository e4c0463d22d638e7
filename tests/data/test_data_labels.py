"""Label conventions: BraTS ↔ training classes, MSD and BraTS 2023 remaps, regions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import ConvertToMultiChannelBasedOnBratsClasses

from robustlabel.data.labels import (
    MODALITIES,
    REGIONS,
    BratsToTrainLabelsd,
    LabelValueError,
    TrainToBratsLabelsd,
    brats2023_to_brats,
    brats_regions,
    brats_to_train,
    msd_to_brats,
    train_to_brats,
)

BRATS = np.array([0, 1, 2, 4, 4, 2, 0], dtype=np.uint8)
TRAIN = np.array([0, 1, 2, 3, 3, 2, 0], dtype=np.uint8)


def test_constants():
    assert MODALITIES == ("flair", "t1ce", "t1", "t2")
    assert REGIONS == ("WT", "TC", "ET")


@pytest.mark.parametrize("as_torch", [False, True])
def test_brats_train_round_trip(as_torch):
    x = torch.from_numpy(BRATS) if as_torch else BRATS.copy()
    y = brats_to_train(x)
    assert type(y) is type(x) and y.dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(y), TRAIN)
    np.testing.assert_array_equal(np.asarray(train_to_brats(y)), BRATS)
    np.testing.assert_array_equal(np.asarray(x), BRATS)  # input untouched


def test_metatensor_keeps_meta():
    affine = torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0]))
    x = MetaTensor(torch.from_numpy(BRATS).float()[None, None], affine=affine)
    y = brats_to_train(x)
    assert isinstance(y, MetaTensor)
    assert torch.equal(y.affine, affine)
    assert y.unique().tolist() == [0, 1, 2, 3]


def test_msd_and_2023_remaps():
    msd = np.array([0, 1, 2, 3], dtype=np.uint8)  # background, oedema, non-enhancing, enhancing
    np.testing.assert_array_equal(msd_to_brats(msd), [0, 2, 1, 4])
    b23 = torch.tensor([0, 1, 2, 3])
    assert brats2023_to_brats(b23).tolist() == [0, 1, 2, 4]


@pytest.mark.parametrize(
    "fn, bad, value",
    [(brats_to_train, [0, 3], 3), (train_to_brats, [0, 4], 4), (msd_to_brats, [0, 4], 4), (brats2023_to_brats, [5], 5)],
)
def test_unexpected_values_raise(fn, bad, value):
    with pytest.raises(LabelValueError, match=rf"\[{value}\]"):
        fn(np.array(bad, dtype=np.int16))


def test_regions_order_and_nesting():
    label = np.array([[0, 1, 2, 4]], dtype=np.uint8)
    regions = brats_regions(label)
    assert regions.shape == (3, 1, 4) and regions.dtype == bool
    wt, tc, et = regions
    np.testing.assert_array_equal(wt[0], [False, True, True, True])
    np.testing.assert_array_equal(tc[0], [False, True, False, True])
    np.testing.assert_array_equal(et[0], [False, False, False, True])
    monai = ConvertToMultiChannelBasedOnBratsClasses()(label)  # TC, WT, ET
    np.testing.assert_array_equal(regions[0], monai[1])
    np.testing.assert_array_equal(regions[1], monai[0])


def test_regions_torch_with_channel():
    label = torch.tensor([0, 1, 2, 4]).reshape(1, 2, 2, 1)
    regions = brats_regions(label)
    assert regions.shape == (3, 2, 2, 1)
    assert regions.sum(dim=(1, 2, 3)).tolist() == [3, 2, 1]


def test_map_transforms_pass_other_keys():
    data = {"label": BRATS.copy(), "pred": TRAIN.copy(), "case": "c1", "source": "pseudo"}
    out = BratsToTrainLabelsd(keys="label")(data)
    np.testing.assert_array_equal(out["label"], TRAIN)
    assert out["case"] == "c1" and out["source"] == "pseudo"
    out = TrainToBratsLabelsd(keys="pred")(out)
    np.testing.assert_array_equal(out["pred"], BRATS)
    with pytest.raises(LabelValueError, match="'label'"):
        BratsToTrainLabelsd(keys="label")({"label": TRAIN})
    assert "label" not in BratsToTrainLabelsd(keys="label", allow_missing_keys=True)({"image": 1})
