"""Protocol fidelity: the uncertainty that ranks misses first, the source-weighting modes and
their 1:1 sampler, student initialisation, checkpoint selection, header-preserving pool
labels and the public seams the paper scripts use."""

from __future__ import annotations

import csv
import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch

from robustlabel.cli import main as cli_main
from robustlabel.data.studies import studies_datalist, unlabeled_datalist
from robustlabel.engine.checkpoint import load_network
from robustlabel.engine.config import TrainConfig, precision_settings, precision_used
from robustlabel.engine.pseudo_label import (
    SKIPPED_CLINICIAN,
    WRITTEN,
    PseudoLabeller,
    StudiesSink,
    student_items,
)
from robustlabel.engine.sampler import SourceBalancedSampler
from robustlabel.engine.trainer import train
from robustlabel.losses import SourceAwareLoss, get_loss
from robustlabel.metrics.uncertainty import rank_by_uncertainty, summarise_prediction

from engine_helpers import tiny_config


# --------------------------------------------------------------------------- uncertainty
def _probs(per_voxel: list[float], shape=(6, 6, 6)) -> torch.Tensor:
    return torch.tensor(per_voxel).view(-1, 1, 1, 1).expand(-1, *shape).clone()


def test_a_complete_miss_is_maximally_uncertain_and_ranks_first():
    """The issue's numbers: a teacher that misses the tumour (confident background, p0 = 0.97)
    scored 0.12 by the brain's mean entropy; an honestly uncertain tumour scores about 0.84."""
    image = torch.ones(4, 6, 6, 6)  # every voxel is brain
    _, _, miss = summarise_prediction(_probs([0.97, 0.01, 0.01, 0.01]), image)
    unsure = _probs([0.97, 0.01, 0.01, 0.01])
    unsure[:, 2:4, 2:4, 2:4] = torch.tensor([0.25, 0.35, 0.2, 0.2]).view(4, 1, 1, 1)  # an uncertain tumour
    _, _, found = summarise_prediction(unsure, image)
    brain_entropy = miss["confidence"]["brain"]["mean_entropy"] / math.log(4)
    assert brain_entropy == pytest.approx(0.12, abs=0.005)  # what the old fallback ranked by
    assert miss["uncertainty"] == 1.0 and miss["uncertainty_region"] == "empty"
    assert found["uncertainty"] == pytest.approx(0.97, abs=0.01) and found["uncertainty_region"] == "tumour"
    ranked = rank_by_uncertainty({"found": found, "miss": miss})
    assert [case for case, _ in ranked] == ["miss", "found"]


# --------------------------------------------------------------------------- modes
def _batch():
    torch.manual_seed(0)
    logits = torch.randn(4, 4, 3, 3, 3)
    target = torch.randint(0, 4, (4, 3, 3, 3))
    is_pseudo = torch.tensor([False, True, True, True])
    return logits, target, is_pseudo


def test_source_modes_weigh_the_sources_as_documented():
    logits, target, is_pseudo = _batch()
    ce, gce = get_loss("ce", reduction="none"), get_loss("gce", q=0.7, reduction="none")
    clin = ce(logits[~is_pseudo], target[~is_pseudo])
    pseudo = gce(logits[is_pseudo], target[is_pseudo])
    union = SourceAwareLoss(get_loss("ce"), get_loss("gce", q=0.7), pseudo_weight=0.5)
    # union: one mean over every voxel; clinician voxels are 1/4 of the batch here
    assert union(logits, target, is_pseudo) == pytest.approx(float((clin.sum() + 0.5 * pseudo.sum()) / (4 * 27)))
    per_source = SourceAwareLoss(get_loss("ce"), get_loss("gce", q=0.7), pseudo_weight=0.5, mode="per_source")
    assert per_source(logits, target, is_pseudo) == pytest.approx(float(clin.mean() + 0.5 * pseudo.mean()))
    robust_all = SourceAwareLoss(get_loss("ce"), get_loss("gce", q=0.7), pseudo_weight=0.5, mode="robust_all")
    assert robust_all(logits, target, is_pseudo) == pytest.approx(float(gce(logits, target).mean()))
    # one source only: per_source is that source's mean
    only = torch.zeros(4, dtype=torch.bool)
    assert per_source(logits, target, only) == pytest.approx(float(ce(logits, target).mean()))
    with pytest.raises(ValueError, match="mixed"):
        SourceAwareLoss(mode="mixed")
    with pytest.raises(ValueError, match="mode"):
        TrainConfig(mode="mixed")


def test_balanced_sampler_pairs_sources_deterministically_per_epoch():
    flags = [False] * 3 + [True] * 7  # 3 clinician, 7 pseudo items
    sampler = SourceBalancedSampler(flags, seed=5)
    first = list(sampler)
    assert len(first) == len(sampler) == 14
    assert [flags[i] for i in first] == [False, True] * 7  # every pair is (clinician, pseudo)
    assert sorted(first[1::2]) == list(range(3, 10))  # the larger source once per epoch
    assert set(first[0::2]) == {0, 1, 2}  # the smaller one cycled
    assert list(SourceBalancedSampler(flags, seed=5)) == first  # a function of (seed, epoch) only
    sampler.set_epoch(1)
    assert list(sampler) != first and sampler.pairs() == [tuple(p) for p in zip(list(sampler)[0::2], list(sampler)[1::2])]
    one_source = SourceBalancedSampler([True] * 4, seed=0)
    assert not one_source.balanced and sorted(one_source) == [0, 1, 2, 3] and one_source.pairs() == []
    batches = list(torch.utils.data.DataLoader(list(range(10)), batch_size=4, sampler=sampler))
    for batch in batches:
        sources = [flags[int(i)] for i in batch]
        assert sources.count(True) == sources.count(False)  # 1:1 in every batch of even size
    with pytest.raises(ValueError, match="at least one"):
        SourceBalancedSampler([])


def test_per_source_training_draws_balanced_epochs_and_init_teacher_starts_from_it(studies, teacher, tmp_path):
    final = studies_datalist(studies, sources=("final",))
    pool = unlabeled_datalist(studies)
    sink = StudiesSink(studies)
    labelled = PseudoLabeller(teacher.best_checkpoint, device="cpu", num_workers=0).label(pool, sink, progress=False)
    pseudo = student_items(pool, labelled, sink)
    assert [i["case"] for i in pseudo] == [i["case"] for i in pool] and all(i["source"] == "pseudo" for i in pseudo)
    items = final[:1] + pseudo  # 1 clinician + 3 pseudo items
    union = train(items, [], tmp_path / "union", tiny_config(), progress=False)
    balanced = train(items, [], tmp_path / "per_source", tiny_config(mode="per_source"), progress=False)
    assert union.history[0]["iterations"] == 2  # 4 items / batch 2
    assert balanced.history[0]["iterations"] == 3  # 3 (clinician, pseudo) pairs = 6 items / batch 2

    # a student initialised from its teacher starts from the teacher's weights (lr ~ 0: it stays there)
    frozen = dict(lr=1e-12)
    from_teacher = train(items, [], tmp_path / "init", tiny_config(init_checkpoint=str(teacher.best_checkpoint),
                                                                   **frozen), progress=False)
    scratch = train(items, [], tmp_path / "scratch", tiny_config(seed=7, **frozen), progress=False)
    teacher_net, _ = load_network(teacher.best_checkpoint)
    student_net, config = load_network(from_teacher.checkpoint("last"))
    scratch_net, _ = load_network(scratch.checkpoint("last"))
    assert config.init_checkpoint == str(teacher.best_checkpoint)
    weights = [dict(net.named_parameters()) for net in (teacher_net, student_net, scratch_net)]  # not BN statistics
    for name, t in weights[0].items():
        torch.testing.assert_close(weights[1][name], t, atol=1e-6, rtol=0, msg=name)
    assert any(not torch.allclose(weights[2][name], t) for name, t in weights[0].items())
    assert from_teacher.checkpoint("best") == from_teacher.best_checkpoint
    with pytest.raises(ValueError, match="select"):
        from_teacher.checkpoint("median")


def test_precision_choices_map_to_autocast_settings():
    assert precision_settings("fp32") == {"amp": False, "amp_dtype": "auto"}
    assert precision_settings("bf16") == {"amp": True, "amp_dtype": "bf16"}
    assert precision_used(True, "bf16", "cpu") == "fp32"  # CPU never autocasts
    with pytest.raises(ValueError, match="precision"):
        precision_settings("int8")


# --------------------------------------------------------------------------- sinks and seams
def test_pool_labels_keep_the_source_header_and_protected_cases_are_skipped(studies, teacher):
    pool = unlabeled_datalist(studies)
    source = nib.load(pool[1]["image"])
    recoded = nib.Nifti1Image(np.asarray(source.dataobj), source.affine)
    recoded.set_qform(source.affine, code=2)
    recoded.set_sform(source.affine, code=4)
    recoded.header.set_xyzt_units("mm", "msec")
    nib.save(recoded, pool[1]["image"])

    hidden = {pool[0]["case"]}  # e.g. a case whose true label an experiment hides
    sink = StudiesSink(studies, protected=hidden.__contains__)
    labeller = PseudoLabeller(teacher.best_checkpoint, device="cpu", num_workers=0, save_confidence=True)
    results = labeller.label(pool, sink, progress=False)
    assert [r.status for r in results] == [SKIPPED_CLINICIAN, WRITTEN, WRITTEN]
    assert [i["case"] for i in student_items(pool, results, sink)] == [i["case"] for i in pool[1:]]
    with pytest.raises(RuntimeError, match=pool[0]["case"]):
        student_items(pool, results, sink, strict=True)
    with pytest.raises(ValueError, match="same cases"):
        student_items(pool[1:], results, sink)

    info = json.loads(sink.sidecar_path(pool[1]["case"]).read_text())
    assert info["source_header"] == {"qform_code": 2, "sform_code": 4, "xyz_units": "mm", "t_units": "msec"}
    for path in (sink.label_path(pool[1]["case"]), info["confidence_map"]["path"]):
        header = nib.load(str(path)).header
        assert (int(header["qform_code"]), int(header["sform_code"])) == (2, 4), path
        assert header.get_xyzt_units() == ("mm", "msec")
        np.testing.assert_allclose(nib.load(str(path)).affine, source.affine, atol=1e-5)


# --------------------------------------------------------------------------- rounds / CLI
def test_teacher_student_cli_takes_every_protocol_choice(studies, tmp_path, capsys):
    out = tmp_path / "ts"
    argv = ["teacher-student", "--studies", str(studies), "--out", str(out), "--tiny", "--epochs", "1",
            "--batch-size", "2", "--val-interval", "1", "--sw-batch-size", "2", "--num-workers", "0",
            "--device", "cpu", "--no-progress", "--select", "last", "--mode", "per_source", "--init", "teacher",
            "--precision", "fp32"]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "Scored checkpoint: last; source weighting (mode): per_source; student init: teacher; precision: fp32" \
        in printed
    assert "(n=1)" in printed and "373.13 mm" in printed  # n beside every mean; the HD95 convention
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["select"] for r in rows] == ["last", "last"] and all(r["checkpoint"].endswith("last.pt") for r in rows)
    assert all(r["dice_WT_n"] == "1" for r in rows)
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["select"] == "last" and results["config"]["train"]["mode"] == "per_source"
    student = json.loads((out / "round_1_student" / "history.jsonl").read_text().splitlines()[0])
    assert student["iterations"] == 3  # 1 final + 3 pseudo items -> 3 balanced pairs -> 3 batches of 2
    teacher_ckpt = out / "round_0_teacher" / "last.pt"
    record = torch.load(out / "round_1_student" / "last.pt", weights_only=True, map_location="cpu")["record"]
    assert record["config"]["init_checkpoint"] == str(teacher_ckpt)
    with pytest.raises(SystemExit, match="contradicts"):
        cli_main([*argv, "--no-amp", "--precision", "bf16"])
