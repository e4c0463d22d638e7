"""In-process tests of the BraTS app's pieces: options, datastore guards, strategy, scoring, pool
task refusals and the ``demo`` command (no server, no training; the end-to-end test covers those)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from brats_server import APP_DIR, make_studies
from robustlabel import cli
from robustlabel.engine.checkpoint import sha256_file as digest
from robustlabel.engine.inference import POOL_WINDOWS

sys.path.insert(0, str(APP_DIR))  # what MONAI Label does before it imports an app's main.py and lib/
from lib.activelearning.pseudo_uncertainty import PseudoUncertainty  # noqa: E402
from lib.conf import LossSettings, parse_conf, parse_pool_request, parse_train_request, train_defaults  # noqa: E402
from lib.datastore import FINAL, PSEUDO, BratsDatastore  # noqa: E402
from lib.errors import (  # noqa: E402
    AppRequestError, FinalLabelProtectedError, ImageNotFoundError, InvalidLabelError, InvalidOptionError,
)
from lib.infers.pseudo_pool import PoolPseudoLabelTask  # noqa: E402
from lib.scoring.pseudo_confidence import PseudoConfidence  # noqa: E402
from lib.configs.transbts import network_config  # noqa: E402
from lib.infers.pseudo_pool import DatastoreSink  # noqa: E402
from lib.trainers.transbts import TransBTSTrain, case_hash, split_validation  # noqa: E402
from robustlabel.data.nifti import header_fields  # noqa: E402
from robustlabel.data.studies import unlabeled_datalist  # noqa: E402
from robustlabel.engine.checkpoint import TrainingRecord  # noqa: E402
from robustlabel.engine.config import TrainConfig  # noqa: E402
from robustlabel.engine.pseudo_label import PseudoLabeller  # noqa: E402
from robustlabel.networks import TINY_TRANSBTS, build_network  # noqa: E402


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_studies(tmp_path_factory.mktemp("units"))


@pytest.fixture
def studies(pristine: tuple[Path, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine[1], tmp_path / "studies"))


@pytest.fixture
def datastore(studies: Path) -> BratsDatastore:
    return BratsDatastore(str(studies), auto_reload=False)


def label_like(datastore: BratsDatastore, image_id: str, path: Path, value: int = 2, affine: np.ndarray | None = None,
               shape: tuple[int, ...] | None = None) -> Path:
    """A label file for ``image_id``: a cube of ``value`` in the image's geometry (or the one given)."""
    image = nib.load(datastore.get_image_uri(image_id))
    data = np.zeros(shape or image.shape, np.uint8)
    data[8:16, 8:16, 8:16] = value
    nib.save(nib.Nifti1Image(data, image.affine if affine is None else affine), path)
    return path


def pool_and_finals(datastore: BratsDatastore) -> tuple[list[str], list[str]]:
    finals = sorted(datastore.get_labeled_images())
    return datastore.pseudo_pool(), finals


# --------------------------------------------------------------------------- options
def test_conf_defaults_follow_the_paper_and_bad_values_name_their_key() -> None:
    full = parse_conf({}, default_model_dir="/m")
    assert full.roi_size == (128, 128, 128) and full.pseudo_loss == "gce" and full.loss_params() == {"q": 0.7}
    assert (full.beta, full.alpha, full.gamma) == (0.001, 0.01, 1.0) and not full.use_pseudo and full.model_dir == "/m"
    tiny = parse_conf({"tiny": "true", "pseudo_loss": "SCE", "roi_size": "[32, 32, 16]"}, default_model_dir="/m")
    assert tiny.roi_size == (32, 32, 16) and tiny.max_epochs == 4 and tiny.loss_params() == {"alpha": 0.01, "gamma": 1.0}
    student = tiny.with_overrides({"use_pseudo": "true", "pseudo_loss": "bce", "beta": 5, "client_id": "slicer"})
    assert student.use_pseudo and student.loss_params() == {"beta": 5.0} and student.roi_size == (32, 32, 16)
    for conf, key in [({"q": "1.5"}, "q"), ({"pseudo_loss": "mae"}, "pseudo_loss"), ({"roi_size": "30"}, "roi_size"),
                      ({"tiny": "maybe"}, "tiny"), ({"models": "segresnet"}, "models"), ({"device": "tpu"}, "device"),
                      ({"beta": "0"}, "beta"), ({"val_split": "1"}, "val_split")]:
        with pytest.raises(AppRequestError, match=key):
            parse_conf(conf, default_model_dir="/m")
    if not torch.cuda.is_available():
        with pytest.raises(AppRequestError, match="CUDA"):
            parse_conf({"device": "cuda"}, default_model_dir="/m")
    assert LossSettings().loss_params() == {"q": 0.7}


def test_train_and_pool_requests_are_parsed_once_with_422_for_the_wrong_kind_and_400_out_of_range() -> None:
    conf = parse_conf({"tiny": "true", "device": "cpu"}, default_model_dir="/m")
    run = parse_train_request(conf, {"train_batch_size": "3", "learning_rate": "0.01", "use_pseudo": "yes",
                                     "pseudo_loss": "sce", "gamma": 2, "ranks": 2, "client_id": "slicer"})
    assert (run.batch_size, run.learning_rate, run.val_interval, run.num_workers) == (3, 0.01, 1, 0)
    assert run.conf.use_pseudo and run.conf.loss_params() == {"alpha": 0.01, "gamma": 2.0}
    assert (run.device, run.ranks, run.gpus) == ("cpu", 2, None)
    defaults = parse_train_request(conf, {"train_batch_size": "", "num_workers": None})
    assert defaults.batch_size == train_defaults(conf)["train_batch_size"] == 2 and defaults.num_workers == 0
    for request, key, status in [
        ({"train_batch_size": "x"}, "train_batch_size", 422), ({"train_batch_size": 0}, "train_batch_size", 400),
        ({"train_batch_size": True}, "train_batch_size", 422), ({"learning_rate": "fast"}, "learning_rate", 422),
        ({"learning_rate": 0}, "learning_rate", 400), ({"val_interval": "2.5"}, "val_interval", 422),
        ({"num_workers": -1}, "num_workers", 400), ({"multi_gpu": "maybe"}, "multi_gpu", 422),
        ({"ranks": "two"}, "ranks", 422), ({"max_epochs": 0}, "max_epochs", 400), ({"q": "abc"}, "q", 422),
        ({"q": 1.5}, "q", 400), ({"gamma": 0}, "gamma", 400), ({"pseudo_loss": "mae"}, "pseudo_loss", 422),
        ({"use_pseudo": "perhaps"}, "use_pseudo", 422), ({"mode": "mixed"}, "mode", 422),
    ]:
        with pytest.raises(AppRequestError) as info:
            parse_train_request(conf, request)
        assert info.value.detail.startswith(f"{key}: ") and info.value.status_code == status, (request, info.value)
        assert isinstance(info.value, InvalidOptionError) == (status == 422)

    pool = parse_pool_request(conf, {"model": "transbts", "images": "unlabeled", "batch_size": "4"}, ["transbts"])
    assert (pool.model, pool.batch_size, pool.num_workers, pool.max_batch_size, pool.ranks) == ("transbts", 4, None, 0, 1)
    assert pool.labeller_options()["windows"] == POOL_WINDOWS  # bf16 where the CPU has it: the pool's default
    fp32 = parse_pool_request(conf, {"model": "transbts", "cpu_bf16": "false"}, ["transbts"])
    assert fp32.labeller_options()["windows"] == POOL_WINDOWS.replace(cpu_bf16=False)
    for request, key, status in [
        ({"batch_size": "x"}, "batch_size", 422), ({"max_batch_size": -1}, "max_batch_size", 400),
        ({"num_workers": "many"}, "num_workers", 422), ({"label_tag": "final"}, "label_tag", 422),
        ({"label_tag": "../x"}, "label_tag", 422), ({"images": "some"}, "images", 422),
        ({"images": ["ok", "../x"]}, "images[1]", 422), ({"model": "segresnet"}, "model", 404),
        ({"cpu_bf16": "fast"}, "cpu_bf16", 422),
    ]:
        with pytest.raises(AppRequestError) as info:
            parse_pool_request(conf, {"model": "transbts", **request}, ["transbts"])
        assert info.value.detail.startswith(f"{key}: ") and info.value.status_code == status, (request, info.value)


# --------------------------------------------------------------------------- datastore guards
def test_bad_labels_are_refused_with_a_status_and_a_message(datastore: BratsDatastore, studies: Path, tmp_path: Path) -> None:
    pool, finals = pool_and_finals(datastore)
    image = pool[0]
    before = {p.name: digest(p) for p in (studies / "labels").rglob("*.nii.gz")}
    affine = nib.load(datastore.get_image_uri(image)).affine.copy()
    shifted = affine.copy()
    shifted[0, 3] += 5.0
    not_nifti = tmp_path / "text.nii.gz"
    not_nifti.write_text("not an image")
    cases = [
        (label_like(datastore, image, tmp_path / "shape.nii.gz", shape=(16, 16, 16)), InvalidLabelError, 422, "shape"),
        (label_like(datastore, image, tmp_path / "affine.nii.gz", affine=shifted), InvalidLabelError, 422, "affine"),
        (label_like(datastore, image, tmp_path / "three.nii.gz", value=3), InvalidLabelError, 422, r"\[3\]"),
        (not_nifti, InvalidLabelError, 422, "NIfTI"),
    ]
    for path, error, status, message in cases:
        with pytest.raises(error, match=message) as info:
            datastore.save_label(image, str(path), FINAL, {})
        assert info.value.status_code == status
    with pytest.raises(ImageNotFoundError, match="no_such_case") as info:
        datastore.save_label("no_such_case", str(label_like(datastore, image, tmp_path / "ok.nii.gz")), FINAL, {})
    assert info.value.status_code == 404 and isinstance(info.value, ValueError)
    assert {p.name: digest(p) for p in (studies / "labels").rglob("*.nii.gz")} == before
    assert sorted(datastore.get_labeled_images()) == finals


def test_model_outputs_never_reach_final_and_a_final_label_retires_the_pseudo_label(
    datastore: BratsDatastore, studies: Path, tmp_path: Path
) -> None:
    pool, finals = pool_and_finals(datastore)
    final_file = studies / "labels" / FINAL / f"{finals[0]}.nii.gz"
    before = digest(final_file)
    output = label_like(datastore, finals[0], tmp_path / "model.nii.gz")
    with pytest.raises(FinalLabelProtectedError) as info:
        datastore.save_label(finals[0], str(output), FINAL, {"model": "transbts"})
    assert info.value.status_code == 409
    with pytest.raises(FinalLabelProtectedError, match="final"):
        datastore.save_label(finals[0], str(output), PSEUDO, {"model": "transbts", "uncertainty": 0.5})
    assert digest(final_file) == before and not (studies / "labels" / PSEUDO / f"{finals[0]}.nii.gz").exists()

    image = pool[0]
    datastore.save_label(image, str(label_like(datastore, image, tmp_path / "p.nii.gz")), PSEUDO,
                         {"model": "transbts", "uncertainty": 0.25})
    sidecar = datastore.sidecar_file(image)
    sidecar.write_text("{}")
    PseudoConfidence()({}, datastore)
    assert datastore.get_image_info(image)["pseudo_confidence"] == pytest.approx(0.75)
    assert set(datastore.get_labels_by_image_id(image)) == {PSEUDO}

    clinician = label_like(datastore, image, tmp_path / "clinician.nii.gz", value=4)
    datastore.save_label(image, str(clinician), FINAL, {"client_id": "slicer"})
    assert set(datastore.get_labels_by_image_id(image)) == {FINAL}
    assert not (studies / "labels" / PSEUDO / f"{image}.nii.gz").exists() and not sidecar.exists()
    assert digest(studies / "labels" / FINAL / f"{image}.nii.gz") == digest(clinician)
    assert image not in datastore.pseudo_pool() and datastore.get_image_info(image)["pseudo_confidence"] is None
    assert not list((studies / "labels" / FINAL).glob(".*"))  # no temporary file left behind


def test_a_computed_label_is_checked_in_memory_and_written_once_by_the_datastore(
    datastore: BratsDatastore, studies: Path, tmp_path: Path
) -> None:
    pool, finals = pool_and_finals(datastore)
    image = nib.load(datastore.get_image_uri(pool[0]))
    label = np.zeros(image.shape, np.uint8)
    label[4:12, 4:12, 4:12] = 4
    label[6:8, 6:8, 6:8] = 1
    header = header_fields(image.header)  # the source's codes and units, kept in the written file
    before = {p.name: digest(p) for p in (studies / "labels").rglob("*.nii.gz")}
    shifted = image.affine.copy()
    shifted[1, 3] += 2.0
    for array, affine, message in [(label[:-1], image.affine, "shape"), (label, shifted, "affine"),
                                   (np.where(label == 4, 3, label).astype(np.uint8), image.affine, r"\[3\]")]:
        with pytest.raises(InvalidLabelError, match=message) as info:
            datastore.save_label_array(pool[0], array, affine, PSEUDO, {"model": "transbts"})
        assert info.value.status_code == 422
    with pytest.raises(FinalLabelProtectedError, match="clinician labels only") as info:
        datastore.save_label_array(pool[0], label, image.affine, FINAL, {"model": "transbts"})
    assert info.value.status_code == 409
    final_affine = nib.load(datastore.get_image_uri(finals[0])).affine
    with pytest.raises(FinalLabelProtectedError, match="a pseudo-label is never stored next to it"):
        datastore.save_label_array(finals[0], label, final_affine, PSEUDO, {"model": "transbts"}, sidecar={"case": finals[0]})
    assert {p.name: digest(p) for p in (studies / "labels").rglob("*.nii.gz")} == before
    assert not datastore.sidecar_file(finals[0]).exists()

    sidecar = {"case": pool[0], "uncertainty": 0.5, "teacher": {"sha256": "abc"}, "affine": image.affine.tolist()}
    datastore.save_label_array(pool[0], label[..., None], image.affine, PSEUDO,
                               {"model": "transbts", "uncertainty": 0.5, "teacher": {"sha256": "abc"}},
                               sidecar=sidecar, header=header)
    stored = nib.load(datastore.get_label_uri(pool[0], PSEUDO))
    assert np.array_equal(np.asarray(stored.dataobj), label) and np.allclose(stored.affine, image.affine)
    assert header_fields(stored.header) == header
    assert json.loads(datastore.sidecar_file(pool[0]).read_text()) == sidecar
    assert datastore.get_label_info(pool[0], PSEUDO)["uncertainty"] == 0.5
    assert not [p for p in (studies / "labels").rglob("*") if p.name.startswith(".")]  # no temporary file left

    # the pool's sink: one datastore write per label; a final label that arrived after the
    # engine's early skip is protected by the datastore's check under its lock
    sink = DatastoreSink(datastore, "transbts")
    assert sink.has_clinician_label(finals[0]) and not sink.has_clinician_label(pool[1])
    assert sink.write(finals[0], label, final_affine, {"case": finals[0], "uncertainty": 0.1}, None) is None
    assert not (studies / "labels" / PSEUDO / f"{finals[0]}.nii.gz").exists()
    other_affine = nib.load(datastore.get_image_uri(pool[1])).affine
    assert sink.write(pool[1], label, other_affine, {"case": pool[1], "uncertainty": 0.2}, None) == \
        datastore.get_label_uri(pool[1], PSEUDO)
    assert sink.existing_teacher(pool[1]) is None and sink.existing_teacher(pool[0]) == "abc"


# --------------------------------------------------------------------------- strategy and scoring
def test_pseudo_uncertainty_offers_unseen_then_least_confident_images(datastore: BratsDatastore, tmp_path: Path) -> None:
    pool, finals = pool_and_finals(datastore)
    assert len(pool) == 4 and len(finals) == 2
    uncertainties = dict(zip(pool[1:], [0.2, 0.7, 0.4]))
    for image, u in uncertainties.items():
        datastore.save_label(image, str(label_like(datastore, image, tmp_path / f"{image}.nii.gz")), PSEUDO,
                             {"model": "transbts", "uncertainty": u, "teacher": {"sha256": "abc"}})
    strategy = PseudoUncertainty()
    assert strategy({}, datastore)["id"] == pool[0]  # no pseudo-label yet: least known
    datastore.save_label(pool[0], str(label_like(datastore, pool[0], tmp_path / "p0.nii.gz")), PSEUDO,
                         {"model": "transbts", "uncertainty": 0.1, "teacher": {"sha256": "abc"}})
    choice = strategy({}, datastore)
    assert choice["id"] == pool[2] and choice["pseudo_confidence"] == pytest.approx(0.3)

    scores = PseudoConfidence()({}, datastore)
    assert set(scores) == set(pool)
    for image, u in {**uncertainties, pool[0]: 0.1}.items():
        info = datastore.get_image_info(image)
        assert info["pseudo_confidence"] == pytest.approx(1 - u) and info["pseudo_teacher_sha256"] == "abc"
    assert all(datastore.get_image_info(f).get("pseudo_confidence") is None for f in finals)

    for image in pool:  # everything labelled by the clinician: nothing left to offer
        datastore.save_label(image, str(label_like(datastore, image, tmp_path / f"f_{image}.nii.gz")), FINAL, {})
    assert strategy({}, datastore) is None and PseudoConfidence()({}, datastore) == {}


def test_pool_task_needs_a_teacher_and_only_writes_tag_pseudo(datastore: BratsDatastore, tmp_path: Path) -> None:
    conf = parse_conf({"tiny": "true", "device": "cpu"}, default_model_dir=str(tmp_path))
    task = PoolPseudoLabelTask({"transbts": lambda: tmp_path / "transbts_tiny.pt"}, conf)
    with pytest.raises(AppRequestError, match="train a teacher first") as info:
        task({"model": "transbts", "label_tag": "pseudo"}, datastore)
    assert info.value.status_code == 409
    with pytest.raises(AppRequestError, match="'final'"):
        task({"model": "transbts", "label_tag": "final"}, datastore)
    with pytest.raises(AppRequestError, match="unknown model"):
        task({"model": "segresnet"}, datastore)
    assert datastore.status()["label_tags"] == {FINAL: 2}


# --------------------------------------------------------------------------- demo command
def test_demo_dry_run_prepares_studies_once_and_prints_the_server_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    studies = tmp_path / "demo" / "studies"
    argv = ["demo", "--studies", str(studies), "--cases", "3", "--shape", "32", "32", "32", "--port", "8123", "--dry-run"]
    assert cli.main(argv) == 0
    manifest = json.loads((studies / "robustlabel_manifest.json").read_text())
    assert len(manifest["labeled"]) + len(manifest["unlabeled"]) == 3 and len(manifest["labeled"]) == 1
    out = capsys.readouterr().out
    command = out.strip().splitlines()[-1]
    assert "-m monailabel.main start_server" in command and f"--studies {studies}" in command
    assert "--host 127.0.0.1 --port 8123" in command and "--conf tiny true" in command
    assert f"--conf model_dir {tmp_path / 'demo' / 'model'}" in command and f"--app {APP_DIR}" in command
    assert "/batch/infer/transbts?images=unlabeled" in out and "pseudo_uncertainty" in out

    assert cli.main(argv) == 0  # second run: the studies are reused, not regenerated
    assert "using existing studies folder" in capsys.readouterr().out
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not a robustlabel studies folder"):
        cli.main(["demo", "--studies", str(stray), "--dry-run"])


def test_demo_loop_dry_run_uses_loop_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo", "--loop", "--cases", "6", "--shape", "32", "32", "32", "--dry-run"]) == 0
    studies = tmp_path / "demo" / "loop-studies"
    manifest = json.loads((studies / "robustlabel_manifest.json").read_text())
    assert len(manifest["labeled"]) == 3 and len(manifest["unlabeled"]) == 3  # --loop labels half
    command = capsys.readouterr().out.strip().splitlines()[-1]
    assert command.startswith("$ robustlabel teacher-student") and "--tiny" in command and "--lr 0.003" in command
    assert f"--out {tmp_path / 'demo' / 'teacher-student'}" in command


# --------------------------------------------------------------------------- protocol fidelity
def constant_teacher(path: Path, bias: tuple[float, float, float, float]) -> Path:
    """A real engine checkpoint of the tiny TransBTS whose output layer ignores its input: the
    logits are ``bias`` at every voxel (e.g. background everywhere: the teacher misses the tumour)."""
    config = TrainConfig(network=dict(TINY_TRANSBTS), device="cpu")
    network = build_network(config.network)
    with torch.no_grad():
        network.output_conv.weight.zero_()
        network.output_conv.bias.copy_(torch.tensor(bias))
    record = TrainingRecord(config=config.to_dict(), history=[{"epoch": 1}], best_epoch=1)
    torch.save({"network": network.state_dict(), "record": record.state_dict()}, path)
    return path


def test_a_teacher_that_misses_the_tumour_is_offered_first(datastore: BratsDatastore, studies: Path,
                                                            tmp_path: Path) -> None:
    """The pool is labelled by real teachers: one predicts confident background on the first
    pool case (a complete miss), the other an honestly uncertain tumour on the rest.  The miss
    must come first in next_sample (a mean entropy over the brain would rank it last)."""
    pool = unlabeled_datalist(studies)
    assert [i["case"] for i in pool] == datastore.pseudo_pool()
    sink = DatastoreSink(datastore, "transbts")
    missing = PseudoLabeller(constant_teacher(tmp_path / "miss.pt", (8.0, 0.0, 0.0, 0.0)), device="cpu", num_workers=0)
    unsure = PseudoLabeller(constant_teacher(tmp_path / "unsure.pt", (0.0, 1.5, 0.0, 0.0)), device="cpu", num_workers=0)
    (miss,) = missing.label(pool[:1], sink, progress=False)
    others = unsure.label(pool[1:], sink, progress=False)
    assert miss.info["voxel_counts"]["0"] == int(np.prod(miss.info["shape"]))  # nothing predicted
    assert miss.uncertainty == 1.0 and miss.info["uncertainty_region"] == "empty"
    assert all(0.5 < r.uncertainty < 1.0 and r.info["uncertainty_region"] == "tumour" for r in others)
    choice = PseudoUncertainty()({}, datastore)
    assert choice["id"] == pool[0]["case"] and choice["pseudo_uncertainty"] == 1.0


def test_validation_cases_never_move_into_training_as_labels_are_added() -> None:
    cases = [f"BraTS2021_{k:05d}" for k in range(60)]
    assert case_hash(cases[0], 0) == case_hash(cases[0], 0) != case_hash(cases[0], 1)
    assert all(0.0 <= case_hash(c, 0) < 1.0 for c in cases)
    hashed_val: set[str] = set()
    for n in range(2, len(cases) + 1):
        items = [{"case": c} for c in cases[:n]]
        val = {i["case"] for i in split_validation(items, 0.2, seed=0)}
        assert 1 <= len(val) < n
        # every case the hash sends to validation stays there however many labels follow
        assert hashed_val <= val
        hashed_val |= {c for c in val if case_hash(c, 0) < 0.2}
    assert 6 <= len(hashed_val) <= 18  # about 20 % of 60
    # the order of the datalist does not matter; a single case or val_split 0 gives no validation
    assert split_validation([{"case": c} for c in reversed(cases)], 0.2, 0) == \
        list(reversed(split_validation([{"case": c} for c in cases], 0.2, 0)))
    assert split_validation([{"case": "a"}], 0.5, 0) == [] and split_validation(items, 0.0, 0) == []
    # fallbacks: no case below val_split -> the smallest hash validates; all below -> the largest trains
    pair = [{"case": c} for c in cases[:2]]
    smallest = min(pair, key=lambda i: case_hash(i["case"], 0))
    assert split_validation(pair, 1e-9, 0) == [smallest]
    assert split_validation(pair, 0.999999, 0) == [smallest]


def test_add_a_final_label_and_retrain_no_validation_case_trains(datastore: BratsDatastore, tmp_path: Path) -> None:
    conf = parse_conf({"tiny": "true", "device": "cpu", "max_epochs": "1", "val_split": "0.5"},
                      default_model_dir=str(tmp_path / "model"))
    task = TransBTSTrain("transbts", conf, network_config(conf), tmp_path / "model" / "transbts_tiny.pt")
    request = {"train_batch_size": 2, "num_workers": 0}
    first = task(request, datastore)
    assert first["status"] == "DONE" and first["val_final"] >= 1 and first["mode"] == "union"
    image = datastore.pseudo_pool()[0]  # the clinician submits one more label (a seeded permutation of
    # the final cases, as before, sends the first run's validation case into training here)
    datastore.save_label(image, str(label_like(datastore, image, tmp_path / f"{image}.nii.gz")), FINAL, {})
    second = task(request, datastore)
    assert second["train_final"] + second["val_final"] == first["train_final"] + first["val_final"] + 1
    assert not set(first["val_cases"]) & set(second["train_cases"])  # no earlier validation case trains
    assert set(first["val_cases"]) <= set(second["val_cases"])
    assert set(first["train_cases"]) <= set(second["train_cases"])


def test_mode_is_an_app_option_and_a_train_request_override(tmp_path: Path) -> None:
    conf = parse_conf({"tiny": "true", "device": "cpu"}, default_model_dir=str(tmp_path))
    assert conf.mode == "union" and conf.with_overrides({"mode": "per_source"}).mode == "per_source"
    assert parse_conf({"mode": "Robust_All"}, default_model_dir="/m").mode == "robust_all"
    with pytest.raises(AppRequestError, match="mode"):
        parse_conf({"mode": "mixed"}, default_model_dir="/m")
    task = TransBTSTrain("transbts", conf, network_config(conf), tmp_path / "transbts_tiny.pt")
    assert task.config()["mode"] == ["union", "robust_all", "per_source"]
    assert task._train_config(parse_train_request(conf, {"mode": "robust_all"})).mode == "robust_all"
