"""The known upstream warnings are silenced for every entry point, and nothing else is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_PROBE = """
import warnings
import robustlabel  # installs the filters before MONAI is imported
import torch
from monai.inferers import sliding_window_inference

x = torch.rand(1, 1, 24, 24, 24)
sliding_window_inference(x, (16, 16, 16), 2, lambda t: t)   # several windows
sliding_window_inference(x, (16, 16, 16), 2, lambda t: t)
x[[slice(None), slice(None)]]                               # the same deprecation from *our* code
print("PROBE-DONE")
"""


def _stderr_of(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr + proc.stdout


def test_sliding_window_noise_is_gone_but_own_indexing_still_warns(tmp_path: Path) -> None:
    out = _stderr_of([sys.executable, "-c", _PROBE], tmp_path)
    assert "PROBE-DONE" in out
    assert "torch.jit.interface" not in out
    # MONAI's two indexing sites are silenced; the one line left is the probe's own indexing
    assert out.count("non-tuple sequence for multidimensional indexing") == 1


def test_cli_prints_no_upstream_deprecation(tmp_path: Path) -> None:
    out = _stderr_of([sys.executable, "-m", "robustlabel.cli", "synth-brats", str(tmp_path / "syn"),
                      "--cases", "1", "--shape", "24", "24", "24"], tmp_path)
    assert "wrote 1 synthetic BraTS cases" in out
    assert "deprecated" not in out
