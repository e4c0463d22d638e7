"""Writers of small files in the exact public BraTS layouts, for the reader/import tests.

They use nibabel directly (not robustlabel's writer), so the readers are tested against
files as nibabel – and the public archives – store them.  Images come from the synthetic
phantom generator at a tiny shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from robustlabel.data.synthetic import SyntheticCase, make_synthetic_case

SHAPE = (32, 32, 24)
#: BraTS 2023 file tag of each modality
TAGS_2023 = {"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w"}
#: MSD channel order as in the official dataset.json
MSD_MODALITY = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
MSD_ORDER = ("flair", "t1", "t1ce", "t2")
#: BraTS value -> MSD value (inverse of the import remap)
BRATS_TO_MSD = {0: 0, 1: 2, 2: 1, 4: 3}


def phantom(index: int, shape: tuple[int, int, int] = SHAPE) -> SyntheticCase:
    return make_synthetic_case(shape, np.random.default_rng([1234, index]))


def save(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def write_brats_case(case_dir: Path, case: SyntheticCase, suffix: str = ".nii.gz", label: bool = True) -> Path:
    """``case_dir/<name>_{flair,t1,t1ce,t2,seg}<suffix>`` (BraTS 2018–2021)."""
    name = case_dir.name
    for modality, volume in case.images.items():
        save(case_dir / f"{name}_{modality}{suffix}", volume, case.affine)
    if label:
        save(case_dir / f"{name}_seg{suffix}", case.seg, case.affine)
    return case_dir


def write_brats2018_tree(root: Path, hgg: int = 2, lgg: int = 1) -> list[str]:
    """``root/HGG/Brats18_<inst>_<n>_1/...`` and ``root/LGG/...``; returns the case ids."""
    ids = []
    for grade, count, inst in (("HGG", hgg, "CBICA_A"), ("LGG", lgg, "TCIA10_B")):
        for k in range(count):
            case_id = f"Brats18_{inst}{k:02d}_1"
            write_brats_case(root / grade / case_id, phantom(len(ids)))
            ids.append(case_id)
    return ids


def write_brats2021_tree(root: Path, count: int = 3, suffix: str = ".nii.gz") -> list[str]:
    """``root/BraTS2021_0000k/BraTS2021_0000k_{...}<suffix>`` (flat tree)."""
    ids = [f"BraTS2021_{k:05d}" for k in range(count)]
    for k, case_id in enumerate(ids):
        write_brats_case(root / case_id, phantom(k), suffix=suffix)
    return ids


def write_brats2023_tree(root: Path, count: int = 2) -> list[str]:
    """``root/BraTS-GLI-0000k-000/BraTS-GLI-0000k-000-{t2f,t1n,t1c,t2w,seg}.nii.gz`` (ET = 3)."""
    ids = [f"BraTS-GLI-{k:05d}-000" for k in range(count)]
    for k, case_id in enumerate(ids):
        case = phantom(k)
        for modality, volume in case.images.items():
            save(root / case_id / f"{case_id}-{TAGS_2023[modality]}.nii.gz", volume, case.affine)
        seg = np.where(case.seg == 4, 3, case.seg).astype(np.uint8)
        save(root / case_id / f"{case_id}-seg.nii.gz", seg, case.affine)
    return ids


def write_msd_task01(root: Path, train: int = 2, test: int = 1) -> list[str]:
    """MSD Task01_BrainTumour: dataset.json, 4-D ``imagesTr``/``imagesTs``, MSD-numbered
    ``labelsTr`` and the macOS ``._`` junk files of the official archive."""
    training, testing, ids = [], [], []
    for k in range(train + test):
        case_id = f"BRATS_{k + 1:03d}"
        case = phantom(k)
        image = np.stack([case.images[m] for m in MSD_ORDER], axis=-1).astype(np.float32)
        folder = "imagesTr" if k < train else "imagesTs"
        save(root / folder / f"{case_id}.nii.gz", image, case.affine)
        (root / folder / f"._{case_id}.nii.gz").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
        if k < train:
            msd_label = np.zeros_like(case.seg)
            for brats_value, msd_value in BRATS_TO_MSD.items():
                msd_label[case.seg == brats_value] = msd_value
            save(root / "labelsTr" / f"{case_id}.nii.gz", msd_label, case.affine)
            training.append({"image": f"./imagesTr/{case_id}.nii.gz", "label": f"./labelsTr/{case_id}.nii.gz"})
        else:
            testing.append(f"./imagesTs/{case_id}.nii.gz")
        ids.append(case_id)
    dataset = {
        "name": "BRATS",
        "tensorImageSize": "4D",
        "modality": MSD_MODALITY,
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        "numTraining": train,
        "numTest": test,
        "training": training,
        "test": testing,
    }
    (root / "dataset.json").write_text(json.dumps(dataset, indent=4))
    return ids


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file to ``keep`` of its bytes (a truncated download)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
