"""Helpers of the MONAI Label app tests: synthetic studies and a real server on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from robustlabel import cli
from robustlabel.engine.distributed import free_port

REPO = Path(__file__).resolve().parents[2]
APP_DIR = REPO / "apps" / "brats"
CASES, SHAPE, LABELED_FRACTION, SEED = 6, (32, 32, 32), 0.34, 0  # 6 cases, 2 with a final label
SERVER_START_TIMEOUT_S = 180


def make_studies(root: Path, cases: int = CASES, shape: tuple[int, int, int] = SHAPE) -> tuple[Path, Path]:
    """``(BraTS source, studies)``: synthetic cases imported with ``cases · LABELED_FRACTION`` final labels."""
    source, studies = root / "brats_source", root / "studies"
    assert cli.main(["synth-brats", str(source), "--cases", str(cases), "--shape", *map(str, shape), "--seed", str(SEED)]) == 0
    assert cli.main(["import-brats", str(source), str(studies), "--labeled-fraction", str(LABELED_FRACTION),
                     "--seed", str(SEED), "--no-progress"]) == 0
    return source, studies


def copy_app(target: Path) -> Path:
    """A private copy of apps/brats (the server creates model/, logs/ and bin/ inside its app folder)."""
    shutil.copytree(APP_DIR, target, ignore=shutil.ignore_patterns("model", "logs", "bin", "__pycache__"))
    return target


@dataclass
class Server:
    """A running ``monailabel start_server`` subprocess."""

    url: str
    process: subprocess.Popen
    log_path: Path
    app_dir: Path
    studies: Path
    source: Path

    def log_tail(self, lines: int = 200) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_server(app_dir: Path, studies: Path, source: Path, workdir: Path, conf: dict[str, str],
                 env: dict[str, str] | None = None, port: int | None = None,
                 ready_statuses: tuple[int, ...] = (200,), log_name: str = "server.log") -> Server:
    """Start the real server on a free port of 127.0.0.1 and wait until ``/info/`` answers.

    ``env`` is added to the server's environment (e.g. ``TMPDIR``, ``MONAI_LABEL_CORS_ORIGINS``,
    ``MONAI_LABEL_AUTH_*``); with auth on, ``/info/`` answers 401 once up (``ready_statuses``).
    """
    port = port or free_port()
    command = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app_dir), "--studies", str(studies),
               "--host", "127.0.0.1", "--port", str(port)]
    for key, value in conf.items():
        command += ["--conf", key, value]
    log_path = workdir / log_name
    log = open(log_path, "w")
    process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                               start_new_session=True)
    log.close()
    server = Server(f"http://127.0.0.1:{port}", process, log_path, app_dir, studies, source)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if requests.get(f"{server.url}/info/", timeout=5).status_code in ready_statuses:
                return server
        except requests.RequestException:
            pass
        time.sleep(1)
    stop_server(server)
    raise RuntimeError(f"server did not answer within {SERVER_START_TIMEOUT_S} s:\n{server.log_tail()}")


def stop_server(server: Server) -> None:
    """Terminate the server's process group (it spawns train/batch-infer subprocesses), then kill."""
    if server.process.poll() is None:
        try:
            os.killpg(server.process.pid, 15)
            server.process.wait(timeout=15)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(server.process.pid, 9)
            except ProcessLookupError:
                pass
            server.process.wait(timeout=15)


#: how long a train or batch-infer task of the tiny network may take in the tests
TASK_TIMEOUT_S = 240


def wait_for_task(status: Callable[[], dict[str, Any]], what: str, timeout_s: float = TASK_TIMEOUT_S) -> dict[str, Any]:
    """Poll a MONAI Label task status until it is DONE; fail with its log lines otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        task = status()
        if task.get("status") in ("DONE", "ERROR", "STOPPED"):
            assert task["status"] == "DONE", f"{what} ended {task['status']}: " + "\n".join(task.get("details", []))
            return task
        time.sleep(0.5)
    raise AssertionError(f"{what} did not finish within {timeout_s} s: {status()}")


def batch_status(url: str) -> dict[str, Any]:
    """``GET /batch/infer`` (SUBMITTED until the task has a status)."""
    response = requests.get(f"{url}/batch/infer", timeout=30)
    return response.json() if response.status_code == 200 else {"status": "SUBMITTED"}
