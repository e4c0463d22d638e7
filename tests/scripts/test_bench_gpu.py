"""scripts/bench_gpu.sh --dry-run: the GPU benchmark runs end to end on the CPU with tiny sizes,
as the GPU machine would run it (robustlabel from lib/ on PYTHONPATH, no MONAI Label, no ignite),
and writes a report with every section.  No number is checked against a goal: tests never time."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from conftest import load_script

ROOT = Path(__file__).resolve().parents[2]

#: the GPU machine has neither: make their import fail in the benchmark's process
BLOCKER = "import sys\nfor name in ('monailabel', 'ignite'):\n    sys.modules[name] = None\n"


def test_bench_gpu_dry_run_writes_every_section(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(tmp_path / "site"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "report"
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "bench_gpu.sh"), str(out), "--dry-run", "--work", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (out / "bench_gpu.md").read_text()
    result = json.loads((out / "bench_gpu.json").read_text())
    sections = load_script("bench_gpu").SECTIONS
    for section in sections:
        assert f"\n## {section}\n" in text
    assert text.startswith(f"# GPU benchmark on {result['machine']['device']}") and "CPU dry run" in text
    assert result["dry_run"] is True and result["machine"]["device"].startswith("CPU")
    pool = result["pool"]
    assert pool["engine"]["volumes"] == 2 and pool["baseline"]["volumes"] == 1
    assert all(math.isfinite(v) and v > 0 for v in (pool["engine"]["volumes_per_s"], pool["baseline"]["volumes_per_s"]))
    assert sorted((r["batch"], r["precision"]) for r in result["training"]) == [
        (1, "bf16 autocast"), (1, "fp32"), (2, "bf16 autocast"), (2, "fp32")]
    assert all(r["peak_gib"] is None for r in result["training"])  # no CUDA: no memory figure is made up
    settings = result["infer"]["settings"]
    assert list(settings)[0] == "stock (no crop, overlap 0.5)" and len(settings) == 3
    assert settings["stock (no crop, overlap 0.5)"]["agreement_vs_stock"] == 1.0
    assert all(0.0 <= s["agreement_vs_stock"] <= 1.0 for s in settings.values())
    # the scratch data went into --work and was removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "site"]
