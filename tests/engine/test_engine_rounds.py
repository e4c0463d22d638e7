"""Teacher–student rounds: the orchestration's contract (on a tiny real classifier), the split,
the CLI end to end (and its resume), clinician labels intact."""

from __future__ import annotations

import csv
import json
import shutil
from typing import Any

import numpy as np
import pytest

from robustlabel.cli import main as cli_main
from robustlabel.data.studies import studies_datalist, unlabeled_datalist
from robustlabel.engine.datalist import NoClinicianLabelsError
from robustlabel.engine.rounds import RoundsConfig, run_teacher_student, split_cases
from robustlabel.engine.teacher_student import Job, StudentSpec, TeacherStudentSteps, run_rounds

from engine_helpers import sha256_tree, tiny_config


# --------------------------------------------------------------------------- orchestration
CENTRES = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])


def _blobs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(n) % len(CENTRES)
    return CENTRES[labels] + rng.normal(0.0, 1.2, (n, 2)), labels


class CentroidSteps(TeacherStudentSteps[np.ndarray, np.ndarray, dict]):
    """A real (tiny) teacher–student task: a nearest-centroid classifier of three 2-D Gaussian
    blobs, 6 labelled points, a pool of 90 and 90 test points; every call is logged."""

    def __init__(self, records: dict[tuple[int, str], dict] | None = None) -> None:
        rng = np.random.default_rng(0)
        (self.x, self.y), (self.pool_x, self.pool_y), (self.test_x, self.test_y) = (_blobs(rng, n) for n in (6, 90, 90))
        self.records = dict(records or {})
        self.calls: list[tuple[Any, ...]] = []

    @staticmethod
    def predict(centroids: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.argmin(((x[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)

    def train(self, job: Job, pool: np.ndarray | None, init: np.ndarray | None) -> np.ndarray:
        self.calls.append(("train", job.round, job.name, pool is not None, init is not None))
        x, y = (self.x, self.y) if pool is None else (np.concatenate([self.x, self.pool_x]), np.concatenate([self.y, pool]))
        centroids = np.stack([x[y == k].mean(axis=0) for k in range(len(CENTRES))])
        return centroids if init is None else (centroids + init) / 2

    def predict_pool(self, teacher_job: Job, teacher: np.ndarray) -> np.ndarray:
        self.calls.append(("pool", teacher_job.round, teacher_job.name))
        return self.predict(teacher, self.pool_x)

    def evaluate(self, job: Job, model: np.ndarray) -> dict:
        self.calls.append(("evaluate", job.round, job.name))
        record = {"loss": job.loss, "params": job.params, "acc": float(np.mean(self.predict(model, self.test_x) == self.test_y))}
        self.records[(job.round, job.name)] = record
        return record

    def recorded(self, job: Job) -> dict | None:
        return self.records.get((job.round, job.name))


STUDENT_SPECS = [StudentSpec("ce", "ce", {}), StudentSpec("gce", "gce", {"q": 0.7})]


def test_orchestration_trains_the_teacher_labels_the_pool_once_and_trains_every_student():
    steps = CentroidSteps()
    seen = []
    outcomes = run_rounds(steps, STUDENT_SPECS, on_outcome=seen.append)
    assert steps.calls == [
        ("train", 0, "teacher", False, False), ("evaluate", 0, "teacher"), ("pool", 0, "teacher"),
        ("train", 1, "ce", True, False), ("evaluate", 1, "ce"), ("train", 1, "gce", True, False), ("evaluate", 1, "gce"),
    ]
    assert seen == outcomes and [(o.job.role, o.job.name, o.recorded) for o in outcomes] == [
        ("teacher", "teacher", False), ("student", "ce", False), ("student", "gce", False)]
    assert outcomes[0].job == Job.teacher() and outcomes[0].result["loss"] == "ce"
    assert outcomes[2].job.params == {"q": 0.7} and outcomes[2].result["params"] == {"q": 0.7}
    # the pool's pseudo-labels reached the students: they differ from the teacher trained on 6 points
    assert not np.allclose(outcomes[0].model, outcomes[1].model)
    assert all(0.0 <= o.result["acc"] <= 1.0 for o in outcomes)
    # init="teacher": every student starts from the teacher's model
    steps = CentroidSteps()
    run_rounds(steps, STUDENT_SPECS, init="teacher")
    assert [c[4] for c in steps.calls if c[0] == "train"] == [False, True, True]
    # no students: the teacher alone (e.g. an upper bound)
    steps = CentroidSteps()
    assert [o.job.name for o in run_rounds(steps, [])] == ["teacher"]
    assert steps.calls == [("train", 0, "teacher", False, False), ("evaluate", 0, "teacher")]


def test_orchestration_skips_recorded_jobs_and_reads_the_teacher_back_only_when_needed():
    first = CentroidSteps()
    run_rounds(first, STUDENT_SPECS)
    everything = CentroidSteps(first.records)
    outcomes = run_rounds(everything, STUDENT_SPECS)
    assert everything.calls == [] and all(o.recorded and o.model is None for o in outcomes)
    assert [o.result for o in outcomes] == [first.records[k] for k in [(0, "teacher"), (1, "ce"), (1, "gce")]]
    # one student unrecorded: the teacher is read back (trained, not evaluated), the pool labelled once
    partial = CentroidSteps({k: v for k, v in first.records.items() if k != (1, "gce")})
    outcomes = run_rounds(partial, STUDENT_SPECS)
    assert partial.calls == [("train", 0, "teacher", False, False), ("pool", 0, "teacher"),
                             ("train", 1, "gce", True, False), ("evaluate", 1, "gce")]
    assert [o.recorded for o in outcomes] == [True, True, False]
    assert partial.records[(1, "gce")] == first.records[(1, "gce")]  # the same (deterministic) result


def test_orchestration_rounds_chain_students_and_reject_bad_settings():
    steps = CentroidSteps()
    outcomes = run_rounds(steps, STUDENT_SPECS[1:], rounds=3)
    assert [c for c in steps.calls if c[0] == "pool"] == [("pool", 0, "teacher"), ("pool", 1, "gce"), ("pool", 2, "gce")]
    assert [(o.job.round, o.job.role) for o in outcomes] == [(0, "teacher"), (1, "student"), (2, "student"), (3, "student")]
    # a recorded student that teaches the next round is still trained (read back) for its model
    again = CentroidSteps({k: v for k, v in steps.records.items() if k != (2, "gce")})
    run_rounds(again, STUDENT_SPECS[1:], rounds=2)
    assert again.calls == [("train", 0, "teacher", False, False), ("pool", 0, "teacher"), ("train", 1, "gce", True, False),
                           ("pool", 1, "gce"), ("train", 2, "gce", True, False), ("evaluate", 2, "gce")]
    with pytest.raises(ValueError, match="exactly one student"):
        run_rounds(CentroidSteps(), STUDENT_SPECS, rounds=2)
    with pytest.raises(ValueError, match="rounds must be"):
        run_rounds(CentroidSteps(), STUDENT_SPECS, rounds=0)
    with pytest.raises(ValueError, match="init must be"):
        run_rounds(CentroidSteps(), STUDENT_SPECS, init="warm")
    with pytest.raises(ValueError, match="unique"):
        run_rounds(CentroidSteps(), [STUDENT_SPECS[0], STUDENT_SPECS[0]])


# --------------------------------------------------------------------------- rounds on a studies folder
def test_split_is_seeded_disjoint_and_sized():
    cases = [f"c{i:03d}" for i in range(285)]
    split = split_cases(cases, seed=1)
    assert [len(split[k]) for k in ("train", "val", "test")] == [199, 29, 57]  # paper: 200 / 28 / 57
    assert sorted(sum(split.values(), [])) == cases
    assert split == split_cases(list(reversed(cases)), seed=1)  # order of the input does not matter
    assert split != split_cases(cases, seed=2)
    assert {k: len(v) for k, v in split_cases(cases[:3]).items()} == {"train": 1, "val": 1, "test": 1}
    with pytest.raises(ValueError, match="at least 3 clinician-labelled cases"):
        split_cases(cases[:2])


TS_ARGS = ["--tiny", "--epochs", "1", "--batch-size", "2", "--val-interval", "1", "--sw-batch-size", "2",
           "--num-workers", "0", "--device", "cpu", "--no-progress"]


def test_teacher_student_cli_end_to_end_and_resume(studies, tmp_path, capsys):
    final_before = sha256_tree(studies / "labels" / "final")
    out = tmp_path / "ts"
    argv = ["teacher-student", "--studies", str(studies), "--out", str(out), "--loss", "gce", "--q", "0.7", *TS_ARGS]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "| 0 | teacher | ce | 1 | 0 |" in printed
    assert "| 1 | student | ce + gce(q=0.7) | 1 | 3 |" in printed

    split = json.loads((out / "split.json").read_text())
    final_cases = [i["case"] for i in studies_datalist(studies, sources=("final",))]
    assert sorted(sum(split.values(), [])) == sorted(final_cases)
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["role"] for r in rows] == ["teacher", "student"]
    for row in rows:
        for region in ("WT", "TC", "ET"):
            assert 0.0 <= float(row[f"dice_{region}_mean"]) <= 1.0
    results = json.loads((out / "results.json").read_text())
    assert [c["case"] for c in results["rounds"][0]["test_cases"]] == split["test"]
    assert results["config"]["train"]["pseudo_params"] == {"q": 0.7}
    assert (out / "results.md").read_text().startswith("| round | model |")

    # the student saw the pool's pseudo-labels, none of the held-out or validation cases
    pool = {i["case"] for i in unlabeled_datalist(studies)}
    assert {p.name[: -len(".nii.gz")] for p in (studies / "labels" / "pseudo").glob("*.nii.gz")} == pool
    student = json.loads((out / "round_1_student" / "history.jsonl").read_text().splitlines()[0])
    assert student["iterations"] == 2  # (1 final + 3 pseudo) / batch 2
    assert sha256_tree(studies / "labels" / "final") == final_before

    # a rerun resumes: nothing is retrained or relabelled, the results are the same
    checkpoints = {k: v for k, v in sha256_tree(out).items() if "tensorboard" not in k and "results" not in k}
    labels = sha256_tree(studies / "labels" / "pseudo")
    assert cli_main(argv) == 0
    assert capsys.readouterr().out == printed
    assert {k: v for k, v in sha256_tree(out).items() if k in checkpoints} == checkpoints
    assert sha256_tree(studies / "labels" / "pseudo") == labels
    assert sha256_tree(studies / "labels" / "final") == final_before


def test_rounds_need_clinician_labels(studies, tmp_path):
    config = RoundsConfig(train=tiny_config())
    final_dir = studies / "labels" / "final"
    for extra in sorted(final_dir.iterdir())[2:]:
        extra.unlink()
    with pytest.raises(ValueError, match="at least 3 clinician-labelled cases"):
        run_teacher_student(studies, tmp_path / "a", config, progress=False)
    shutil.rmtree(final_dir)
    with pytest.raises(NoClinicianLabelsError, match="no clinician labels"):
        run_teacher_student(studies, tmp_path / "b", config, progress=False)


def test_rounds_reject_a_bad_loss_before_any_work(studies, tmp_path):
    config = RoundsConfig(train=tiny_config(pseudo_loss="gce", pseudo_params={"beta": 1.0}))
    with pytest.raises(ValueError, match="does not take parameter"):
        run_teacher_student(studies, tmp_path / "out", config, progress=False)
    assert not (tmp_path / "out").exists()
