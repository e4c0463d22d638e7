"""Mean ± standard deviation of repeated measurements: the one summary and the one way to print it.

For the values :math:`x_1, \\dots, x_n` of one quantity (a metric over test cases, an accuracy
over seeds) that are not NaN,

.. math:: \\bar x = \\frac1n\\sum_i x_i, \\qquad s = \\sqrt{\\frac{1}{n-1}\\sum_i (x_i-\\bar x)^2}

(the sample standard deviation, ``ddof = 1``, as in the paper tables).  ``n`` counts the values
used; :math:`\\bar x` is undefined (NaN) for ``n = 0`` and :math:`s` for ``n < 2``.

* :func:`mean_std` - ``{"mean", "std", "n"}`` of one sequence of values;
* :func:`summarise` - :func:`mean_std` of every key of a list of records (e.g. one row of
  per-case metrics per test case);
* :func:`format_mean_std` - ``"0.8512 ± 0.0312"``, the text every table and log line uses.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Literal, TypeVar

import numpy as np

__all__ = ["format_mean_std", "mean_std", "summarise"]

K = TypeVar("K", bound=Hashable)


def mean_std(values: Iterable[float]) -> dict[str, float]:
    """``{"mean": x̄, "std": s, "n": n}`` of the non-NaN ``values`` (maths in the module docstring).

    ``mean`` is NaN when ``n == 0``; ``std`` is NaN when ``n < 2``.  ``n`` is an ``int``.
    """
    array = np.asarray([float(v) for v in values], dtype=np.float64)
    finite = array[~np.isnan(array)]
    n = int(finite.size)
    return {
        "mean": float(finite.mean()) if n else math.nan,
        "std": float(finite.std(ddof=1)) if n > 1 else math.nan,
        "n": n,
    }


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def summarise(rows: Iterable[Mapping[K, float]], keys: Sequence[K] | None = None) -> dict[K, dict[str, float]]:
    """:func:`mean_std` of each key over ``rows``: ``{key: {"mean", "std", "n"}}``.

    Args:
        rows: records such as ``{"case": "BraTS_001", "dice_WT": 0.85, "hd95_WT": 3.2}``; a row
            may lack a key (it then adds nothing to that key's ``n``), NaN values are left out.
        keys: the keys to summarise, in this order; keys that no row holds are skipped.
            ``None``: every key whose values are all real numbers, in order of first appearance
            (text fields such as ``"case"`` are ignored).
    """
    rows = list(rows)
    if keys is None:
        seen = list(dict.fromkeys(key for row in rows for key in row))
        keys = [key for key in seen if all(_is_number(row[key]) for row in rows if key in row)]
    summary: dict[K, dict[str, float]] = {}
    for key in keys:
        if any(key in row for row in rows):
            summary[key] = mean_std(row[key] for row in rows if key in row)
    return summary


def _defined(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def format_mean_std(
    stats: Mapping[str, float | None] | None,
    decimals: int = 4,
    with_n: bool | Literal["single"] = False,
    missing: str = "n/a",
) -> str:
    """``"0.8512 ± 0.0312"``; only the mean when there is no spread (``std`` absent, ``None`` or
    NaN); ``missing`` when there is no mean.

    Args:
        stats: ``{"mean", "std"[, "n"]}`` as :func:`mean_std` returns (``None`` allowed for
            ``mean``/``std``, e.g. a paper value without a std).
        decimals: digits after the point for both numbers.
        with_n: ``True`` appends the number of values, ``"0.8512 ± 0.0312 (n=57)"``;
            ``"single"`` appends it only to a single value, ``"77.12 (n=1)"`` (the paper tables'
            mark of a result without repeats); ``False`` never.  Needs ``"n"`` in ``stats``.
        missing: the text for no value (``"—"`` in the paper tables).
    """
    n = stats.get("n") if stats else None
    show_n = n is not None and (with_n is True or (with_n == "single" and int(n) == 1))
    suffix = f" (n={int(n)})" if show_n else ""
    if not stats or not _defined(stats.get("mean")):
        return missing + (suffix if with_n is True else "")
    text = f"{stats['mean']:.{decimals}f}"
    if _defined(stats.get("std")):
        text += f" ± {stats['std']:.{decimals}f}"
    return text + suffix
