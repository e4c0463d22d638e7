"""Fig. 2 of Ju 2017: the curves come from the library's losses and autograd, and are written out."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from robustlabel.experiments.ju_loss_curves import loss_curves, run


def _sigmoid(f: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-f))


def test_curves_are_eq6_and_eq8_with_their_derivatives() -> None:
    curves = {c.name: c for c in loss_curves(points=41)}
    w_pos, w_neg, s_pos, s_neg = (curves[n] for n in (
        "weighted logistic (α=1, β=0.5) (+)", "weighted logistic (α=1, β=0.5) (−)", "sigmoid (+)", "sigmoid (−)"))
    f = w_pos.f
    assert f[0] == -5 and f[-1] == 5 and len(f) == 41
    np.testing.assert_allclose(w_neg.value, -0.5 * np.log(1 - _sigmoid(f)), rtol=1e-10)
    np.testing.assert_allclose(w_neg.derivative, 0.5 * _sigmoid(f), rtol=1e-10)
    np.testing.assert_allclose(s_neg.value, _sigmoid(f), rtol=1e-10)
    np.testing.assert_allclose(s_neg.derivative, _sigmoid(f) * (1 - _sigmoid(f)), rtol=1e-10)
    np.testing.assert_allclose(w_pos.value, s_pos.value, rtol=1e-12)  # α = 1: both are −log σ(f)
    np.testing.assert_allclose(s_pos.derivative, _sigmoid(f) - 1, rtol=1e-10, atol=1e-14)
    # the thesis' point: the sigmoid loss saturates, the weighted logistic loss keeps growing at rate β
    assert s_neg.derivative[-1] < 0.01 and w_neg.derivative[-1] == pytest.approx(0.5, abs=0.005)
    assert np.argmax(s_neg.derivative) == 20  # steepest at f = 0


def test_run_writes_table_csv_and_figure(tmp_path) -> None:
    files = run(tmp_path, points=11, alpha=1.0, beta=0.25)
    with open(files["csv"], newline="") as handle:
        cells = list(csv.DictReader(handle))
    assert len(cells) == 11 * 8 and {c["row"] for c in cells} == {f"{v:+.2f}" for v in np.linspace(-5, 5, 11)}
    cell = next(c for c in cells if c["row"] == "+5.00" and c["column"] == "weighted logistic (α=1, β=0.25) (−) dloss/df")
    assert float(cell["mean"]) == pytest.approx(0.25 * _sigmoid(5.0), rel=1e-9)
    assert "autograd" in files["markdown"].read_text()
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
