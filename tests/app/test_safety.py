"""Clinician labels are untouchable, and the server writes only where it is meant to (issue 9).

Real ``monailabel start_server`` processes on 127.0.0.1 with the tiny TransBTS on CPU, driven by
the official ``MONAILabelClient`` and raw HTTP (``requests``):

* ``safe_server`` -- the default deployment (no auth, ``allow_final_delete`` off, sessions off)
  with a private ``TMPDIR``, so that every temporary file it leaves is visible, a 2 MiB upload cap
  and one extra ``allowed_hosts`` name;
* ``auth_server`` -- ``MONAI_LABEL_AUTH_ENABLE=true`` against a local OpenID Connect issuer
  (``oidc_issuer.py``), ``--conf allow_final_delete true`` and ``--conf sessions true`` (capped
  sessions in its private ``TMPDIR``);
* the kill test starts, ``kill -9``s and restarts its own server during a pool pseudo-labelling.

After every probe: the status code and its message; every ``final`` file byte-identical by SHA-256;
nothing written beside the studies folder (a listing of its parent, before and after); no
temporary upload left; the server still answering.  The datastore-file tests inject faults in a
subprocess at a chosen point (no server needed) and fail on MONAI Label's in-place write.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import requests
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException
from robustlabel.engine.checkpoint import sha256_file as sha256

from brats_server import (
    APP_DIR, TASK_TIMEOUT_S, Server, batch_status, copy_app, make_studies, start_server, stop_server, wait_for_task,
)
from oidc_issuer import OidcIssuer

pytestmark = pytest.mark.e2e

TINY_CPU = {"models": "transbts", "tiny": "true", "device": "cpu"}
#: how long a request's temporary files may outlive its response (removed when the ASGI call returns)
TEMP_CLEANUP_GRACE_S = 5.0
CRASH_RC = 86
BAD_TAGS = ["final/", "./final", "../x", "final/../../y", "../../escape_tag", "/tmp/abs_tag", "FINAL", "pseudo/",
            "final_history", "x y", ""]
ADMIN, ANNOTATOR, USER = "monailabel-admin", "monailabel-annotator", "monailabel-user"
#: ``max_upload_bytes`` of the test servers (small, so that going over it is quick)
UPLOAD_CAP = 2 << 20
#: the one extra ``Host`` name ``safe_server`` answers to
ALLOWED_HOST = "labelling.example"


# --------------------------------------------------------------------------- helpers
def final_hashes(studies: Path) -> dict[str, str]:
    return {p.name: sha256(p) for p in sorted((studies / "labels" / "final").glob("*.nii*"))}


def tree(folder: Path, skip: Path | None = None) -> dict[str, str]:
    """``{relative path: sha256 or '<dir>'}`` below ``folder``, leaving out ``skip`` and what is below it."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        out[str(p.relative_to(folder))] = "<dir>" if p.is_dir() else sha256(p)
    return out


class Guard:
    """Snapshot of what must not change: finals, the studies' parent (minus studies), the temp folder."""

    def __init__(self, server: Server, tmpdir: Path) -> None:
        self.server, self.tmpdir = server, tmpdir
        self.finals = final_hashes(server.studies)
        self.outside = tree(server.studies.parent, skip=server.studies)
        self.temp = tree(tmpdir)

    def check(self, what: str) -> None:
        assert final_hashes(self.server.studies) == self.finals, f"{what}: a final label changed"
        assert tree(self.server.studies.parent, skip=self.server.studies) == self.outside, \
            f"{what}: something was written beside the studies folder"
        # the middleware removes a request's temporary files when the request ends, which is just
        # after its response reached the client: give that clean-up a moment before judging
        deadline = time.monotonic() + TEMP_CLEANUP_GRACE_S
        while tree(self.tmpdir) != self.temp and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tree(self.tmpdir) == self.temp, f"{what}: temporary files left: {set(tree(self.tmpdir)) - set(self.temp)}"
        assert requests.get(f"{self.server.url}/info/", timeout=30).status_code in (200, 401), f"{what}: server down"


def expect(response: requests.Response, status: int, *words: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    detail = response.json()["detail"]
    for word in words:
        assert word in detail, (word, detail)


def label_bytes(server: Server, image_id: str) -> bytes:
    """The synthetic ground truth of a case, as a clinician would submit it."""
    return (server.source / image_id / f"{image_id}_seg.nii.gz").read_bytes()


def nifti_gz(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)
    return path


def huge_header_gz(path: Path, shape: tuple[int, ...] = (512, 512, 512)) -> Path:
    """A small ``.nii.gz`` whose header claims ``shape`` float32 voxels (its data is truncated)."""
    import gzip

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header.set_qform(np.eye(4), code=1)
    raw = header.binaryblock + b"\x00" * 4 + b"\x00" * (127 * 1024)
    path.write_bytes(gzip.compress(raw))
    return path


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def safe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("safety")
    (root / "data").mkdir()
    tmpdir = root / "tmp"
    tmpdir.mkdir()
    source, studies = make_studies(root / "data")
    nifti_gz(root / "data" / "decoy.nii.gz", np.zeros((32, 32, 32), np.uint8))  # target of path attacks
    (root / "data" / "decoy_dir").mkdir()
    (root / "data" / "decoy_dir" / "keep.txt").write_text("keep")
    app_dir = copy_app(root / "app")
    conf = {**TINY_CPU, "max_upload_bytes": str(UPLOAD_CAP), "allowed_hosts": ALLOWED_HOST}
    server = start_server(app_dir, studies, source, root, conf, env={"TMPDIR": str(tmpdir)})
    try:
        yield server, tmpdir
    finally:
        stop_server(server)


@pytest.fixture()
def guard(safe_server: tuple[Server, Path]) -> Iterator[Guard]:
    server, tmpdir = safe_server
    g = Guard(server, tmpdir)
    yield g
    g.check("after the test")


def ids(server: Server) -> tuple[list[str], list[str]]:
    """``(all image ids, ids with a final label)``."""
    objects = MONAILabelClient(server.url).datastore()["objects"]
    return sorted(objects), sorted(k for k, v in objects.items() if "final" in v["labels"])


# --------------------------------------------------------------------------- the validator
def test_one_validator_for_tags_ids_and_origins() -> None:
    if str(APP_DIR) not in sys.path:
        sys.path.insert(0, str(APP_DIR))
    from lib.conf import parse_hosts, parse_origins
    from lib.datastore import check_label_tag
    from lib.errors import AppRequestError, InvalidNameError
    from lib.names import check_image_id, is_inside

    for tag in ["final", "pseudo", "original", "my_tag-2"]:
        assert check_label_tag(tag) == tag
    for tag in [*BAD_TAGS, None, 3, "final_deleted", "Final", "a" * 200, "tag\n"]:
        with pytest.raises(InvalidNameError, match="tag") as info:
            check_label_tag(tag)
        assert info.value.status_code == 422
    for image_id in ["BraTS2021_00000", "Brats18_SYN_0001_1", "case.v2"]:
        assert check_image_id(image_id) == image_id
    for image_id in ["../x", "/etc/passwd", "a/b", "a\\b", ".", "..", ".hidden", "x.", "", None, "a b", "c:\\x"]:
        with pytest.raises(InvalidNameError, match="image"):
            check_image_id(image_id)
    assert is_inside("/a/b/../b/c", "/a/b") and not is_inside("/a/b/../c", "/a/b")
    assert parse_origins("http://127.0.0.1:8000, https://viewer.example") == ("http://127.0.0.1:8000",
                                                                             "https://viewer.example")
    assert parse_origins('["http://A.example:1/"]') == ("http://a.example:1",)
    for bad in ["127.0.0.1:8000", "ftp://x", "http://x/path", "[1"]:
        with pytest.raises(AppRequestError, match="cors_origins"):
            parse_origins(bad)
    assert parse_hosts("Labelling.example, proxy.example:443,") == ("labelling.example", "proxy.example:443")
    for bad in ["http://x", "x/y", "*.example", "a@b", "x:port", "[::1"]:
        with pytest.raises(AppRequestError, match="allowed_hosts"):
            parse_hosts(bad)


# --------------------------------------------------------------------------- 1. model output vs final
def test_model_output_never_reaches_final_whatever_the_spelling(safe_server: tuple[Server, Path], guard: Guard) -> None:
    server, _ = safe_server
    _, finals = ids(server)
    for tag in ["final/", "./final", "FINAL", "pseudo/", "final/../final"]:
        response = requests.post(f"{server.url}/infer/transbts", params={"image": finals[0]},
                                 data={"params": json.dumps({"label_tag": tag, "save_label": True})}, timeout=120)
        expect(response, 422, "label_tag", repr(tag))
    response = requests.post(f"{server.url}/infer/transbts", params={"image": finals[0]},
                             data={"params": json.dumps({"label_tag": "final", "save_label": True})}, timeout=120)
    expect(response, 409, "label_tag", "clinician labels only")
    with pytest.raises(MONAILabelClientException, match="409"):
        MONAILabelClient(server.url).infer("transbts", finals[1], {"label_tag": "final", "save_label": True})
    # the stock infer took any text for true; here save_label is true or false
    response = requests.post(f"{server.url}/infer/transbts", params={"image": finals[0]},
                             data={"params": json.dumps({"label_tag": "final", "save_label": "maybe"})}, timeout=120)
    expect(response, 422, "save_label")
    # batch infer may not target final either, under any spelling
    for tag in ["final", "final/", "./final"]:
        response = requests.post(f"{server.url}/batch/infer/transbts", params={"images": "all"},
                                 json={"label_tag": tag}, timeout=30)
        expect(response, 422, "label_tag")
    guard.check("infer / batch infer with a final tag")


# --------------------------------------------------------------------------- 2. tags stay inside labels/
def test_label_tags_are_plain_names(safe_server: tuple[Server, Path], guard: Guard) -> None:
    server, _ = safe_server
    all_ids, finals = ids(server)
    unlabelled = sorted(set(all_ids) - set(finals))[0]
    for tag in BAD_TAGS:
        if tag == "":
            continue  # an empty tag means "final" to MONAI Label (a clinician submission)
        response = requests.put(f"{server.url}/datastore/label", params={"image": unlabelled, "tag": tag},
                                files={"label": ("label.nii.gz", label_bytes(server, unlabelled))}, timeout=60)
        expect(response, 422, "tag")
        for method, url, params in [
            ("GET", "/datastore/label", {"label": unlabelled, "tag": tag}),
            ("GET", "/datastore/label/info", {"label": unlabelled, "tag": tag}),
            ("DELETE", "/datastore/label", {"id": finals[0], "tag": tag}),
        ]:
            expect(requests.request(method, f"{server.url}{url}", params=params, timeout=30), 422, "tag")
    assert sorted(p.name for p in (server.studies / "labels").iterdir()) == ["final", "original"]
    guard.check("bad tags")


# --------------------------------------------------------------------------- 3./4. ids are never paths
def test_image_ids_are_never_paths(safe_server: tuple[Server, Path], guard: Guard) -> None:
    server, _ = safe_server
    all_ids, finals = ids(server)
    decoy = server.studies.parent / "decoy.nii.gz"
    decoy_dir = server.studies.parent / "decoy_dir"
    upload = {"file": ("x.nii.gz", decoy.read_bytes())}
    bad_ids = [str(decoy), str(decoy.with_suffix("")), "../decoy", "../x", "labels/final/" + finals[0], "..", ".hidden",
               str(decoy_dir), "/etc/passwd", "a/b"]
    for bad in bad_ids:
        expect(requests.put(f"{server.url}/datastore/image", params={"image": bad}, files=upload, timeout=60), 422, "image")
        expect(requests.delete(f"{server.url}/datastore/image", params={"id": bad}, timeout=30), 422, "id")
        expect(requests.get(f"{server.url}/datastore/image", params={"image": bad}, timeout=30), 422, "image")
        expect(requests.get(f"{server.url}/datastore/image/info", params={"image": bad}, timeout=30), 422, "image")
        # infer: the same 422 whether the path exists or not (no oracle for files outside studies)
        expect(requests.post(f"{server.url}/infer/transbts", params={"image": bad}, timeout=60), 422, "image")
        expect(requests.post(f"{server.url}/infer/transbts", params={"image": all_ids[0]},
                             data={"params": json.dumps({"image": bad})}, timeout=60), 422, "image")
        expect(requests.put(f"{server.url}/datastore/label", params={"image": bad, "tag": "final"},
                            files={"label": ("l.nii.gz", label_bytes(server, finals[0]))}, timeout=60), 422, "image")
    expect(requests.post(f"{server.url}/infer/transbts", params={"image": all_ids[0]},
                         data={"params": json.dumps({"label": str(decoy)})}, timeout=60), 422, "label")
    expect(requests.post(f"{server.url}/batch/infer/transbts", params={"images": "unlabeled"},
                         json={"label_tag": "pseudo", "images": ["../x"]}, timeout=30), 422, "images[0]")
    expect(requests.post(f"{server.url}/infer/no_such_model", params={"image": all_ids[0]}, timeout=60), 404, "model")
    assert (decoy_dir / "keep.txt").read_text() == "keep"
    # a well-formed id that is not listed is a 404, never a bare 500
    expect(requests.post(f"{server.url}/infer/transbts", params={"image": "no_such_case"}, timeout=60), 404, "no_such_case")
    guard.check("path ids")


# --------------------------------------------------------------------------- final is write-once
def test_final_labels_keep_history_and_cannot_be_deleted(safe_server: tuple[Server, Path], guard: Guard) -> None:
    server, _ = safe_server
    all_ids, finals = ids(server)
    target = finals[0]
    final_file = server.studies / "labels" / "final" / f"{target}.nii.gz"

    expect(requests.delete(f"{server.url}/datastore/label", params={"id": target, "tag": "final"}, timeout=30),
           409, "allow_final_delete")
    expect(requests.delete(f"{server.url}/datastore/image", params={"id": target}, timeout=30), 409, "allow_final_delete")
    expect(requests.delete(f"{server.url}/datastore/label", params={"id": target, "tag": "pseudo"}, timeout=30),
           404, "no label with tag")
    guard.check("deletes refused")

    # a re-submission (Slicer's Submit Label) replaces final and keeps the previous version
    before = sha256(final_file)
    image = nib.load(server.studies / f"{target}.nii.gz")
    corrected = np.asarray(nib.load(final_file).dataobj).copy()
    corrected[0, 0, 0] = 2 if corrected[0, 0, 0] != 2 else 1
    path = nifti_gz(server.studies.parent.parent / "corrected.nii.gz", corrected.astype(np.uint8), image.affine)
    MONAILabelClient(server.url).save_label(target, str(path), tag="final")
    path.unlink()
    history = sorted((server.studies / "labels" / "final_history" / target).glob("*.nii.gz"))
    assert len(history) == 1 and sha256(history[0]) == before
    assert sha256(final_file) != before and np.array_equal(np.asarray(nib.load(final_file).dataobj), corrected)
    assert target in ids(server)[1]
    assert len(MONAILabelClient(server.url).datastore()["objects"]) == len(all_ids)
    guard.finals = final_hashes(server.studies)  # the one intended change; nothing else may differ


# --------------------------------------------------------------------------- pseudo delete, strategy
def test_deleting_a_pseudo_label_removes_its_sidecar_and_unknown_names_are_4xx(
    safe_server: tuple[Server, Path], guard: Guard
) -> None:
    server, _ = safe_server
    all_ids, finals = ids(server)
    case = sorted(set(all_ids) - set(finals))[-1]
    response = requests.put(f"{server.url}/datastore/label", params={"image": case, "tag": "pseudo"},
                            files={"label": ("l.nii.gz", label_bytes(server, case))}, timeout=60)
    assert response.status_code == 200, response.text
    sidecar = server.studies / "labels" / "pseudo" / f"{case}.json"
    sidecar.write_text(json.dumps({"case": case, "uncertainty": 0.5}))
    response = requests.delete(f"{server.url}/datastore/label", params={"id": case, "tag": "pseudo"}, timeout=30)
    assert response.status_code == 200, response.text
    assert not (server.studies / "labels" / "pseudo" / f"{case}.nii.gz").exists() and not sidecar.exists()
    assert "pseudo" not in MONAILabelClient(server.url).datastore()["objects"][case]["labels"]
    (server.studies / "labels" / "pseudo").rmdir()  # the test made it; leave the tag list as it was

    expect(requests.post(f"{server.url}/activelearning/no_such_strategy", json={}, timeout=30), 404, "no_such_strategy")
    expect(requests.post(f"{server.url}/train/transbts", json={"max_epochs": 0}, timeout=30), 400, "max_epochs")
    # every train and pool option is parsed in the server before the task starts (lib/conf.py):
    # a value of the wrong kind is a 422 naming the field, one out of range a 400
    for field, value in [("train_batch_size", "x"), ("learning_rate", "fast"), ("val_interval", "2.5"),
                         ("num_workers", "many"), ("multi_gpu", "maybe"), ("ranks", "two"), ("q", "abc")]:
        expect(requests.post(f"{server.url}/train/transbts", json={field: value}, timeout=30), 422, field, repr(value))
    expect(requests.post(f"{server.url}/train/transbts", json={"train_batch_size": 0}, timeout=30), 400, "train_batch_size")
    expect(requests.post(f"{server.url}/batch/infer/transbts", params={"images": "unlabeled"},
                         json={"label_tag": "pseudo", "batch_size": "x"}, timeout=30), 422, "batch_size")
    assert requests.get(f"{server.url}/train/", timeout=30).json().get("status") != "RUNNING"
    expect(requests.post(f"{server.url}/train/no_such_model", json={}, timeout=30), 404, "model")
    expect(requests.post(f"{server.url}/scoring/no_such_method", timeout=30), 404, "method")


# --------------------------------------------------------------------------- 8. uploads
def test_uploads_are_checked_from_the_header_and_never_left_behind(
    safe_server: tuple[Server, Path], guard: Guard, tmp_path: Path
) -> None:
    server, _ = safe_server
    all_ids, finals = ids(server)
    huge = huge_header_gz(tmp_path / "huge.nii.gz")
    assert huge.stat().st_size < 200 * 1024
    expect(requests.put(f"{server.url}/datastore/image", params={"image": "huge_case"},
                        files={"file": ("huge.nii.gz", huge.read_bytes())}, timeout=60), 413, "max_upload")
    expect(requests.put(f"{server.url}/datastore/label", params={"image": finals[0], "tag": "final"},
                        files={"label": ("huge.nii.gz", huge.read_bytes())}, timeout=60), 422, "(512, 512, 512)")
    # within the caps, but the data stops long before the 64³ float32 voxels its header announces
    truncated = huge_header_gz(tmp_path / "truncated.nii.gz", shape=(64, 64, 64))
    expect(requests.put(f"{server.url}/datastore/image", params={"image": "truncated_case"},
                        files={"file": ("truncated.nii.gz", truncated.read_bytes())}, timeout=60), 422, "truncated")
    wrong = nifti_gz(tmp_path / "wrong.nii.gz", np.zeros((16, 16, 16), np.uint8))
    expect(requests.put(f"{server.url}/datastore/label", params={"image": finals[0], "tag": "final"},
                        files={"label": ("wrong.nii.gz", wrong.read_bytes())}, timeout=60), 422, "(16, 16, 16)")
    expect(requests.put(f"{server.url}/datastore/label", params={"image": finals[0], "tag": "final"},
                        files={"label": ("junk.nii.gz", b"not a nifti")}, timeout=60), 422, "NIfTI")
    expect(requests.put(f"{server.url}/datastore/image", params={"image": "junk_case"},
                        files={"file": ("junk.txt", b"hello")}, timeout=60), 422, "NIfTI")
    expect(requests.put(f"{server.url}/datastore/image", params={"image": all_ids[0]},
                        files={"file": ("x.nii.gz", (server.studies / f"{all_ids[0]}.nii.gz").read_bytes())},
                        timeout=60), 409, "already exists")
    # an infer with an uploaded file: the server's own temporary file is accepted as the image
    # (TransBTS then needs the 4 modalities: 422), and it is removed afterwards
    expect(requests.post(f"{server.url}/infer/transbts",
                         files={"file": ("up.nii.gz", (server.studies / f"{all_ids[0]}.nii.gz").read_bytes())},
                         timeout=60), 422, "modalities")
    # a body declared larger than the cap is refused before it is read
    connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=30)
    connection.putrequest("PUT", "/datastore/image?image=big_case")
    connection.putheader("Content-Type", "multipart/form-data; boundary=x")
    connection.putheader("Content-Length", str(2**40))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "max_upload_bytes" in json.loads(response.read())["detail"]
    connection.close()
    guard.check("rejected uploads")
    # a successful infer, and the dataset ZIP MONAI Label builds in the temp folder, leave nothing either
    label_file, params = MONAILabelClient(server.url).infer("transbts", all_ids[0], {})
    assert params["model_state"] == "untrained"
    os.unlink(label_file)
    response = requests.get(f"{server.url}/datastore/dataset", timeout=60)
    assert response.status_code == 200 and response.content[:2] == b"PK"


# --------------------------------------------------------------------------- 7. cross-origin
def test_foreign_origins_are_refused_without_a_preflight(safe_server: tuple[Server, Path], guard: Guard) -> None:
    server, _ = safe_server
    all_ids, finals = ids(server)
    evil = {"Origin": "http://evil.example"}
    expect(requests.post(f"{server.url}/infer/transbts", params={"image": all_ids[0]}, headers=evil, timeout=30),
           403, "evil.example")
    expect(requests.post(f"{server.url}/batch/infer/transbts", headers=evil, json={}, timeout=30), 403, "cross-origin")
    expect(requests.get(f"{server.url}/datastore/dataset", headers=evil, timeout=30), 403, "cross-origin")
    expect(requests.options(f"{server.url}/infer/transbts", timeout=30,
                            headers={**evil, "Access-Control-Request-Method": "POST"}), 403, "cross-origin")
    # a page served under another name resolving to 127.0.0.1 (DNS rebinding) is not "same origin"
    expect(requests.get(f"{server.url}/info/", headers={"Origin": "http://rebind.example:1", "Host": "rebind.example:1"},
                        timeout=30), 403, "Host")
    assert requests.get(f"{server.url}/info/", headers={"Origin": server.url}, timeout=30).status_code == 200
    assert requests.get(f"{server.url}/info/", timeout=30).status_code == 200  # Slicer sends no Origin
    guard.check("cross-origin")


# --------------------------------------------------------------------------- H1. DNS rebinding: Host
def raw_get_http10(server: Server, path: str) -> tuple[int, bytes]:
    """``GET path HTTP/1.0`` with no ``Host`` header at all; ``(status, body)``."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_a_foreign_host_name_is_refused_even_without_an_origin(safe_server: tuple[Server, Path], guard: Guard) -> None:
    """A DNS-rebinding page sends ``Host: attacker.example:<port>`` and no ``Origin`` on a GET."""
    server, _ = safe_server
    _, finals = ids(server)
    port = int(server.url.rsplit(":", 1)[1])
    reads = ["/datastore/dataset", "/model/transbts", f"/datastore/label?label={finals[0]}&tag=final",
             "/datastore/?output=all", "/logs/", "/info/"]
    for host in [f"attacker.example:{port}", "attacker.example", f"127.0.0.1:{port + 1}", f"localhost:{port + 1}",
                 f"localhost.attacker.example:{port}", f"{ALLOWED_HOST}.attacker.example", "[::1", "a@127.0.0.1"]:
        for path in reads:
            expect(requests.get(f"{server.url}{path}", headers={"Host": host}, timeout=30), 403, "Host", "allowed_hosts")
    expect(requests.post(f"{server.url}/infer/transbts", params={"image": finals[0]},
                         headers={"Host": f"attacker.example:{port}"}, timeout=30), 403, "Host")
    # the server's own names on its port, the configured name, and HTTP/1.0 without a Host
    for host in [f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", f"[::1]:{port}", ALLOWED_HOST,
                 f"{ALLOWED_HOST}:{port}"]:
        response = requests.get(f"{server.url}/info/", headers={"Host": host}, timeout=30)
        assert response.status_code == 200, (host, response.text)
    status, body = raw_get_http10(server, "/info/")
    assert status == 200 and json.loads(body)["name"], body[:200]
    guard.check("foreign Host names")


# --------------------------------------------------------------------------- H3. chunked uploads
def stream_chunked(server: Server, method: str, path: str, field: str, total: int) -> tuple[int, str, int]:
    """Send a chunked multipart upload of up to ``total`` bytes while waiting for the answer.

    Returns ``(status, detail, bytes sent when the answer came)``; the sender stops as soon as the
    server answered (or closed the connection).
    """
    port = int(server.url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.putrequest(method, path)
    connection.putheader("Content-Type", "multipart/form-data; boundary=zz")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    sock = connection.sock
    head = (f'--zz\r\nContent-Disposition: form-data; name="{field}"; filename="big.nii.gz"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    sent = [0]
    answered = threading.Event()

    def sender() -> None:
        chunk = b"\0" * (64 << 10)
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
            while sent[0] < total and not answered.is_set():
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent[0] += len(chunk)
            if not answered.is_set():
                tail = b"\r\n--zz--\r\n"
                sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail))
        except OSError:
            pass  # the server closed the connection after its answer

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        response = connection.getresponse()
        at_answer = sent[0]
        answered.set()
        body = response.read()
    finally:
        answered.set()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        connection.close()
        thread.join(timeout=60)
    try:
        detail = json.loads(body).get("detail", "")
    except ValueError:
        detail = body[:200].decode("latin-1")
    return response.status, str(detail), at_answer


def test_chunked_uploads_are_cut_off_at_the_cap(safe_server: tuple[Server, Path], guard: Guard) -> None:
    """No ``Content-Length``: the body is counted as it arrives and refused once past the cap,
    instead of being spooled to disk whole (64 MiB offered; the cap is 2 MiB)."""
    server, _ = safe_server
    _, finals = ids(server)
    total = 64 << 20
    for method, path, field in [("PUT", "/datastore/image?image=chunked_case", "file"),
                                ("PUT", f"/datastore/label?image={finals[0]}&tag=final", "label"),
                                ("POST", f"/infer/transbts?image={finals[0]}", "file")]:
        status, detail, at_answer = stream_chunked(server, method, path, field, total)
        assert status == 413 and "max_upload_bytes" in detail, (path, status, detail)
        # answered while the client was still sending (socket buffers hold a few MiB at most)
        assert at_answer < total // 2, (path, at_answer)
    assert "chunked_case" not in ids(server)[0]
    guard.check("chunked uploads")


# --------------------------------------------------------------------------- H2/H4. sessions
def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def session_store_listing() -> set[str]:
    """What MONAI Label's default session store (``~/.cache/monailabel/sessions``) holds."""
    store = Path.home() / ".cache" / "monailabel" / "sessions"
    return {str(p) for p in store.rglob("*")} if store.is_dir() else set()


def test_sessions_are_off_by_default(safe_server: tuple[Server, Path], guard: Guard, tmp_path: Path) -> None:
    server, _ = safe_server
    all_ids, _ = ids(server)
    before = session_store_listing()
    image = (server.studies / f"{all_ids[0]}.nii.gz").read_bytes()
    expect(requests.put(f"{server.url}/session/", params={"uncompress": "true"},
                        files={"files": ("b.zip", zip_bytes({"a.nii.gz": image}))}, timeout=60), 403, "--conf sessions true")
    expect(requests.put(f"{server.url}/session/", params={"uncompress": "true"},
                        files={"files": ("x.zip", b"not a zip")}, timeout=60), 403, "sessions")
    expect(requests.put(f"{server.url}/session/", files={"files": ("a.nii.gz", image)}, timeout=60), 403, "sessions")
    expect(requests.get(f"{server.url}/session/some-id", params={"image": "true"}, timeout=30), 403, "sessions")
    expect(requests.delete(f"{server.url}/session/some-id", timeout=30), 403, "sessions")
    expect(requests.post(f"{server.url}/infer/transbts", params={"session_id": "some-id"}, timeout=30), 403, "sessions")
    assert session_store_listing() == before
    guard.check("sessions off")


# --------------------------------------------------------------------------- malformed form fields
def test_malformed_params_and_file_names_are_422(safe_server: tuple[Server, Path], guard: Guard) -> None:
    server, _ = safe_server
    all_ids, finals = ids(server)
    case = sorted(set(all_ids) - set(finals))[0]
    for params in ["not json", "{", "[1, 2]", "3"]:
        expect(requests.post(f"{server.url}/infer/transbts", params={"image": case}, data={"params": params},
                             timeout=60), 422, "params")
        expect(requests.put(f"{server.url}/datastore/label", params={"image": case, "tag": "final"},
                            data={"params": params}, files={"label": ("l.nii.gz", label_bytes(server, case))},
                            timeout=60), 422, "params")
        expect(requests.put(f"{server.url}/datastore/image", params={"image": "params_case"}, data={"params": params},
                            files={"file": ("x.nii.gz", b"x")}, timeout=60), 422, "params")
    long_name = "a." + "b" * 400 + ".nii.gz"
    image = (server.studies / f"{case}.nii.gz").read_bytes()
    expect(requests.put(f"{server.url}/datastore/image", params={"image": "long_name_case"},
                        files={"file": (long_name, image)}, timeout=60), 422, "file", "name")
    expect(requests.put(f"{server.url}/datastore/label", params={"image": case, "tag": "final"},
                        files={"label": (long_name, label_bytes(server, case))}, timeout=60), 422, "label", "name")
    expect(requests.post(f"{server.url}/infer/transbts", files={"file": (long_name, image)}, timeout=60), 422, "file")
    assert "final" not in MONAILabelClient(server.url).datastore()["objects"][case]["labels"]
    assert {"params_case", "long_name_case"}.isdisjoint(ids(server)[0])
    guard.check("malformed form fields")


# --------------------------------------------------------------------------- 7. auth
@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, OidcIssuer]]:
    issuer = OidcIssuer({"ann": ("pw-ann", [ANNOTATOR, USER]), "adm": ("pw-adm", [ADMIN, ANNOTATOR, USER]),
                         "boss": ("pw-boss", [ADMIN])}).start()
    root = tmp_path_factory.mktemp("auth")
    source, studies = make_studies(root / "data")
    app_dir = copy_app(root / "app")
    (root / "tmp").mkdir()
    env = {"MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_REALM_URI": issuer.realm_uri, "TMPDIR": str(root / "tmp")}
    conf = {**TINY_CPU, "allow_final_delete": "true", "sessions": "true", "max_upload_bytes": str(UPLOAD_CAP)}
    server = start_server(app_dir, studies, source, root, conf, env=env, ready_statuses=(401,))
    try:
        yield server, issuer
    finally:
        stop_server(server)
        issuer.stop()


def login(issuer: OidcIssuer, user: str, password: str) -> dict[str, str]:
    response = requests.post(issuer.token_endpoint, data={"grant_type": "password", "username": user,
                                                          "password": password, "client_id": "monailabel-app"}, timeout=30)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_annotators_submit_admins_delete_and_anonymous_is_refused(auth_server: tuple[Server, OidcIssuer]) -> None:
    server, issuer = auth_server
    annotator, admin = login(issuer, "ann", "pw-ann"), login(issuer, "adm", "pw-adm")
    url = server.url

    # anonymous and forged tokens: 401
    assert requests.get(f"{url}/datastore/", timeout=30).status_code == 401
    assert requests.post(f"{url}/infer/transbts", params={"image": "x"}, timeout=30).status_code == 401
    forged = {"Authorization": f"Bearer {issuer.sign('adm', [ADMIN], key=issuer.other_key)}"}
    assert requests.get(f"{url}/datastore/", headers=forged, timeout=30).status_code == 401
    expired = {"Authorization": f"Bearer {issuer.sign('adm', [ADMIN], lifetime_s=-60)}"}
    assert requests.get(f"{url}/datastore/", headers=expired, timeout=30).status_code == 401

    # a valid RS256 token is accepted (MONAI Label 0.8.5's own check answered 401 to every one)
    objects = requests.get(f"{url}/datastore/", params={"output": "all"}, headers=annotator, timeout=30).json()["objects"]
    finals = sorted(k for k, v in objects.items() if "final" in v["labels"])
    case = sorted(set(objects) - set(finals))[0]
    studies = server.studies
    finals_before = final_hashes(studies)

    # the annotator submits a label ...
    response = requests.put(f"{url}/datastore/label", params={"image": case, "tag": "final"}, headers=annotator,
                            files={"label": ("l.nii.gz", label_bytes(server, case))}, timeout=60)
    assert response.status_code == 200, response.text
    # ... and can neither delete labels or images nor replace or delete the model
    assert requests.delete(f"{url}/datastore/label", params={"id": finals[0], "tag": "final"}, headers=annotator,
                           timeout=30).status_code == 403
    assert requests.delete(f"{url}/datastore/image", params={"id": finals[0]}, headers=annotator, timeout=30).status_code == 403
    response = requests.put(f"{url}/model/transbts", headers=annotator, files={"file": ("m.pt", b"junk")}, timeout=30)
    assert response.status_code == 403 and ADMIN in response.json()["detail"]
    assert requests.delete(f"{url}/model/transbts", headers=annotator, timeout=30).status_code == 403
    assert requests.get(f"{url}/datastore/dataset", headers=annotator, timeout=30).status_code == 403
    assert requests.delete(f"{url}/train/", headers=annotator, timeout=30).status_code == 403
    assert not (server.app_dir / "model" / "transbts_tiny.pt").exists()
    assert {k: v for k, v in final_hashes(studies).items() if k in finals_before} == finals_before

    # the admin may delete a final label here (allow_final_delete true): moved, never unlinked
    final_file = studies / "labels" / "final" / f"{finals[0]}.nii.gz"
    before = sha256(final_file)
    response = requests.delete(f"{url}/datastore/label", params={"id": finals[0], "tag": "final"}, headers=admin, timeout=30)
    assert response.status_code == 200, response.text
    moved = list((studies / "labels" / "final_deleted").glob(f"*/{finals[0]}.nii.gz"))
    assert not final_file.exists() and len(moved) == 1 and sha256(moved[0]) == before

    # roles do not stack (as in MONAI Label): a token with the admin role only is no annotator
    boss = login(issuer, "boss", "pw-boss")
    response = requests.put(f"{url}/datastore/label", params={"image": case, "tag": "final"}, headers=boss,
                            files={"label": ("l.nii.gz", label_bytes(server, case))}, timeout=60)
    assert response.status_code == 403 and ANNOTATOR in response.json()["detail"], response.text
    assert requests.get(f"{url}/datastore/", headers=boss, timeout=30).status_code == 403


def test_sessions_when_switched_on_stay_capped_in_the_temp_folder(auth_server: tuple[Server, OidcIssuer]) -> None:
    """``--conf sessions true``: the store is ``<TMPDIR>/robustlabel-sessions``; uploads and unpacked
    archives are capped; a non-ZIP or an escaping member is a 422 that leaves nothing behind."""
    server, issuer = auth_server
    user = login(issuer, "ann", "pw-ann")
    url = server.url
    tmpdir = server.studies.parent.parent / "tmp"
    store = tmpdir / "robustlabel-sessions"
    home_before = session_store_listing()
    image = (server.studies / f"{sorted(p.name for p in server.studies.glob('*.nii.gz'))[0]}").read_bytes()

    def put(name: str, data: bytes, uncompress: bool) -> requests.Response:
        return requests.put(f"{url}/session/", params={"uncompress": str(uncompress).lower()}, headers=user,
                            files={"files": (name, data)}, timeout=60)

    def leftovers() -> set[str]:
        return {str(p.relative_to(tmpdir)) for p in tmpdir.rglob("*")} - {"robustlabel-sessions"}

    before = leftovers()
    bomb = zip_bytes({"z.nii": bytes(3 * UPLOAD_CAP)})  # a few KiB that inflate past the cap
    assert len(bomb) < UPLOAD_CAP // 10
    expect(put("b.zip", bomb, True), 413, "max_upload_bytes")
    expect(put("x.zip", b"not a zip", True), 422, "ZIP")
    expect(put("s.zip", zip_bytes({"../escape.nii.gz": image}), True), 422, "outside")
    assert leftovers() == before, leftovers() - before

    response = put("a.zip", zip_bytes({"a.nii.gz": image}), True)
    assert response.status_code == 200, response.text
    info = response.json()["session_info"]
    assert Path(info["path"]).parent == store and Path(info["image"]).is_relative_to(store)
    session_id = response.json()["session_id"]
    assert requests.get(f"{url}/session/{session_id}", headers=user, timeout=30).status_code == 200
    # TransBTS needs the 4 modalities of a datastore image: a session image gets a 422, not a 500
    expect(requests.post(f"{url}/infer/transbts", params={"session_id": session_id}, headers=user, timeout=60),
           422, "modalities")
    assert requests.delete(f"{url}/session/{session_id}", headers=user, timeout=30).status_code == 200
    assert not (store / session_id).exists()
    # an archive of several files is a folder session: this app segments one image, so a 422
    response = put("two.zip", zip_bytes({"a.nii.gz": image, "b.nii.gz": image}), True)
    assert response.status_code == 200, response.text
    expect(requests.post(f"{url}/infer/transbts", params={"session_id": response.json()["session_id"]}, headers=user,
                         timeout=60), 422, "session_id")
    assert session_store_listing() == home_before


# --------------------------------------------------------------------------- removing an image
def test_removing_an_image_moves_it_with_its_modalities(studies_copy: Path) -> None:
    from lib.datastore import DELETED_IMAGES, FINAL_DELETED, BratsDatastore

    studies = studies_copy
    store = BratsDatastore(str(studies), allow_final_delete=True, auto_reload=False)
    finals = sorted(store.get_labeled_images())
    for case in [finals[0], sorted(set(store.list_images()) - set(finals))[0]]:
        files = {"image": studies / f"{case}.nii.gz", "modalities": studies / "modalities" / f"{case}.nii.gz"}
        hashes = {k: sha256(p) for k, p in files.items()}
        store.remove_image(case)
        assert not any(p.exists() for p in files.values()), "the image or its modalities stayed in the studies folder"
        moved = {"image": list((studies / DELETED_IMAGES).glob(f"*/{case}.nii.gz")),
                 "modalities": list((studies / DELETED_IMAGES).glob(f"*/modalities/{case}.nii.gz"))}
        assert {k: [sha256(p) for p in v] for k, v in moved.items()} == {k: [h] for k, h in hashes.items()}
        assert moved["image"][0].parent == moved["modalities"][0].parent.parent
        assert case not in BratsDatastore(str(studies), auto_reload=False).list_images()
    assert len(list((studies / "labels" / FINAL_DELETED).glob(f"*/{finals[0]}.nii.gz"))) == 1


# --------------------------------------------------------------------------- 5./6. datastore file
FAULT_SCRIPT = textwrap.dedent("""
    import builtins, json, os, sys
    sys.path.insert(0, sys.argv[1])
    from lib.datastore import BratsDatastore
    studies, mode, image = sys.argv[2], sys.argv[3], sys.argv[4]
    datastore = BratsDatastore(studies, auto_reload=False)
    name = "datastore_v2.json"
    if mode == "mid_write":
        real_open = builtins.open

        class HalfWriter:
            def __init__(self, fh):
                self.fh = fh
            def write(self, text):
                self.fh.write(text[: len(text) // 2])
                self.fh.flush()
                os.fsync(self.fh.fileno())
                os._exit({rc})
            def __getattr__(self, item):
                return getattr(self.fh, item)
            def __enter__(self):
                return self
            def __exit__(self, *exc):
                return self.fh.__exit__(*exc)

        def crashing_open(file, mode="r", *args, **kwargs):
            fh = real_open(file, mode, *args, **kwargs)
            if os.path.basename(str(file)).startswith(name) and ("w" in mode or "a" in mode):
                return HalfWriter(fh)
            return fh

        builtins.open = crashing_open
    elif mode == "before_rename":
        real_replace, real_rename = os.replace, os.rename

        def crash_on_datastore(src, dst, *args, **kwargs):
            if os.path.basename(str(dst)) == name:
                os._exit({rc})
            return real_replace(src, dst, *args, **kwargs)

        os.replace = os.rename = crash_on_datastore
    datastore.update_image_info(image, {{"fault_injection": mode}})
    sys.exit(0)
""").format(rc=CRASH_RC)


@pytest.fixture(scope="module")
def pristine_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A studies folder with its datastore file written by the app (2 finals, 4 without)."""
    _, studies = make_studies(tmp_path_factory.mktemp("store"))
    if str(APP_DIR) not in sys.path:
        sys.path.insert(0, str(APP_DIR))  # what MONAI Label does before it imports an app's lib/
    from lib.datastore import BratsDatastore

    BratsDatastore(str(studies), auto_reload=False)
    return studies


@pytest.fixture()
def studies_copy(pristine_store: Path, tmp_path: Path) -> Path:
    """A private copy of :func:`pristine_store` for one test."""
    return Path(shutil.copytree(pristine_store, tmp_path / "studies"))


@pytest.mark.parametrize("mode", ["mid_write", "before_rename"])
def test_a_crash_while_writing_the_datastore_file_loses_nothing(studies_copy: Path, mode: str) -> None:
    studies = studies_copy
    store_file = studies / "datastore_v2.json"
    before = store_file.read_bytes()
    records = json.loads(before)["objects"]
    image = sorted(records)[0]
    finals = final_hashes(studies)
    result = subprocess.run([sys.executable, "-c", FAULT_SCRIPT, str(APP_DIR), str(studies), mode, image],
                            capture_output=True, text=True, timeout=120)
    # the fault was injected: the write went through a temporary file and a rename
    assert result.returncode == CRASH_RC, (result.returncode, result.stderr[-2000:])
    assert store_file.read_bytes() == before, "the datastore file was changed in place"
    json.loads(store_file.read_text())  # still readable
    from lib.datastore import BratsDatastore

    reopened = BratsDatastore(str(studies), auto_reload=False)
    assert not reopened.recovered and reopened.json()["objects"].keys() == records.keys()
    assert all(reopened.json()["objects"][k]["labels"].keys() == v["labels"].keys() for k, v in records.items())
    assert not list(studies.glob("datastore_v2.json.*.tmp")), "the unfinished temporary file was not cleaned up"
    assert final_hashes(studies) == finals


@pytest.mark.parametrize("content", [b"", b"{\"objects\": {\"trunc", b"\x00\x00\x00"])
def test_a_corrupt_datastore_file_is_rebuilt_from_the_files_on_disk(studies_copy: Path, content: bytes) -> None:
    from lib.datastore import PSEUDO, BratsDatastore

    studies = studies_copy
    store = BratsDatastore(str(studies), auto_reload=False)
    finals = sorted(store.get_labeled_images())
    case = sorted(set(store.list_images()) - set(finals))[0]
    label = nib.load(studies / "labels" / "final" / f"{finals[0]}.nii.gz")
    image = nib.load(studies / f"{case}.nii.gz")
    path = nifti_gz(studies.parent / "p.nii.gz", np.asarray(label.dataobj).astype(np.uint8), image.affine)
    sidecar = {"case": case, "tag": PSEUDO, "teacher": {"sha256": "ab" * 32}, "uncertainty": 0.25}
    store.save_label(case, str(path), PSEUDO, {"model": "transbts", "uncertainty": 0.25}, sidecar=sidecar)
    expected = {k: set(v["labels"]) for k, v in store.json()["objects"].items()}

    (studies / "datastore_v2.json").write_bytes(content)
    rebuilt = BratsDatastore(str(studies), auto_reload=False)  # never refuses to start
    assert rebuilt.recovered
    assert {k: set(v["labels"]) for k, v in rebuilt.json()["objects"].items()} == expected
    assert rebuilt.get_label_info(case, PSEUDO)["teacher"]["sha256"] == "ab" * 32
    assert rebuilt.get_label_info(case, PSEUDO)["uncertainty"] == 0.25
    assert len(list(studies.glob("datastore_v2.json.corrupt-*"))) == 1  # the evidence is kept
    json.loads((studies / "datastore_v2.json").read_text())


def test_two_processes_never_drop_each_others_records(studies_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server saves while the pool process (another datastore object, its own copy) saves too.

    The pool's write is injected at the worst moment: after the server read the datastore file and
    before it writes it (while it validates the uploaded label).  Each must keep the other's record,
    and a pseudo-label retired by a final label must stay retired.
    """
    import lib.datastore as ds

    studies = studies_copy
    server, pool = ds.BratsDatastore(str(studies), auto_reload=False), ds.BratsDatastore(str(studies), auto_reload=False)
    finals = sorted(server.get_labeled_images())
    x, y, z = sorted(set(server.list_images()) - set(finals))[:3]
    label = np.asarray(nib.load(studies / "labels" / "final" / f"{finals[0]}.nii.gz").dataobj).astype(np.uint8)
    files = {c: nifti_gz(studies.parent / f"{c}.nii.gz", label, nib.load(studies / f"{c}.nii.gz").affine) for c in (x, y, z)}
    pool.save_label(x, str(files[x]), ds.PSEUDO, {"model": "transbts", "uncertainty": 0.5}, sidecar={"case": x})

    real_validate = ds.validate_label_file
    injected: list[str] = []

    def validate_then_interleave(label_path: Any, image_path: Any, image_id: str) -> None:
        real_validate(label_path, image_path, image_id)
        if not injected:
            injected.append(image_id)
            if image_id == y:  # the server is saving y's final label: the pool saves z meanwhile
                pool.save_label(z, str(files[z]), ds.PSEUDO, {"model": "transbts", "uncertainty": 0.7}, sidecar={"case": z})
            else:  # the pool is saving z's pseudo-label: the server saves x's final label meanwhile
                server.save_label(x, str(files[x]), ds.FINAL, {"client_id": "slicer"})

    monkeypatch.setattr(ds, "validate_label_file", validate_then_interleave)
    server.save_label(y, str(files[y]), ds.FINAL, {"client_id": "slicer"})
    on_disk = json.loads((studies / "datastore_v2.json").read_text())["objects"]
    assert set(on_disk[y]["labels"]) == {"final"} and set(on_disk[z]["labels"]) == {"pseudo"}
    assert set(on_disk[x]["labels"]) == {"pseudo"}

    injected.clear()
    (studies / "labels" / "pseudo" / f"{z}.nii.gz").unlink()  # the pool relabels z
    pool._init_from_datastore_file()
    pool.save_label(z, str(files[z]), ds.PSEUDO, {"model": "transbts", "uncertainty": 0.6}, sidecar={"case": z})
    on_disk = json.loads((studies / "datastore_v2.json").read_text())["objects"]
    assert set(on_disk[x]["labels"]) == {"final"}, "a retired pseudo-label came back next to a final label"
    assert set(on_disk[z]["labels"]) == {"pseudo"} and on_disk[z]["labels"]["pseudo"]["info"]["uncertainty"] == 0.6
    assert not (studies / "labels" / "pseudo" / f"{x}.nii.gz").exists()
    assert not (studies / "labels" / "pseudo" / f"{x}.json").exists()
    assert on_disk[x]["image"]["info"].get("pseudo_confidence") is None


# --------------------------------------------------------------------------- 5./9. a real kill
def test_kill_9_during_pool_pseudo_labelling(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("kill")
    source, studies = make_studies(root / "data", cases=9, shape=(40, 40, 40))  # 3 finals, a pool of 6
    app_dir = copy_app(root / "app")
    server = start_server(app_dir, studies, source, root, TINY_CPU, log_name="server1.log")
    client = MONAILabelClient(server.url)
    try:
        client.train_start("transbts", {"max_epochs": 1})
        wait_for_task(client.train_status, "teacher training")
        finals = final_hashes(studies)
        pool = sorted(set(client.datastore()["objects"]) - {n[: -len(".nii.gz")] for n in finals})
        pseudo_dir = studies / "labels" / "pseudo"
        response = requests.post(f"{server.url}/batch/infer/transbts", params={"images": "unlabeled"},
                                 json={"label_tag": "pseudo", "device": "cpu", "batch_size": 1}, timeout=30)
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + TASK_TIMEOUT_S
        while not list(pseudo_dir.glob("*.nii.gz")) and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(server.process.pid, signal.SIGKILL)  # the server only; its children are on their own
        server.process.wait(timeout=30)
        written_at_kill = len(list(pseudo_dir.glob("*.nii.gz")))
        assert 1 <= written_at_kill < len(pool), "the kill did not land during the pool run"
    except BaseException:
        stop_server(server)
        raise

    # no child keeps running or writing once the server is gone
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(server.process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(server.process.pid, signal.SIGKILL)
        pytest.fail("a background process of the killed server was still running 20 s later")
    snapshot = tree(studies)
    time.sleep(2)
    assert tree(studies) == snapshot, "something kept writing after the server was killed"
    store = json.loads((studies / "datastore_v2.json").read_text())  # readable, never truncated
    assert final_hashes(studies) == finals
    complete = {c: v["labels"]["pseudo"]["info"]["teacher"]["sha256"] for c, v in store["objects"].items()
                if "pseudo" in v["labels"] and "teacher" in v["labels"]["pseudo"]["info"]}
    kept = {c: sha256(pseudo_dir / f"{c}.nii.gz") for c in complete}
    assert kept, "no pseudo-label was recorded before the kill"

    server = start_server(app_dir, studies, source, root, TINY_CPU, log_name="server2.log")
    try:
        client = MONAILabelClient(server.url)
        objects = client.datastore()["objects"]
        assert set(objects) == set(store["objects"])
        response = requests.post(f"{server.url}/batch/infer/transbts", params={"images": "unlabeled"},
                                 json={"label_tag": "pseudo", "device": "cpu"}, timeout=30)
        assert response.status_code == 200, response.text
        task = wait_for_task(lambda: batch_status(server.url), "pool rerun")
        objects = client.datastore()["objects"]
        assert all(set(objects[c]["labels"]) == {"pseudo"} for c in pool)
        assert all(objects[c]["labels"]["pseudo"]["info"]["teacher"]["sha256"] == sha for c, sha in complete.items())
        assert {c: sha256(pseudo_dir / f"{c}.nii.gz") for c in kept} == kept, "finished pseudo-labels were redone"
        done = [line for line in task["details"] if "Pseudo-labelling done" in line]
        summary = json.loads(done[-1].split("Pseudo-labelling done: ", 1)[1])
        assert {c for c, r in summary.items() if r["status"] == "written"} == set(pool) - set(complete)
        assert final_hashes(studies) == finals
    finally:
        stop_server(server)
