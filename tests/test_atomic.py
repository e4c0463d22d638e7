"""robustlabel.atomic: every writer leaves the old file or the whole new one, never a partial one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from robustlabel.atomic import (
    atomic_path,
    json_default,
    write_bytes_atomic,
    write_files_atomic,
    write_json_atomic,
    write_text_atomic,
)


def test_text_and_bytes_replace_the_old_file_and_create_folders(tmp_path: Path) -> None:
    target = tmp_path / "new" / "folder" / "table.md"
    write_text_atomic(target, "old")
    assert write_text_atomic(target, "| a |\n| ± |\n") == target
    assert target.read_text(encoding="utf-8") == "| a |\n| ± |\n"
    write_bytes_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert os.listdir(target.parent) == ["table.md"]  # no temporary file left


def test_json_is_pretty_numpy_and_path_aware(tmp_path: Path) -> None:
    obj = {"acc": np.float32(71.5), "n": np.int64(3), "ok": np.bool_(True), "v": np.arange(3), "p": tmp_path}
    path = write_json_atomic(tmp_path / "r.json", obj)
    text = path.read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "acc"')
    assert json.loads(text) == {"acc": 71.5, "n": 3, "ok": True, "v": [0, 1, 2], "p": str(tmp_path)}
    with pytest.raises(TypeError, match="cannot write object to JSON"):
        json_default(object())
    with pytest.raises(TypeError):  # nothing is written when the object cannot be encoded
        write_json_atomic(tmp_path / "bad.json", {"x": object()})
    assert os.listdir(tmp_path) == ["r.json"]


def test_failed_group_write_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_bytes(b"a file where a folder should be")
    with pytest.raises(OSError):
        write_files_atomic([(tmp_path / "a.bin", b"1"), (tmp_path / "blocker" / "b.bin", b"2")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]  # no a.bin, no temporary file


def test_atomic_path_hides_the_temporary_file_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "x.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".x.nii.gz.") and tmp.suffix == ".tmp"
        tmp.write_bytes(b"done")
        assert not target.exists()  # the target appears only when the body has finished
    assert target.read_bytes() == b"done"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError
    assert os.listdir(tmp_path) == ["x.nii.gz"] and target.read_bytes() == b"done"
