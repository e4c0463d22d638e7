"""Pool pseudo-labelling sharded over 2 real processes (torchrun, gloo, 127.0.0.1).

* a 2-rank ``robustlabel pseudo-label`` writes exactly the single-process labels, voxel for voxel;
* ``kill -9`` of rank 1 mid-run: torchrun tears the job down (no rank left running, no hang),
  no label is half-written, and a rerun labels only the missing cases: nothing lost, nothing
  labelled twice.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import psutil
import pytest
import torch

from robustlabel.data.studies import import_brats, unlabeled_datalist
from robustlabel.data.synthetic import write_synthetic_brats
from robustlabel.engine.distributed import free_port, shard, DistContext
from robustlabel.engine.pseudo_label import pseudo_label_studies

TORCHRUN = Path(sys.executable).with_name("torchrun")
POOL_CASES = 16
#: a torchrun job of 2 ranks that does not end within this many seconds counts as hung
JOB_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def pool_template(tmp_path_factory) -> Path:
    """A studies folder with 2 clinician-labelled and 16 unlabelled 32³ cases (read-only template)."""
    root = tmp_path_factory.mktemp("dist_pool")
    write_synthetic_brats(root / "syn", cases=POOL_CASES + 2, shape=(32, 32, 32), seed=1, progress=False)
    studies = root / "studies"
    report = import_brats(root / "syn", studies, labeled_fraction=2 / (POOL_CASES + 2), seed=0, progress=False)
    assert len(report.unlabeled) == POOL_CASES
    return studies


@pytest.fixture(scope="module")
def reference(pool_template, teacher, tmp_path_factory) -> dict[str, np.ndarray]:
    """Single-process labels (batch size 1, one intra-op thread like each torchrun worker)."""
    studies = Path(shutil.copytree(pool_template, tmp_path_factory.mktemp("ref") / "studies"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = pseudo_label_studies(studies, teacher.best_checkpoint, progress=False, device="cpu",
                                       batch_size=1, num_workers=0)
    finally:
        torch.set_num_threads(threads)
    assert {r.status for r in results} == {"written"} and len(results) == POOL_CASES
    return read_labels(studies / "labels" / "pseudo")


def read_labels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name[: -len(".nii.gz")]: np.asarray(nib.load(p).dataobj) for p in sorted(folder.glob("*.nii.gz"))}


def torchrun_command(studies: Path, checkpoint: Path, nproc: int = 2) -> list[str]:
    return [str(TORCHRUN), f"--nproc-per-node={nproc}", "--nnodes=1", "--master-addr=127.0.0.1",
            f"--master-port={free_port()}", "--monitor-interval=0.2", "-m", "robustlabel.cli", "pseudo-label",
            "--studies", str(studies), "--checkpoint", str(checkpoint), "--device", "cpu", "--batch-size", "1",
            "--num-workers", "0", "--no-progress"]


def job_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "ROBUSTLABEL_DIST_TIMEOUT_S": "60"}


def status_counts(stdout: str) -> dict[str, int]:
    """``{"written": n, "skipped_same_teacher": m, …}`` from the command's summary line."""
    line = next(l for l in stdout.splitlines() if l.startswith("pseudo-label:"))
    return {status: int(n) for n, status in re.findall(r"(\d+) (written|skipped_\w+)", line)}


def test_two_ranks_write_the_single_process_labels(pool_template, teacher, reference, tmp_path):
    studies = Path(shutil.copytree(pool_template, tmp_path / "studies"))
    done = subprocess.run(torchrun_command(studies, teacher.best_checkpoint), env=job_env(), capture_output=True,
                          text=True, timeout=JOB_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert status_counts(done.stdout) == {"written": POOL_CASES}
    labels = read_labels(studies / "labels" / "pseudo")
    assert sorted(labels) == sorted(reference)
    for case, label in labels.items():
        assert np.array_equal(label, reference[case]), case
    sidecars = sorted((studies / "labels" / "pseudo").glob("*.json"))
    assert len(sidecars) == POOL_CASES
    assert not list((studies / "labels" / "final").glob("*pseudo*"))


def _rank_processes(agent: psutil.Process) -> dict[int, psutil.Process]:
    """``{rank: worker process}`` of a torchrun agent (read from each child's RANK variable)."""
    workers = {}
    for child in agent.children(recursive=True):
        try:
            rank = child.environ().get("RANK")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if rank is not None and "robustlabel.cli" in " ".join(child.cmdline()):
            workers[int(rank)] = child
    return workers


def test_kill_one_rank_then_rerun_finishes_only_what_is_missing(pool_template, teacher, reference, tmp_path):
    studies = Path(shutil.copytree(pool_template, tmp_path / "studies"))
    pseudo = studies / "labels" / "pseudo"
    pool = [item["case"] for item in unlabeled_datalist(studies)]
    rank1_cases = [pool[i] for i in shard(pool, DistContext(rank=1, world_size=2, backend="gloo"))]
    agent_proc = subprocess.Popen(torchrun_command(studies, teacher.best_checkpoint), env=job_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    agent = psutil.Process(agent_proc.pid)
    workers: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + JOB_TIMEOUT_S
    try:
        # kill rank 1 with SIGKILL as soon as it has written its first case
        while not any((pseudo / f"{case}.json").exists() for case in rank1_cases):
            assert agent_proc.poll() is None, f"job ended before rank 1 wrote anything: {agent_proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "rank 1 wrote nothing in time"
            workers.update(_rank_processes(agent))
            time.sleep(0.02)
        workers.update(_rank_processes(agent))
        assert set(workers) == {0, 1}
        workers[1].kill()
        _, stderr = agent_proc.communicate(timeout=JOB_TIMEOUT_S)  # survivors must not hang
    finally:
        if agent_proc.poll() is None:
            agent_proc.kill()
            agent_proc.wait()
    assert agent_proc.returncode != 0
    time.sleep(0.5)
    alive = [p.pid for p in workers.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"ranks left running: {alive}"

    # no half-written file: every visible label is complete, has its sidecar and equals the reference
    before = read_labels(pseudo)
    assert 0 < len(before) < POOL_CASES, f"kill -9 came too late to test a resume ({len(before)} labelled)"
    for case, label in before.items():
        assert np.array_equal(label, reference[case]), case
    assert sorted(p.name[: -len(".json")] for p in pseudo.glob("*.json")) == sorted(before)
    stamps = {case: (pseudo / f"{case}.nii.gz").stat().st_mtime_ns for case in before}

    rerun = subprocess.run(torchrun_command(studies, teacher.best_checkpoint), env=job_env(), capture_output=True,
                           text=True, timeout=JOB_TIMEOUT_S)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    counts = status_counts(rerun.stdout)
    assert counts == {"skipped_same_teacher": len(before), "written": POOL_CASES - len(before)}
    after = read_labels(pseudo)
    assert sorted(after) == sorted(reference)  # nothing lost
    for case, label in after.items():
        assert np.array_equal(label, reference[case]), case
    # nothing labelled twice: the cases finished before the kill were not written again
    assert {case: (pseudo / f"{case}.nii.gz").stat().st_mtime_ns for case in before} == stamps
    assert not [p.name for p in pseudo.iterdir() if p.name.startswith(".")]  # stale temporaries swept
