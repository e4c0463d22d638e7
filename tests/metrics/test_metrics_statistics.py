"""robustlabel.metrics.statistics: the one mean ± std summary and its text."""

from __future__ import annotations

import math

import pytest

from robustlabel.metrics.statistics import format_mean_std, mean_std, summarise


def test_mean_std_is_the_sample_std_without_nan() -> None:
    stats = mean_std([70.0, 72.0, float("nan"), 74.0])
    assert stats == {"mean": pytest.approx(72.0), "std": pytest.approx(2.0), "n": 3}  # ddof = 1
    single, empty = mean_std([5.0]), mean_std([])
    assert single["mean"] == 5.0 and math.isnan(single["std"]) and single["n"] == 1
    assert math.isnan(empty["mean"]) and math.isnan(empty["std"]) and empty["n"] == 0


def test_summarise_keys_order_and_text_fields() -> None:
    rows = [{"case": "a", "b": 1.0, "a": 2.0}, {"case": "b", "b": 3.0}]
    assert list(summarise(rows)) == ["b", "a"]  # numeric keys in order of appearance; "case" ignored
    assert summarise(rows)["a"]["n"] == 1 and summarise(rows)["b"]["mean"] == 2.0
    assert list(summarise(rows, keys=["a", "missing", "b"])) == ["a", "b"]  # asked order; absent keys skipped
    cells = summarise([{("CE", "acc"): 1.0}, {("CE", "acc"): 2.0}])  # any hashable key, e.g. a table cell
    assert cells[("CE", "acc")]["mean"] == 1.5


@pytest.mark.parametrize(
    ("stats", "kwargs", "text"),
    [
        ({"mean": 77.123, "std": 0.456, "n": 3}, {"decimals": 2}, "77.12 ± 0.46"),
        ({"mean": 0.8342, "std": 0.0151, "n": 57}, {"with_n": True}, "0.8342 ± 0.0151 (n=57)"),
        ({"mean": 0.8342, "std": math.nan, "n": 1}, {}, "0.8342"),
        ({"mean": 77.0, "std": math.nan, "n": 1}, {"decimals": 2, "with_n": "single"}, "77.00 (n=1)"),
        ({"mean": 77.0, "std": 1.0, "n": 2}, {"decimals": 2, "with_n": "single"}, "77.00 ± 1.00"),
        ({"mean": 89.31, "std": None}, {"decimals": 2, "with_n": "single"}, "89.31"),  # a paper value: no n
        ({"mean": math.nan, "std": math.nan, "n": 0}, {"with_n": True}, "n/a (n=0)"),
        (None, {"missing": "—"}, "—"),
        ({"mean": None, "std": None, "n": 0}, {"with_n": "single", "missing": "—"}, "—"),
    ],
)
def test_format_mean_std(stats, kwargs, text) -> None:
    assert format_mean_std(stats, **kwargs) == text
