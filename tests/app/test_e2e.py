"""End to end: a real ``monailabel start_server`` with apps/brats, driven over REST.

The server (``conftest.server``) serves 6 synthetic 32³ studies (2 with a ``final`` label) with
``--conf tiny true --conf device cpu``.  The official ``MONAILabelClient`` is used wherever it
has the call; ``requests`` for batch inference and raw status codes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import requests
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException
from robustlabel.engine.checkpoint import sha256_file as sha256

from brats_server import Server, batch_status, wait_for_task

pytestmark = pytest.mark.e2e

BRATS_VALUES = {0, 1, 2, 4}


def final_label_hashes(studies: Path) -> dict[str, str]:
    return {p.name: sha256(p) for p in sorted((studies / "labels" / "final").glob("*.nii.gz"))}


def source_label(server: Server, image_id: str) -> Path:
    """The synthetic ground truth of a case: what the clinician submits."""
    return server.source / image_id / f"{image_id}_seg.nii.gz"


def test_clinician_loop_over_rest(server: Server) -> None:
    client = MONAILabelClient(server.url)
    studies = server.studies
    initial_finals = {p.name[: -len(".nii.gz")] for p in (studies / "labels" / "final").glob("*.nii.gz")}
    assert len(initial_finals) == 2

    # 1. info: the model, its BraTS label names (value 3 kept as a placeholder), tasks
    info = client.info()
    assert set(info["models"]) == {"transbts"}
    assert info["models"]["transbts"]["labels"] == {"necrosis": 1, "edema": 2, "unused (BraTS label 3)": 3,
                                                    "enhancing tumor": 4}
    assert info["labels"] == ["necrosis", "edema", "unused (BraTS label 3)", "enhancing tumor"]
    assert "pseudo_uncertainty" in info["strategies"] and "pseudo_confidence" in info["scoring"]
    assert "transbts" in info["trainers"] and info["datastore"]["total"] == 6 and info["datastore"]["completed"] == 2

    # 2. next sample: an image without a final label (none has a pseudo-label yet: first by id)
    sample = client.next_sample("pseudo_uncertainty", {})
    image_id = sample["id"]
    assert image_id not in initial_finals
    assert image_id == sorted(set(client.datastore()["objects"]) - initial_finals)[0]

    # 3. infer: one label map in BraTS values with the image's shape and affine (untrained model, flagged)
    label_file, params = client.infer("transbts", image_id, {})
    image = nib.load(studies / f"{image_id}.nii.gz")
    label = nib.load(label_file)
    assert label.shape == image.shape
    assert np.allclose(label.affine, image.affine, atol=1e-5)
    assert set(np.unique(np.asarray(label.dataobj)).tolist()) <= BRATS_VALUES
    assert params["label_names"]["enhancing tumor"] == 4 and params["model_state"] == "untrained" and params["warning"]

    # 4. the clinician submits the corrected label with tag final
    client.save_label(image_id, str(source_label(server, image_id)), tag="final")
    finals_before = final_label_hashes(studies)
    assert set(finals_before) == {f"{c}.nii.gz" for c in initial_finals | {image_id}}
    assert finals_before[f"{image_id}.nii.gz"] == sha256(source_label(server, image_id))

    # 5. train the teacher (final labels, CE) to completion; the model is published and served
    client.train_start("transbts", {"max_epochs": 2})
    wait_for_task(client.train_status, "teacher training")
    stats = client.info()["train_stats"]["transbts"]
    assert stats["status"] == "DONE" and stats["epoch"] == 2 and stats["total_epochs"] == 2
    assert stats["train_final"] + stats["val_final"] == 3 and stats["train_pseudo"] == 0 and stats["val_final"] == 1
    published = Path(stats["published"])
    assert sha256(published) == stats["published_sha256"]
    _, params = client.infer("transbts", image_id, {})
    assert params["model_state"] == "trained" and params["checkpoint_sha256"] == stats["published_sha256"]

    # 6. pseudo-label the pool over REST (batch infer), on CPU
    response = requests.post(f"{server.url}/batch/infer/transbts", params={"images": "unlabeled"},
                             json={"label_tag": "pseudo", "device": "cpu"}, timeout=30)
    assert response.status_code == 200, response.text
    wait_for_task(lambda: batch_status(server.url), "pool pseudo-labelling")
    objects = client.datastore()["objects"]
    pool = sorted(set(objects) - initial_finals - {image_id})
    assert len(pool) == 3
    for case, obj in objects.items():
        tags = set(obj["labels"])
        if case in pool:
            assert tags == {"pseudo"}, (case, tags)
            assert obj["labels"]["pseudo"]["info"]["teacher"]["sha256"] == stats["published_sha256"]
        else:  # the clinician-labelled images, the submitted one included, are not in the pool
            assert tags == {"final"}, (case, tags)
    assert final_label_hashes(studies) == finals_before  # clinician labels byte-identical
    sidecars = {case: json.loads((studies / "labels" / "pseudo" / f"{case}.json").read_text()) for case in pool}
    for case in pool:
        pseudo = nib.load(studies / "labels" / "pseudo" / f"{case}.nii.gz")
        assert pseudo.shape == nib.load(studies / f"{case}.nii.gz").shape
        assert set(np.unique(np.asarray(pseudo.dataobj)).tolist()) <= BRATS_VALUES
        assert objects[case]["image"]["info"]["pseudo_confidence"] == pytest.approx(1 - sidecars[case]["uncertainty"])

    # 7. next sample by pseudo_uncertainty: the least confident pool image per the sidecars
    least_confident = min(pool, key=lambda c: (1 - sidecars[c]["uncertainty"], c))
    sample = client.next_sample("pseudo_uncertainty", {})
    assert sample["id"] == least_confident
    assert sample["pseudo_confidence"] == pytest.approx(1 - sidecars[least_confident]["uncertainty"])

    # 8. train the student: final labels with CE + pseudo-labels with GCE
    client.train_start("transbts", {"max_epochs": 1, "use_pseudo": True, "pseudo_loss": "gce", "q": 0.7})
    wait_for_task(client.train_status, "student training")
    stats = client.info()["train_stats"]["transbts"]
    assert stats["use_pseudo"] is True and stats["pseudo_loss"] == "gce" and stats["pseudo_params"] == {"q": 0.7}
    assert stats["train_pseudo"] == 3 and stats["epoch"] == 1
    assert final_label_hashes(studies) == finals_before


def test_bad_requests_get_an_error_status_and_the_server_keeps_answering(server: Server, tmp_path: Path) -> None:
    client = MONAILabelClient(server.url)
    objects = client.datastore()["objects"]
    image_id = sorted(objects)[0]

    # unknown image id: 404 with a message naming it
    response = requests.post(f"{server.url}/infer/transbts", params={"image": "no_such_case"}, timeout=60)
    assert response.status_code == 404 and "no_such_case" in response.json()["detail"]
    with pytest.raises(MONAILabelClientException, match="404"):
        client.infer("transbts", "no_such_case", {})
    assert client.info()["name"]

    # a label of the wrong shape: 422 with the shapes in the message; nothing stored
    wrong = tmp_path / "wrong_shape.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.uint8), np.eye(4)), wrong)
    finals_before = final_label_hashes(server.studies)
    response = requests.put(f"{server.url}/datastore/label", params={"image": image_id, "tag": "final"},
                            files={"label": ("label.nii.gz", wrong.read_bytes())}, timeout=60)
    assert response.status_code == 422 and "(16, 16, 16)" in response.json()["detail"]
    with pytest.raises(MONAILabelClientException, match="422"):
        client.save_label(image_id, str(wrong), tag="final")
    assert final_label_hashes(server.studies) == finals_before

    # a label for an unknown image: 404 (stock MONAI Label answers a bare 500)
    response = requests.put(f"{server.url}/datastore/label", params={"image": "no_such_case", "tag": "final"},
                            files={"label": ("label.nii.gz", wrong.read_bytes())}, timeout=60)
    assert response.status_code == 404 and "no_such_case" in response.json()["detail"]

    # a model output may never be saved under tag final: 409
    response = requests.post(f"{server.url}/infer/transbts", params={"image": image_id},
                             data={"params": json.dumps({"save_label": True, "label_tag": "final"})}, timeout=120)
    assert response.status_code == 409 and "final" in response.json()["detail"]
    assert final_label_hashes(server.studies) == finals_before

    assert client.info()["datastore"]["total"] == 6
