"""Pool pseudo-labeller: geometry, provenance, resume skip, clinician-label protection, errors."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from robustlabel.cli import main as cli_main
from robustlabel.data.studies import studies_datalist, unlabeled_datalist
from robustlabel.engine.checkpoint import sha256_file
from robustlabel.engine.datalist import UnreadableCaseError
from robustlabel.engine.pseudo_label import (
    SKIPPED_CLINICIAN,
    SKIPPED_SAME_TEACHER,
    WRITTEN,
    ProtectedLabelError,
    PseudoLabeller,
    PseudoLabelSink,
    StudiesSink,
    pseudo_label_studies,
    shape_batches,
    write_pseudo_label,
)
from robustlabel.metrics.uncertainty import rank_by_uncertainty, summarise_prediction

from engine_helpers import sha256_tree

OPTIONS = dict(device="cpu", num_workers=0, batch_size=2, progress=False)


def test_pseudo_labels_keep_source_geometry_and_record_provenance(studies, teacher):
    final_before = sha256_tree(studies / "labels" / "final")
    results = pseudo_label_studies(studies, teacher.best_checkpoint, save_confidence=True, **OPTIONS)

    pool = unlabeled_datalist(studies)
    assert [r.case for r in results] == [item["case"] for item in pool] and len(pool) == 3
    assert all(r.status == WRITTEN for r in results)
    for item, result in zip(pool, results):
        source = nib.load(item["image"])
        label = nib.load(studies / "labels" / "pseudo" / f"{item['case']}.nii.gz")
        assert label.shape == source.shape[:3]
        np.testing.assert_array_equal(label.affine, source.affine)
        np.testing.assert_array_equal(label.affine, nib.load(item["display"]).affine)
        values = np.asarray(label.dataobj)
        assert values.dtype == np.uint8 and set(np.unique(values)) <= {0, 1, 2, 4}

        info = json.loads((studies / "labels" / "pseudo" / f"{item['case']}.json").read_text())
        assert info == result.info | {"confidence_map": info["confidence_map"]}
        assert info["teacher"]["sha256"] == sha256_file(teacher.best_checkpoint)
        assert datetime.fromisoformat(info["created"]).tzinfo is not None
        counts = {int(k): v for k, v in info["voxel_counts"].items()}
        assert counts == {v: int((values == v).sum()) for v in (0, 1, 2, 4)}
        brain = (np.asarray(source.dataobj) != 0).any(axis=-1)
        assert info["confidence"]["brain"]["voxels"] == int(brain.sum())
        assert info["confidence"]["tumour"]["voxels"] == int((values != 0).sum())
        for region in ("brain", "tumour"):
            stats = info["confidence"][region]
            if stats["voxels"]:
                assert 0.25 <= stats["mean_max_prob"] <= 1.0  # 4 classes: max prob >= 1/4
                assert 0.0 <= stats["mean_entropy"] <= np.log(4) + 1e-6
        assert 0.0 <= result.uncertainty <= 1.0

        confidence = nib.load(info["confidence_map"]["path"])
        assert confidence.shape == label.shape and confidence.get_data_dtype() == np.uint8
        assert np.asarray(confidence.dataobj).min() >= round(255 / 4) - 1

    assert sha256_tree(studies / "labels" / "final") == final_before
    ranked = rank_by_uncertainty(StudiesSink(studies).all_info())
    assert [u for _, u in ranked] == sorted((r.uncertainty for r in results), reverse=True)


def test_rerun_skips_same_teacher_and_relabels_for_another(studies, teacher):
    first = pseudo_label_studies(studies, teacher.best_checkpoint, **OPTIONS)
    assert {r.status for r in first} == {WRITTEN}
    pseudo = studies / "labels" / "pseudo"
    before = sha256_tree(pseudo)

    again = pseudo_label_studies(studies, teacher.best_checkpoint, **OPTIONS)
    assert {r.status for r in again} == {SKIPPED_SAME_TEACHER}
    assert sha256_tree(pseudo) == before  # nothing rewritten

    # last.pt holds the same weights but is another file: another teacher hash → relabel
    other = pseudo_label_studies(studies, teacher.last_checkpoint, **OPTIONS)
    assert {r.status for r in other} == {WRITTEN}
    sidecar = json.loads((pseudo / f"{other[0].case}.json").read_text())
    assert sidecar["teacher"]["sha256"] == sha256_file(teacher.last_checkpoint) != sha256_file(teacher.best_checkpoint)

    # a sidecar without its label is not a finished case
    (pseudo / f"{other[0].case}.nii.gz").unlink()
    rerun = pseudo_label_studies(studies, teacher.last_checkpoint, **OPTIONS)
    assert [r.status for r in rerun] == [WRITTEN] + [SKIPPED_SAME_TEACHER] * 2


def test_clinician_labels_are_never_written(studies, teacher):
    final_dir = studies / "labels" / "final"
    before = sha256_tree(final_dir)
    final_items = studies_datalist(studies, sources=("final",))

    # 1. the writer refuses any path in a final folder, and a sink cannot point there
    with pytest.raises(ProtectedLabelError):
        write_pseudo_label(final_dir / "new_case.nii.gz", np.zeros((4, 4, 4), np.uint8), np.eye(4))
    with pytest.raises(ProtectedLabelError):
        write_pseudo_label(final_dir / ".." / "final" / f"{final_items[0]['case']}.nii.gz", np.zeros((4, 4, 4), np.uint8), np.eye(4))
    with pytest.raises(ProtectedLabelError):
        StudiesSink(studies, label_dir=final_dir)
    assert not (final_dir / "new_case.nii.gz").exists()

    # 2. cases with a final label are skipped even when handed to the labeller explicitly
    labeller = PseudoLabeller(teacher.best_checkpoint, device="cpu", num_workers=0)
    mixed = [{"image": i["image"], "case": i["case"]} for i in final_items] + unlabeled_datalist(studies)[:1]
    results = labeller.label(mixed, StudiesSink(studies), progress=False)
    assert [r.status for r in results] == [SKIPPED_CLINICIAN] * 3 + [WRITTEN]
    assert not any((studies / "labels" / "pseudo" / f"{i['case']}.nii.gz").exists() for i in final_items)

    # 3. a clinician label appearing after inference started still wins at write time
    late = unlabeled_datalist(studies)[1]
    shutil.copy(final_dir / f"{final_items[0]['case']}.nii.gz", final_dir / f"{late['case']}.nii.gz")
    before[f"{late['case']}.nii.gz"] = sha256_tree(final_dir)[f"{late['case']}.nii.gz"]
    sink = StudiesSink(studies)
    assert sink.write(late["case"], np.zeros((4, 4, 4), np.uint8), np.eye(4), {}, None) is None
    assert not sink.label_path(late["case"]).exists()

    assert sha256_tree(final_dir) == before


class MemorySink:
    """A sink that keeps results in memory, as a datastore-backed sink would hand them on."""

    def __init__(self, final_cases: set[str]) -> None:
        self.final_cases, self.stored = final_cases, {}

    def has_clinician_label(self, case):
        return case in self.final_cases

    def existing_teacher(self, case):
        return self.stored.get(case, {}).get("info", {}).get("teacher", {}).get("sha256")

    def write(self, case, label, affine, info, confidence):
        self.stored[case] = {"label": label, "affine": affine, "info": info}
        return f"memory://{case}"


def test_custom_sink_is_pluggable(studies, teacher):
    sink = MemorySink(final_cases=set())
    assert isinstance(sink, PseudoLabelSink)
    pool = unlabeled_datalist(studies)
    results = PseudoLabeller(teacher.best_checkpoint, device="cpu", num_workers=0).label(pool, sink, progress=False)
    assert [r.location for r in results] == [f"memory://{i['case']}" for i in pool]
    assert sink.stored[pool[0]["case"]]["label"].shape == nib.load(pool[0]["image"]).shape[:3]
    assert not (studies / "labels" / "pseudo").exists()


def test_unreadable_pool_case_names_the_file(studies, teacher):
    corrupt = Path(unlabeled_datalist(studies)[0]["image"])
    data = corrupt.read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableCaseError, match=str(corrupt)):
        pseudo_label_studies(studies, teacher.best_checkpoint, **OPTIONS)


def test_bad_checkpoint_is_a_clear_error(studies, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        PseudoLabeller(junk, device="cpu")
    with pytest.raises(ValueError, match="does not exist"):
        PseudoLabeller(tmp_path / "missing.pt", device="cpu")


def test_shape_batches_groups_equal_shapes():
    shapes = [(32, 32, 32), (40, 32, 32), (32, 32, 32), (32, 32, 32), (40, 32, 32)]
    assert shape_batches(shapes, 2) == [[0, 2], [3], [1, 4]]


def test_cli_pseudo_label(studies, teacher, capsys):
    assert cli_main(["pseudo-label", "--studies", str(studies), "--checkpoint", str(teacher.best_checkpoint),
                     "--device", "cpu", "--num-workers", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "3 written" in out and "most uncertain" in out
    assert len(list((studies / "labels" / "pseudo").glob("*.nii.gz"))) == 3


class FailingSink(MemorySink):
    """Stores the first case, then every write fails (e.g. a full disk)."""

    def write(self, case, label, affine, info, confidence):
        if self.stored:
            raise OSError(f"no space left writing {case}")
        return super().write(case, label, affine, info, confidence)


def test_background_writer_surfaces_errors_and_rechecks_final(studies, teacher):
    pool = unlabeled_datalist(studies)
    labeller = PseudoLabeller(teacher.best_checkpoint, device="cpu", num_workers=0, batch_size=1)
    sink = FailingSink(final_cases=set())
    with pytest.raises(OSError, match="no space left writing"):
        labeller.label(pool, sink, progress=False)
    assert list(sink.stored) == [pool[0]["case"]]

    # a final label that appears after the pre-check is honoured by the writer thread
    late = MemorySink(final_cases=set())
    seen = []
    results = labeller.label(pool, late, progress=False, callback=lambda r: (seen.append(r.case), late.final_cases.add(pool[-1]["case"])))
    assert [r.status for r in results] in ([WRITTEN, WRITTEN, SKIPPED_CLINICIAN], [WRITTEN] * 3)
    assert seen == [i["case"] for i in pool]  # callbacks in input order, on the caller's thread


def test_channels_last_changes_rounding_only_and_contiguous_is_exact(studies, teacher):
    pool = unlabeled_datalist(studies)[:2]
    # float32 for both (amp=False: no bf16 on the CPU), so that only the layout differs
    fast = PseudoLabeller(teacher.best_checkpoint, device="cpu", num_workers=0, channels_last=True, amp=False)
    exact = PseudoLabeller(teacher.best_checkpoint, device="cpu", num_workers=0, channels_last=False, amp=False)
    kernels = lambda labeller: [p for p in labeller.network.parameters() if p.dim() == 5]  # noqa: E731
    assert all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in kernels(fast))
    assert all(p.is_contiguous() for p in kernels(exact))
    fast_sink, exact_sink = MemorySink(set()), MemorySink(set())
    fast.label(pool, fast_sink, progress=False)
    exact.label(pool, exact_sink, progress=False)

    # reference: the shared whole-volume prediction with the network as stored (contiguous)
    from robustlabel.data.transforms import infer_transforms
    from robustlabel.engine.checkpoint import network_from_checkpoint, read_checkpoint
    from robustlabel.engine.inference import predict_probabilities
    network, _ = network_from_checkpoint(read_checkpoint(teacher.best_checkpoint, "cpu"), "cpu")
    for item in pool:
        image = infer_transforms()({"image": item["image"]})["image"]
        probs = predict_probabilities(network, image[None], exact.inferer)
        reference, _, stats = summarise_prediction(probs[0], image)
        np.testing.assert_array_equal(exact_sink.stored[item["case"]]["label"], reference)
        assert exact_sink.stored[item["case"]]["info"]["uncertainty"] == stats["uncertainty"]
        agree = (fast_sink.stored[item["case"]]["label"] == reference).mean()
        assert agree > 0.999
        assert fast_sink.stored[item["case"]]["info"]["uncertainty"] == pytest.approx(stats["uncertainty"], rel=1e-3)
