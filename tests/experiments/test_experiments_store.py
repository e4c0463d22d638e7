"""robustlabel.experiments.store: resume finished runs, refuse other settings, one writer per job."""

from __future__ import annotations

import numpy as np
import pytest

from robustlabel.atomic import write_text_atomic
from robustlabel.experiments.store import ResultsStore, rank_zero_store


def test_results_store_resume_and_settings_guard(tmp_path) -> None:
    path = tmp_path / "runs.json"
    store = ResultsStore(path, {"epochs": 2, "milestones": [1]})
    assert "seed0/ce" not in store
    store.put("seed0/ce", {"test_acc": np.float32(71.5), "n": np.int64(3)})
    reopened = ResultsStore(path, {"epochs": 2, "milestones": [1]})
    assert reopened.get("seed0/ce") == {"test_acc": 71.5, "n": 3}
    with pytest.raises(ValueError, match=r"different settings \(changed: epochs\)"):
        ResultsStore(path, {"epochs": 3, "milestones": [1]})
    assert ResultsStore(path, {"epochs": 3}, overwrite=True).runs == {}
    write_text_atomic(path, "{not json")
    with pytest.raises(ValueError, match="not a results file"):
        ResultsStore(path, {"epochs": 2})


def test_a_store_that_does_not_write_keeps_its_records(tmp_path) -> None:
    path = tmp_path / "runs.json"
    ResultsStore(path, {"epochs": 2}).put("seed0/ce", {"acc": 1.0})
    other_rank = ResultsStore(path, {"epochs": 2}, write=False)  # what ranks > 0 get from rank_zero_store
    assert "seed0/ce" in other_rank  # same skip decisions as rank 0
    other_rank.put("seed1/ce", {"acc": np.float64(2.0)})
    assert other_rank.get("seed1/ce") == {"acc": 2.0}
    assert "seed1/ce" not in ResultsStore(path, {"epochs": 2})  # ... but the file is rank 0's alone


def test_rank_zero_store_writes_in_a_single_process(tmp_path) -> None:
    store = rank_zero_store(tmp_path / "runs.json", {"epochs": 2})
    assert store.write  # no process group: this process is rank 0
    store.put("k", {"v": 1})
    assert ResultsStore(tmp_path / "runs.json", {"epochs": 2}).get("k") == {"v": 1}
