"""Readers of the public BraTS layouts and their validation."""

from __future__ import annotations

import numpy as np
import pytest
from brats_layouts import (
    BRATS_TO_MSD,
    phantom,
    save,
    truncate,
    write_brats2018_tree,
    write_brats2021_tree,
    write_brats2023_tree,
    write_brats_case,
    write_msd_task01,
)

from robustlabel.data.brats import CaseError, find_brats_cases, load_case
from robustlabel.data.labels import MODALITIES


def _check_loaded(loaded, case):
    """image (4, X, Y, Z) float32 in MODALITIES order equals the phantom; label in BraTS values."""
    assert loaded.image.shape == (4, *case.seg.shape) and loaded.image.dtype == np.float32
    for i, m in enumerate(MODALITIES):
        np.testing.assert_array_equal(loaded.image[i], case.images[m].astype(np.float32))
    np.testing.assert_allclose(loaded.affine, case.affine, atol=1e-5)
    assert loaded.label.dtype == np.uint8
    np.testing.assert_array_equal(loaded.label, case.seg)


def test_brats2018_hgg_lgg_tree(tmp_path):
    ids = write_brats2018_tree(tmp_path, hgg=2, lgg=1)
    cases = find_brats_cases(tmp_path)
    assert [c.case_id for c in cases] == sorted(ids)
    assert {c.layout for c in cases} == {"brats"}
    assert sorted(c.group for c in cases) == ["HGG", "HGG", "LGG"]
    for case in cases:
        _check_loaded(load_case(case), phantom(ids.index(case.case_id)))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_brats2021_flat_tree(tmp_path, suffix):
    ids = write_brats2021_tree(tmp_path, count=2, suffix=suffix)
    cases = find_brats_cases(tmp_path)
    assert [c.case_id for c in cases] == ids
    assert all(p.name.endswith(suffix) for p in cases[0].modalities.values())
    _check_loaded(load_case(cases[1]), phantom(1))


def test_case_without_seg_is_unlabelled(tmp_path):
    write_brats_case(tmp_path / "BraTS2021_00099", phantom(0), label=False)
    (case,) = find_brats_cases(tmp_path)
    assert case.label is None and load_case(case).label is None


def test_msd_task01(tmp_path):
    ids = write_msd_task01(tmp_path / "Task01_BrainTumour", train=2, test=1)
    cases = find_brats_cases(tmp_path / "Task01_BrainTumour")
    assert [c.case_id for c in cases] == ids  # the macOS ._ files are ignored
    assert {c.layout for c in cases} == {"msd"} and cases[0].channels == ("flair", "t1", "t1ce", "t2")
    _check_loaded(load_case(cases[0]), phantom(0))  # channels reordered, labels remapped
    assert cases[2].label is None and load_case(cases[2]).label is None
    # also found from the parent folder (the extracted archive has Task01_BrainTumour/ inside)
    assert [c.case_id for c in find_brats_cases(tmp_path)] == ids


def test_msd_remap_is_not_identity(tmp_path):
    write_msd_task01(tmp_path, train=1, test=0)
    loaded = load_case(find_brats_cases(tmp_path)[0])
    raw = np.zeros_like(phantom(0).seg)
    for brats_value, msd_value in BRATS_TO_MSD.items():
        raw[phantom(0).seg == brats_value] = msd_value
    assert (loaded.label == 2).sum() == (raw == 1).sum()  # MSD oedema 1 -> 2
    assert (loaded.label == 4).sum() == (raw == 3).sum()  # MSD enhancing 3 -> 4


def test_brats2023_names_and_et_remap(tmp_path):
    ids = write_brats2023_tree(tmp_path, count=2)
    cases = find_brats_cases(tmp_path)
    assert [c.case_id for c in cases] == ids and {c.layout for c in cases} == {"brats2023"}
    assert cases[0].modalities["flair"].name.endswith("-t2f.nii.gz")
    _check_loaded(load_case(cases[0]), phantom(0))


def test_empty_or_missing_source(tmp_path):
    with pytest.raises(ValueError, match="no BraTS cases found"):
        find_brats_cases(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        find_brats_cases(tmp_path / "nope")


# ----------------------------------------------------------------------------- rejections
def _one_case(tmp_path, name="BraTS2021_00001"):
    case = phantom(0)
    write_brats_case(tmp_path / name, case)
    return tmp_path / name, case


def _reason(tmp_path) -> str:
    (case,) = find_brats_cases(tmp_path)
    with pytest.raises(CaseError) as info:
        load_case(case)
    assert info.value.case_id == case.case_id
    return info.value.reason


def test_truncated_file(tmp_path):
    folder, _ = _one_case(tmp_path)
    truncate(folder / f"{folder.name}_t1ce.nii.gz")
    assert "t1ce.nii.gz: corrupt or truncated" in _reason(tmp_path)


def test_missing_modality(tmp_path):
    folder, _ = _one_case(tmp_path)
    (folder / f"{folder.name}_t2.nii.gz").unlink()
    assert _reason(tmp_path) == "missing modality t2"


def test_duplicated_modality(tmp_path):
    folder, case = _one_case(tmp_path)
    save(folder / f"{folder.name}_t1.nii", case.images["t1"], case.affine)
    assert "ambiguous t1" in _reason(tmp_path)


def test_shape_mismatch(tmp_path):
    folder, case = _one_case(tmp_path)
    save(folder / f"{folder.name}_flair.nii.gz", case.images["flair"][:-1], case.affine)
    assert "shape mismatch" in _reason(tmp_path)


def test_label_shape_mismatch(tmp_path):
    folder, case = _one_case(tmp_path)
    save(folder / f"{folder.name}_seg.nii.gz", case.seg[:, :, :-2], case.affine)
    assert "shape mismatch" in _reason(tmp_path) and "seg" in _reason(tmp_path)


def test_affine_mismatch(tmp_path):
    folder, case = _one_case(tmp_path)
    moved = case.affine.copy()
    moved[0, 3] += 2.0
    save(folder / f"{folder.name}_t2.nii.gz", case.images["t2"], moved)
    assert "affine mismatch" in _reason(tmp_path)


def test_label_value_3_in_brats2018_case(tmp_path):
    write_brats2018_tree(tmp_path, hgg=1, lgg=0)
    (folder,) = (tmp_path / "HGG").iterdir()
    case = phantom(0)
    save(folder / f"{folder.name}_seg.nii.gz", np.where(case.seg == 4, 3, case.seg).astype(np.uint8), case.affine)
    reason = _reason(tmp_path)
    assert "unexpected label values [3]" in reason and "'brats'" in reason


def test_nan_voxel(tmp_path):
    folder, case = _one_case(tmp_path)
    flair = case.images["flair"].astype(np.float32)
    flair[3, 4, 5] = np.nan
    save(folder / f"{folder.name}_flair.nii.gz", flair, case.affine)
    assert "1 NaN/inf voxels" in _reason(tmp_path)


def test_msd_wrong_channel_count(tmp_path):
    write_msd_task01(tmp_path, train=1, test=0)
    case = phantom(0)
    save(tmp_path / "imagesTr" / "BRATS_001.nii.gz", case.images["t1"].astype(np.float32), case.affine)
    assert "expected a 4-D image with 4 channels" in _reason(tmp_path)


def test_brats2020_misnamed_label_is_reported(tmp_path):
    folder, case = _one_case(tmp_path, "BraTS20_Training_355")
    (folder / "BraTS20_Training_355_seg.nii.gz").rename(folder / "W39_1998.09.19_Segm.nii.gz")
    assert "W39_1998.09.19_Segm.nii.gz" in _reason(tmp_path)
