"""Ju 2017 moons (Figs. 3-4): data, margin, per-sample derivatives and the written table/figures."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch import nn

from robustlabel.experiments.ju_moons import (
    MoonsConfig,
    boundary_points,
    make_data,
    margin,
    models,
    per_sample_loss_and_derivative,
    run,
)


def test_half_of_the_positives_are_observed_negative() -> None:
    config = MoonsConfig(n_per_class=100)
    data = make_data(config, seed=0)
    assert data.x.shape == (200, 2) and np.bincount(data.y_true).tolist() == [100, 100]
    flipped = (data.y_true == 1) & (data.y_observed == 0)
    assert flipped.sum() == 50 and np.all(data.y_observed[data.y_true == 0] == 0)
    assert np.bincount(data.y_test).tolist() == [config.n_test_per_class] * 2
    assert not np.array_equal(make_data(config, seed=1).y_observed, data.y_observed)


def _linear(weight: list[float], bias: float) -> nn.Module:
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight]))
        layer.bias.fill_(bias)
    return layer


def test_margin_is_the_distance_to_the_boundary() -> None:
    net = _linear([1.0, 0.0], -0.5)  # boundary x = 0.5
    points = np.array([[1.0, 0.0], [0.8, 1.0], [2.0, -1.0]], dtype=np.float32)
    lo, hi = np.array([-3.0, -3.0]), np.array([3.0, 3.0])
    assert margin(net, points, lo, hi) == pytest.approx(np.mean([0.5, 0.3, 1.5]), abs=0.01)
    assert np.allclose(boundary_points(net, lo, hi)[:, 0], 0.5, atol=0.006)
    assert margin(_linear([0.0, 0.0], 1.0), points, lo, hi) is None  # everything positive: no boundary


def test_per_sample_derivatives_are_the_losses_derivatives() -> None:
    config = MoonsConfig()
    net = _linear([1.0, -0.5], 0.2)
    x = np.random.default_rng(0).normal(size=(30, 2)).astype(np.float32)
    y = (np.arange(30) % 2).astype(np.int64)
    f = x @ np.array([1.0, -0.5]) + 0.2
    s = 1 / (1 + np.exp(-f))
    by_name = {m.name: m for m in models(config)}
    loss, derivative = per_sample_loss_and_derivative(by_name["sigmoid"], net, x, y)
    np.testing.assert_allclose(loss, np.where(y == 1, -np.log(s), s), rtol=1e-5)
    np.testing.assert_allclose(derivative, np.where(y == 1, 1 - s, s * (1 - s)), rtol=1e-5)
    _, derivative = per_sample_loss_and_derivative(by_name["weighted logistic (1:0.5)"], net, x, y)
    np.testing.assert_allclose(derivative, np.where(y == 1, 1 - s, 0.5 * s), rtol=1e-5)


def test_run_writes_every_row_and_both_figures(tmp_path) -> None:
    config = MoonsConfig(n_per_class=60, n_test_per_class=200, steps=150, lr=0.05, seeds=(0, 1), grid=60)
    files = run(tmp_path, config)
    names = [m.name for m in models(config)]
    with open(files["csv"], newline="") as handle:
        cells = list(csv.DictReader(handle))
    assert [c["row"] for c in cells if c["column"] == "recall"] == names
    for c in cells:
        assert c["n"] == "2" and np.isfinite(float(c["mean"])), c
        if c["column"] != "margin":
            assert 0.0 <= float(c["mean"]) <= 1.0
    assert "param. sigmoid (α=1, β=2, γ=2)" in names
    for key in ("fig3", "fig4"):
        assert files[key].read_bytes()[:4] == b"\x89PNG"
    assert "margin" in files["markdown"].read_text()
