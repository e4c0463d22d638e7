"""`robustlabel import-brats` and the studies folder (MONAI Label datastore)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from brats_layouts import all_files, phantom, save, truncate, write_brats2021_tree, write_brats_case, write_msd_task01

from robustlabel.cli import main
from robustlabel.data.labels import MODALITIES
from robustlabel.data.nifti import read_nifti, write_nifti_atomic
from robustlabel.data.studies import (
    MANIFEST_NAME,
    import_brats,
    modalities_path,
    read_manifest,
    select_labeled,
    studies_datalist,
    unlabeled_datalist,
)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A BraTS 2021 tree of 4 cases: ids BraTS2021_00000..3 from phantoms 0..3."""
    root = tmp_path_factory.mktemp("src")
    write_brats2021_tree(root, count=4)
    return root


def test_layout_geometry_and_manifest(source, tmp_path):
    studies = tmp_path / "studies"
    report = import_brats(source, studies, labeled_fraction=0.5, seed=3, progress=False)
    ids = [f"BraTS2021_{k:05d}" for k in range(4)]
    assert sorted(report.labeled + report.unlabeled) == ids and len(report.labeled) == 2 and not report.skipped
    expected = {MANIFEST_NAME}
    expected |= {f"{c}.nii.gz" for c in ids} | {f"modalities/{c}.nii.gz" for c in ids}
    expected |= {f"labels/final/{c}.nii.gz" for c in report.labeled}
    assert all_files(studies) == expected  # nothing else: no temp files, no pseudo labels
    for k, case_id in enumerate(ids):
        case = phantom(k)
        flair, affine = read_nifti(studies / f"{case_id}.nii.gz")
        assert flair.shape == case.seg.shape and flair.dtype == np.float32
        np.testing.assert_array_equal(flair, case.images["flair"])
        np.testing.assert_allclose(affine, case.affine, atol=1e-5)
        four_d, affine4 = read_nifti(modalities_path(studies / f"{case_id}.nii.gz"))
        assert four_d.shape == (*case.seg.shape, 4) and four_d.dtype == np.float32
        np.testing.assert_allclose(affine4, affine)
        for i, m in enumerate(MODALITIES):
            np.testing.assert_array_equal(four_d[..., i], case.images[m])
        if case_id in report.labeled:
            label, label_affine = read_nifti(studies / "labels" / "final" / f"{case_id}.nii.gz")
            assert label.dtype == np.uint8
            np.testing.assert_array_equal(label, case.seg)
            np.testing.assert_allclose(label_affine, affine)
    manifest = read_manifest(studies)
    assert manifest == {
        "source": str(source.resolve()),
        "seed": 3,
        "labeled_fraction": 0.5,
        "labeled": sorted(report.labeled),
        "unlabeled": sorted(report.unlabeled),
        "skipped": {},
        "layout": "brats",
        "modalities": list(MODALITIES),
    }


def test_selection_deterministic_for_a_seed(source, tmp_path):
    a = import_brats(source, tmp_path / "a", labeled_fraction=0.5, seed=11, progress=False)
    b = import_brats(source, tmp_path / "b", labeled_fraction=0.5, seed=11, progress=False)
    assert a.labeled == b.labeled
    for name in all_files(tmp_path / "a") - {MANIFEST_NAME}:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    ids = [f"c{k}" for k in range(20)]
    picks = {frozenset(select_labeled(ids, 0.3, s)) for s in range(5)}
    assert all(len(p) == 6 for p in picks) and len(picks) > 1  # 30 % of 20, varies with the seed
    assert select_labeled(ids, 0.0, 0) == set() and select_labeled(ids, 1.0, 0) == set(ids)
    with pytest.raises(ValueError, match="fraction"):
        select_labeled(ids, 1.5, 0)


def test_bad_cases_skipped_with_reason_and_nothing_written(tmp_path, capsys):
    src = tmp_path / "src"
    good = write_brats_case(src / "BraTS2021_00000", phantom(0))
    bad = {
        "BraTS2021_00001": "corrupt or truncated",
        "BraTS2021_00002": "missing modality t1",
        "BraTS2021_00003": "shape mismatch",
        "BraTS2021_00004": "affine mismatch",
        "BraTS2021_00005": "unexpected label values [3]",
        "BraTS2021_00006": "NaN/inf voxels",
    }
    folders = {c: write_brats_case(src / c, phantom(i + 1)) for i, c in enumerate(bad)}
    truncate(folders["BraTS2021_00001"] / "BraTS2021_00001_seg.nii.gz")
    (folders["BraTS2021_00002"] / "BraTS2021_00002_t1.nii.gz").unlink()
    case = phantom(3)
    save(folders["BraTS2021_00003"] / "BraTS2021_00003_t2.nii.gz", case.images["t2"][1:], case.affine)
    moved = phantom(4).affine.copy()
    moved[2, 3] += 1.0
    save(folders["BraTS2021_00004"] / "BraTS2021_00004_seg.nii.gz", phantom(4).seg, moved)
    seg = phantom(5).seg.copy()
    seg[seg == 4] = 3
    save(folders["BraTS2021_00005"] / "BraTS2021_00005_seg.nii.gz", seg, phantom(5).affine)
    t1 = phantom(6).images["t1"].astype(np.float32)
    t1[1, 2, 3] = np.nan
    save(folders["BraTS2021_00006"] / "BraTS2021_00006_t1.nii.gz", t1, phantom(6).affine)

    studies = tmp_path / "studies"
    assert main(["import-brats", str(src), str(studies), "--labeled-fraction", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert all_files(studies) == {
        MANIFEST_NAME, f"{good.name}.nii.gz", f"modalities/{good.name}.nii.gz", f"labels/final/{good.name}.nii.gz"
    }
    manifest = read_manifest(studies)
    assert manifest["labeled"] == [good.name] and manifest["unlabeled"] == []
    assert sorted(manifest["skipped"]) == sorted(bad)
    for case_id, reason in bad.items():
        assert reason in manifest["skipped"][case_id]
        line = next(line for line in out.splitlines() if line.startswith(case_id))  # report table row
        assert reason in line


def test_existing_final_label_is_never_overwritten(source, tmp_path, capsys):
    studies = tmp_path / "studies"
    clinician = np.zeros(phantom(0).seg.shape, np.uint8)
    clinician[5:9, 5:9, 5:9] = 1
    final = write_nifti_atomic(studies / "labels" / "final" / "BraTS2021_00000.nii.gz", clinician, phantom(0).affine)
    before = final.read_bytes()
    assert main(["import-brats", str(source), str(studies), "--no-progress"]) == 0
    assert final.read_bytes() == before
    assert not (studies / "BraTS2021_00000.nii.gz").exists()  # refused case left untouched
    manifest = read_manifest(studies)
    assert "refusing to overwrite" in manifest["skipped"]["BraTS2021_00000"]
    assert manifest["labeled"] == [f"BraTS2021_{k:05d}" for k in (1, 2, 3)]
    assert "BraTS2021_00000" in capsys.readouterr().out
    # a second import refuses every case that now has a final label, and keeps the manifest lists
    import_brats(source, studies, progress=False)
    assert read_manifest(studies)["labeled"] == manifest["labeled"]


def test_msd_import_and_cli_failure(tmp_path, capsys):
    write_msd_task01(tmp_path / "msd", train=2, test=1)
    report = import_brats(tmp_path / "msd", tmp_path / "studies", labeled_fraction=1.0, progress=False)
    assert report.layout == "msd" and sorted(report.labeled) == ["BRATS_001", "BRATS_002"]
    assert report.unlabeled == ["BRATS_003"]  # imagesTs: no label
    label, _ = read_nifti(tmp_path / "studies" / "labels" / "final" / "BRATS_001.nii.gz")
    np.testing.assert_array_equal(label, phantom(0).seg)  # MSD numbering converted
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no BraTS cases found"):
        main(["import-brats", str(tmp_path / "empty"), str(tmp_path / "s2")])


def test_datalists_final_wins_over_stale_pseudo(source, tmp_path):
    studies = tmp_path / "studies"
    report = import_brats(source, studies, labeled_fraction=0.5, seed=0, progress=False)
    labeled, unlabeled = sorted(report.labeled), sorted(report.unlabeled)
    affine = phantom(0).affine
    seg = phantom(0).seg
    for case_id in [labeled[0], unlabeled[0]]:  # a stale pseudo-label next to a final one, and a fresh one
        write_nifti_atomic(studies / "labels" / "pseudo" / f"{case_id}.nii.gz", seg, affine)
    items = studies_datalist(studies)
    by_case = {item["case"]: item for item in items}
    assert sorted(by_case) == sorted([*labeled, unlabeled[0]])
    assert by_case[labeled[0]]["source"] == "final" and "/labels/final/" in by_case[labeled[0]]["label"]
    assert by_case[unlabeled[0]]["source"] == "pseudo"
    assert by_case[unlabeled[0]]["image"] == str(studies / "modalities" / f"{unlabeled[0]}.nii.gz")
    assert [i["case"] for i in studies_datalist(studies, sources=("final",))] == labeled
    assert [i["case"] for i in studies_datalist(studies, sources=("pseudo",))] == [unlabeled[0]]
    pool = unlabeled_datalist(studies)
    assert [p["case"] for p in pool] == unlabeled
    assert pool[0]["display"] == str(studies / f"{unlabeled[0]}.nii.gz")


def test_paths_and_manifest_errors(tmp_path):
    assert modalities_path(tmp_path / "c.nii.gz") == tmp_path / "modalities" / "c.nii.gz"
    assert modalities_path("s/c.nii") == type(tmp_path)("s/modalities/c.nii")
    with pytest.raises(ValueError):
        modalities_path(tmp_path / "c.png")
    with pytest.raises(FileNotFoundError, match="import-brats"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_manifest(tmp_path)


def test_monailabel_datastore_lists_one_image_per_case(source, tmp_path):
    from monailabel.datastore.local import LocalDatastore

    studies = tmp_path / "studies"
    report = import_brats(source, studies, labeled_fraction=0.5, seed=1, progress=False)
    datastore = LocalDatastore(str(studies), extensions=("*.nii.gz", "*.nii"), auto_reload=False)
    assert sorted(datastore.list_images()) == sorted(report.labeled + report.unlabeled)
    assert sorted(datastore.get_labeled_images()) == sorted(report.labeled)
    assert sorted(datastore.get_unlabeled_images()) == sorted(report.unlabeled)
    for case_id in report.labeled:
        assert datastore.get_labels_by_image_id(case_id) == {"final": case_id}
        assert datastore.get_label_uri(case_id, "final") == str((studies / "labels/final" / f"{case_id}.nii.gz").resolve())
    assert {d["image"] for d in datastore.datalist()} == {str((studies / f"{c}.nii.gz").resolve()) for c in report.labeled}
    json.loads((studies / "datastore_v2.json").read_text())  # the datastore wrote its own index


def test_labelled_only_leaves_out_msd_imagests(tmp_path, capsys):
    write_msd_task01(tmp_path / "msd", train=2, test=1)
    report = import_brats(tmp_path / "msd", tmp_path / "studies", labeled_fraction=1.0, progress=False,
                          labelled_only=True)
    assert sorted(report.labeled) == ["BRATS_001", "BRATS_002"] and report.unlabeled == []
    assert report.left_out == ["BRATS_003"] and "left out 1 source case(s) without a label" in report.format()
    assert not (tmp_path / "studies" / "BRATS_003.nii.gz").exists()
    assert "BRATS_003" not in json.dumps(read_manifest(tmp_path / "studies"))
    # the command-line flag does the same
    assert main(["import-brats", str(tmp_path / "msd"), str(tmp_path / "cli"), "--labelled-only", "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "cli").glob("*.nii.gz")) == ["BRATS_001.nii.gz", "BRATS_002.nii.gz"]


def test_imported_files_keep_the_source_header_codes_and_units(tmp_path):
    """A source written with qform code 2 (aligned), sform code 4 (MNI) and mm / msec units: the
    studies' image, modalities and final label keep all four, and the affine."""
    import nibabel as nib

    case = phantom(0)
    case_dir = tmp_path / "src" / "BraTS2021_00000"
    for name, volume in [*case.images.items(), ("seg", case.seg)]:
        img = nib.Nifti1Image(volume, case.affine)
        img.set_qform(case.affine, code=2)
        img.set_sform(case.affine, code=4)
        img.header.set_xyzt_units("mm", "msec")
        case_dir.mkdir(parents=True, exist_ok=True)
        nib.save(img, str(case_dir / f"BraTS2021_00000_{name}.nii.gz"))
    studies = tmp_path / "studies"
    import_brats(tmp_path / "src", studies, labeled_fraction=1.0, progress=False)
    for path in (studies / "BraTS2021_00000.nii.gz", studies / "modalities" / "BraTS2021_00000.nii.gz",
                 studies / "labels" / "final" / "BraTS2021_00000.nii.gz"):
        header = nib.load(str(path)).header
        assert (int(header["qform_code"]), int(header["sform_code"])) == (2, 4), path
        assert header.get_xyzt_units() == ("mm", "msec"), path
        np.testing.assert_allclose(nib.load(str(path)).affine, case.affine, atol=1e-5)
