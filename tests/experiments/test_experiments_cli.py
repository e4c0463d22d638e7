"""robustlabel.experiments.cli: the shared start of every paper script."""

from __future__ import annotations

import argparse

import pytest

from robustlabel.experiments.cli import parse_float_pair, prepare_out_dir


def test_parse_float_pair() -> None:
    assert parse_float_pair("0.1,0.01") == (0.1, 0.01)
    for bad in ("0.1", "a,b", "1,2,3"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected two numbers"):
            parse_float_pair(bad)


def test_prepare_out_dir_resumes_or_starts_over(tmp_path) -> None:
    out = tmp_path / "out"
    prepare_out_dir(out, overwrite=False)
    (out / "runs").mkdir()
    (out / "runs" / "seed0.pt").write_bytes(b"x")
    (out / "runs.json").write_text("{}")
    (out / "keep.md").write_text("kept")
    assert prepare_out_dir(out, overwrite=False, remove=["runs", "runs.json"]) == out
    assert sorted(p.name for p in out.iterdir()) == ["keep.md", "runs", "runs.json"]  # resume: nothing removed
    prepare_out_dir(out, overwrite=True, remove=["runs", "runs.json", "absent"])
    assert sorted(p.name for p in out.iterdir()) == ["keep.md"]
