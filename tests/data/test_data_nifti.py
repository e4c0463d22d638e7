"""NIfTI I/O: round trip, reproducible bytes, atomic writes, clear errors on bad files."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest

from robustlabel.atomic import atomic_path, write_files_atomic, write_json_atomic
from robustlabel.data.nifti import NiftiReadError, read_nifti, write_nifti_atomic

AFFINE = np.array([[-1.0, 0, 0, 3.0], [0, -1.0, 0, 31.0], [0, 0, 1.0, -2.0], [0, 0, 0, 1]])


@pytest.mark.parametrize("name", ["x.nii.gz", "x.nii"])
def test_round_trip_and_nibabel_compatible(tmp_path, name):
    array = np.arange(8 * 6 * 4 * 2, dtype=np.float32).reshape(8, 6, 4, 2)
    path = write_nifti_atomic(tmp_path / name, array, AFFINE)
    back, affine = read_nifti(path)
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(affine, AFFINE)
    img = nib.load(str(path))  # plain nibabel agrees
    assert img.shape == array.shape and int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    assert os.listdir(tmp_path) == [name]  # no temporary file left


def test_same_input_same_bytes(tmp_path):
    array = np.random.default_rng(0).integers(0, 5, (10, 9, 8)).astype(np.uint8)
    a = write_nifti_atomic(tmp_path / "a.nii.gz", array, AFFINE).read_bytes()
    b = write_nifti_atomic(tmp_path / "b.nii.gz", array, AFFINE).read_bytes()
    assert a == b


def test_truncated_and_garbage_files_name_the_file(tmp_path):
    path = write_nifti_atomic(tmp_path / "t.nii.gz", np.ones((20, 20, 20), np.float32), AFFINE)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(NiftiReadError, match=r"t\.nii\.gz.*corrupt or truncated"):
        read_nifti(path)
    junk = tmp_path / "junk.nii"
    junk.write_bytes(b"not a nifti file at all")
    with pytest.raises(NiftiReadError, match="junk.nii"):
        read_nifti(junk)
    with pytest.raises(NiftiReadError, match="no such file"):
        read_nifti(tmp_path / "missing.nii.gz")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="NIfTI file name"):
        write_nifti_atomic(tmp_path / "x.png", np.zeros((2, 2, 2)), AFFINE)
    with pytest.raises(ValueError, match="4x4"):
        write_nifti_atomic(tmp_path / "x.nii", np.zeros((2, 2, 2)), np.eye(3))


def test_failed_group_write_leaves_nothing(tmp_path):
    (tmp_path / "blocker").write_bytes(b"a file where a folder should be")
    with pytest.raises(OSError):
        write_files_atomic([(tmp_path / "a.bin", b"1"), (tmp_path / "blocker" / "b.bin", b"2")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]  # no a.bin, no temporary file


def test_atomic_path_removes_temp_on_error(tmp_path):
    target = tmp_path / "ckpt.pt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_write_json_atomic_round_trips_and_leaves_no_temp(tmp_path):
    path = write_json_atomic(tmp_path / "info.json", {"case": "a", "path": tmp_path}, default=str)
    assert json.loads(path.read_text()) == {"case": "a", "path": str(tmp_path)}
    assert path.read_text().endswith("}\n")
    assert os.listdir(tmp_path) == ["info.json"]
    with pytest.raises(TypeError):  # nothing is written when the object cannot be encoded
        write_json_atomic(tmp_path / "bad.json", {"x": object()})
    assert os.listdir(tmp_path) == ["info.json"]


def test_header_codes_and_units_are_copied_from_the_source(tmp_path):
    from robustlabel.data.nifti import header_fields, read_header_fields

    source = nib.Nifti1Image(np.zeros((5, 4, 3), np.float32), AFFINE)
    source.set_qform(AFFINE, code=3)
    source.set_sform(AFFINE, code=2)
    source.header.set_xyzt_units("micron", "msec")
    nib.save(source, str(tmp_path / "source.nii.gz"))
    fields = read_header_fields(tmp_path / "source.nii.gz")
    assert fields == {"qform_code": 3, "sform_code": 2, "xyz_units": "micron", "t_units": "msec"}
    label = write_nifti_atomic(tmp_path / "label.nii.gz", np.ones((5, 4, 3), np.uint8), AFFINE, header=fields)
    img = nib.load(str(label))
    assert header_fields(img.header) == fields
    np.testing.assert_allclose(img.affine, AFFINE)
    plain = nib.load(str(write_nifti_atomic(tmp_path / "plain.nii.gz", np.ones((5, 4, 3), np.uint8), AFFINE)))
    assert (int(plain.header["qform_code"]), int(plain.header["sform_code"])) == (1, 1)  # no header given
    with pytest.raises(ValueError, match="missing"):
        write_nifti_atomic(tmp_path / "bad.nii.gz", np.ones((5, 4, 3), np.uint8), AFFINE, header={"qform_code": 2})
    with pytest.raises(NiftiReadError, match="not_there"):
        read_header_fields(tmp_path / "not_there.nii.gz")
