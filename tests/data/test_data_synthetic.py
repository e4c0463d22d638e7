"""Synthetic BraTS phantoms and `robustlabel synth-brats`."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from robustlabel.cli import main
from robustlabel.data.labels import MODALITIES, brats_regions
from robustlabel.data.nifti import read_nifti
from robustlabel.data.synthetic import case_id, make_synthetic_case, write_synthetic_brats

SHAPE = (32, 32, 24)


def _case(i: int, seed: int = 7):
    return make_synthetic_case(SHAPE, np.random.default_rng([seed, i]))


def test_cli_writes_brats2018_folders_deterministically(tmp_path, capsys):
    args = ["--cases", "2", "--shape", *map(str, SHAPE), "--seed", "5"]
    assert main(["synth-brats", str(tmp_path / "a"), *args]) == 0
    assert main(["synth-brats", str(tmp_path / "b"), *args]) == 0
    assert "wrote 2 synthetic BraTS cases" in capsys.readouterr().out
    names = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.nii.gz"))
    cid = case_id(0)
    assert cid == "Brats18_SYN_0001_1"
    assert names[:5] == sorted(f"{cid}/{cid}_{t}.nii.gz" for t in ("flair", "t1", "t1ce", "t2", "seg"))
    assert len(names) == 10
    for name in names:  # same seed, same bytes
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # a case does not depend on the number of cases written; another seed differs
    write_synthetic_brats(tmp_path / "c", cases=1, shape=SHAPE, seed=5, progress=False)
    write_synthetic_brats(tmp_path / "d", cases=1, shape=SHAPE, seed=6, progress=False)
    f = f"{cid}/{cid}_t1ce.nii.gz"
    assert (tmp_path / "c" / f).read_bytes() == (tmp_path / "a" / f).read_bytes()
    assert (tmp_path / "d" / f).read_bytes() != (tmp_path / "a" / f).read_bytes()


def test_files_geometry_and_dtypes(tmp_path):
    folder = write_synthetic_brats(tmp_path, cases=1, shape=SHAPE, seed=1, progress=False)[0]
    seg, affine = read_nifti(folder / f"{folder.name}_seg.nii.gz")
    assert seg.shape == SHAPE and seg.dtype == np.uint8
    assert set(np.unique(seg)) <= {0, 1, 2, 4}
    assert affine[0, 0] < 0 and affine[1, 1] < 0 and affine[2, 2] > 0  # BraTS-like axis flips
    assert np.any(affine[:3, 3] != 0)
    assert 0.94 < abs(affine[0, 0]) < 1.06
    for m in MODALITIES:
        img, aff = read_nifti(folder / f"{folder.name}_{m}.nii.gz")
        assert img.dtype == np.int16 and img.shape == SHAPE
        np.testing.assert_array_equal(aff, affine)


def test_brain_mask_and_nested_regions():
    volumes = []
    for i in range(6):
        c = _case(i)
        for m in MODALITIES:  # zero background, non-zero brain: the brain mask is exact
            assert np.all(c.images[m][~c.brain] == 0)
            assert np.all(c.images[m][c.brain] > 0)
        assert np.all(c.seg[~c.brain] == 0)
        wt, tc, et = brats_regions(c.seg)
        assert et.any() and tc.any() and wt.any()
        assert np.all(et <= tc) and np.all(tc <= wt)  # ET ⊂ TC ⊂ WT
        assert wt.sum() > tc.sum() > 0
        volumes.append(int(wt.sum()))
        # the necrotic core (if any) is surrounded by enhancing tumour, not touching oedema directly
        ncr = c.seg == 1
        if ncr.any():
            ring = binary_dilation(ncr) & ~ncr
            assert np.mean(c.seg[ring] == 4) > 0.8
    assert max(volumes) > 1.5 * min(volumes)  # varied sizes
    centres = [np.argwhere(_case(i).seg > 0).mean(axis=0) for i in range(4)]
    assert np.ptp(np.array(centres), axis=0).max() > 2  # varied positions


def test_some_cases_lack_necrosis_and_contrasts_are_realistic():
    has_ncr = []
    for i in range(12):
        c = _case(i, seed=3)
        has_ncr.append(bool((c.seg == 1).any()))
        mean = {m: {v: c.images[m][c.seg == v].mean() for v in (0, 1, 2, 4) if (c.seg == v).any()} for m in MODALITIES}
        healthy = {m: c.images[m][c.brain & (c.seg == 0)].mean() for m in MODALITIES}
        assert mean["flair"][2] > 1.3 * healthy["flair"]  # oedema bright on FLAIR
        assert mean["t2"][2] > 1.3 * healthy["t2"]  # ... and on T2
        assert mean["t1ce"][4] > 1.3 * healthy["t1ce"]  # enhancing rim bright on T1ce
        if 1 in mean["t1ce"]:
            assert mean["t1ce"][1] < mean["t1ce"][4]  # necrosis darker than the rim on T1ce
    assert 0 < sum(has_ncr) < len(has_ncr)


def test_bad_shape_rejected():
    with pytest.raises(ValueError, match="shape"):
        make_synthetic_case((8, 32, 32), np.random.default_rng(0))
