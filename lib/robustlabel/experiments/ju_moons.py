"""Ju 2017, Sec. 5.1.1, Figs. 3 and 4: PU learning on the two moons with a small MLP.

Data: :func:`sklearn.datasets.make_moons`, ``n`` points per class with Gaussian noise of std
``noise``; class 1 is positive.  A random half of the positives is observed as negative
(label 0), so positive labels are reliable and negative labels are noisy.

Model: an MLP with two hidden layers of six units (MONAI's
:class:`~monai.networks.nets.FullyConnectedNet`) and one output ``f``; ``σ(f)`` is the
predicted probability of the positive class.  One model per loss, trained full-batch with
Adam (:func:`robustlabel.engine.full_batch.fit_full_batch`):

* logistic: ``ce`` on the logits ``(0, f)``; class-weighted logistic (positive : negative =
  1 : 0.5): ``weighted_ce``; class-dependent sigmoid (Eq. 8): ``cd_sigmoid`` on ``f``;
* a logistic model trained on the *true* labels (the baseline boundary);
* the parametrised sigmoid of Sec. 6, ``α σ(β f)^γ`` for the negatives (``param_sigmoid``).

Measured on fresh clean points of the same distribution: recall and precision of the
positive class, and the **margin**, the mean Euclidean distance from the positive points to
the decision boundary ``{x : σ(f(x)) = 0.5}`` (located on a fine grid; unsigned).

Fig. 3 shows each model's ``σ(f)`` on a grid (red = negative, blue = positive, white near
0.5) with the training points; the marker area is the per-sample training loss divided by its
maximum within the observed class.  Fig. 4 is the same with ``|∂ℓ/∂f|``, the derivative with
respect to the last layer's output (autograd), normalised the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustlabel.engine.full_batch import fit_full_batch
from robustlabel.experiments.ju_loss_curves import two_logits
from robustlabel.losses import PixelwiseLoss, get_loss
from robustlabel.experiments.figures import pyplot, save_figure
from robustlabel.experiments.tables import Measurement, write_report

STEM = "moons_pu"
COLUMNS = ("recall", "precision", "margin")


@dataclass(frozen=True)
class MoonsConfig:
    """Every setting of the moons experiment (the thesis fixes only ``n_per_class``, the 6-6 MLP,
    the halved positives and the 1 : 0.5 weights; the rest are our choices, printed in the notes)."""

    n_per_class: int = 400
    noise: float = 0.1
    unlabelled_fraction: float = 0.5
    hidden: tuple[int, ...] = (6, 6)
    activation: str = "tanh"
    steps: int = 3000
    lr: float = 0.01
    n_test_per_class: int = 2000
    seeds: tuple[int, ...] = (0, 1, 2)
    weighted_alpha: float = 1.0
    weighted_beta: float = 0.5
    param_sigmoid: tuple[float, float, float] = (1.0, 2.0, 2.0)
    #: points per side of the figures' background grid
    grid: int = 300

    def __post_init__(self) -> None:
        if self.n_per_class < 2 or self.n_test_per_class < 2 or self.steps < 1 or not self.lr > 0 or not self.seeds:
            raise ValueError(f"invalid moons settings: {self}")
        if not 0 <= self.unlabelled_fraction < 1:
            raise ValueError(f"unlabelled_fraction must lie in [0, 1), got {self.unlabelled_fraction}")


@dataclass(frozen=True)
class Model:
    """One panel / table row: a loss on the single logit and whether it sees the true labels."""

    name: str
    loss: PixelwiseLoss
    two_logits: bool
    true_labels: bool = False


def models(config: MoonsConfig) -> list[Model]:
    """The five models of Figs. 3-4 (rows of the table), in panel order."""
    a, b, g = config.param_sigmoid
    wa, wb = config.weighted_alpha, config.weighted_beta
    return [
        Model("logistic", get_loss("ce", reduction="none"), True),
        Model(f"weighted logistic ({wa:g}:{wb:g})", get_loss("weighted_ce", weights=[wb, wa], reduction="none"), True),
        Model("sigmoid", get_loss("cd_sigmoid", reduction="none"), False),
        Model(f"param. sigmoid (α={a:g}, β={b:g}, γ={g:g})",
              get_loss("param_sigmoid", alpha=a, beta=b, gamma=g, reduction="none"), False),
        Model("true labels (logistic)", get_loss("ce", reduction="none"), True, true_labels=True),
    ]


class _OnLogit(nn.Module):
    """``loss`` applied to the network's single output ``f`` (as ``(0, f)`` for two-class losses), mean-reduced."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model

    def per_sample(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model.loss(two_logits(f) if self.model.two_logits else f, y)

    def forward(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.per_sample(f, y).mean()


@dataclass
class MoonsData:
    """Training points with true and observed labels, and fresh clean test points."""

    x: np.ndarray
    y_true: np.ndarray
    y_observed: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def make_data(config: MoonsConfig, seed: int) -> MoonsData:
    """Two moons (class 1 positive), a random ``unlabelled_fraction`` of the positives relabelled 0."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=(config.n_per_class, config.n_per_class), noise=config.noise, random_state=seed)
    x_test, y_test = make_moons(n_samples=(config.n_test_per_class, config.n_test_per_class), noise=config.noise,
                                random_state=10_000 + seed)
    positives = np.flatnonzero(y == 1)
    hidden = np.random.default_rng(seed).permutation(positives)[: int(round(config.unlabelled_fraction * len(positives)))]
    observed = y.copy()
    observed[hidden] = 0
    return MoonsData(x.astype(np.float32), y.astype(np.int64), observed.astype(np.int64),
                     x_test.astype(np.float32), y_test.astype(np.int64))


def build_mlp(config: MoonsConfig) -> nn.Module:
    """2 → 6 → 6 → 1 (by default) with ``config.activation``: MONAI's ``FullyConnectedNet``."""
    from monai.networks.nets import FullyConnectedNet

    return FullyConnectedNet(in_channels=2, out_channels=1, hidden_channels=list(config.hidden), act=config.activation,
                             dropout=None)


@torch.no_grad()
def _logit(network: nn.Module, x: np.ndarray) -> np.ndarray:
    return network(torch.as_tensor(x, dtype=torch.float32))[:, 0].numpy()


def boundary_points(network: nn.Module, lo: np.ndarray, hi: np.ndarray, resolution: int = 600) -> np.ndarray:
    """Midpoints of the grid edges where the predicted class changes: the boundary ``f = 0``, ``(M, 2)``."""
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    positive = _logit(network, np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)).reshape(gx.shape) > 0
    points = []
    for axis in (0, 1):
        a, b = [slice(None)] * 2, [slice(None)] * 2
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        change = positive[tuple(a)] != positive[tuple(b)]
        mid_x = (gx[tuple(a)] + gx[tuple(b)]) / 2
        mid_y = (gy[tuple(a)] + gy[tuple(b)]) / 2
        points.append(np.stack([mid_x[change], mid_y[change]], 1))
    return np.concatenate(points)


def margin(network: nn.Module, positives: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float | None:
    """Mean distance from ``positives`` to the decision boundary (``None`` when the grid holds none)."""
    from scipy.spatial import cKDTree

    boundary = boundary_points(network, lo, hi)
    if len(boundary) == 0:
        return None
    distance, _ = cKDTree(boundary).query(positives)
    return float(np.mean(distance))


def per_sample_loss_and_derivative(model: Model, network: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ℓ_i`` and ``|∂ℓ_i/∂f_i|`` (autograd on the output ``f``) of every training point."""
    with torch.no_grad():
        f = network(torch.as_tensor(x))
    f.requires_grad_(True)
    values = _OnLogit(model).per_sample(f, torch.as_tensor(y))
    (grad,) = torch.autograd.grad(values.sum(), f)
    return values.detach().numpy(), grad[:, 0].abs().numpy()


@dataclass
class FittedModel:
    """A trained network and its per-sample training quantities (for the figures)."""

    model: Model
    network: nn.Module
    labels: np.ndarray
    loss: np.ndarray
    derivative: np.ndarray
    metrics: dict[str, float | None] = field(default_factory=dict)


def extent(data: MoonsData, pad: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    both = np.concatenate([data.x, data.x_test])
    return both.min(0) - pad, both.max(0) + pad


def fit_models(config: MoonsConfig, data: MoonsData, seed: int) -> list[FittedModel]:
    """Train every model of :func:`models` on ``data`` (same initial weights for all) and measure it."""
    from sklearn.metrics import precision_score, recall_score

    lo, hi = extent(data)
    fitted = []
    for model in models(config):
        labels = data.y_true if model.true_labels else data.y_observed
        torch.manual_seed(seed)
        network = build_mlp(config)
        fit_full_batch(network, torch.as_tensor(data.x), torch.as_tensor(labels), _OnLogit(model),
                       steps=config.steps, lr=config.lr, description=f"seed {seed}: {model.name}")
        loss, derivative = per_sample_loss_and_derivative(model, network, data.x, labels)
        predicted = (_logit(network, data.x_test) > 0).astype(np.int64)
        metrics = {
            "recall": float(recall_score(data.y_test, predicted, zero_division=0)),
            "precision": float(precision_score(data.y_test, predicted, zero_division=0)),
            "margin": margin(network, data.x_test[data.y_test == 1], lo, hi),
        }
        fitted.append(FittedModel(model, network, labels, loss, derivative, metrics))
    return fitted


def _normalised_per_class(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = np.zeros_like(values, dtype=float)
    for k in np.unique(labels):
        members = labels == k
        top = values[members].max()
        out[members] = values[members] / top if top > 0 else 0.0
    return out


def plot_panels(path: str | Path, fitted: Sequence[FittedModel], data: MoonsData, quantity: str, title: str,
                resolution: int = 300) -> Path:
    """Fig. 3 (``quantity="loss"``) or Fig. 4 (``"derivative"``): ``σ(f)`` background (red negative,
    blue positive, white ≈ 0.5); red circles labelled positive, blue squares labelled negative;
    marker area ∝ the per-class normalised ``quantity``."""
    plt = pyplot()

    lo, hi = extent(data)
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    fig, axes = plt.subplots(1, len(fitted), figsize=(3.0 * len(fitted), 3.1), squeeze=False)
    for ax, fm in zip(axes[0], fitted):
        prob = 1.0 / (1.0 + np.exp(-_logit(fm.network, grid).reshape(gx.shape)))
        ax.contourf(gx, gy, prob, levels=np.linspace(0, 1, 21), cmap="RdBu", vmin=0, vmax=1)
        size = 2 + 40 * _normalised_per_class(getattr(fm, quantity), fm.labels)
        pos = fm.labels == 1
        ax.scatter(data.x[~pos, 0], data.x[~pos, 1], s=size[~pos], c="tab:blue", marker="s", edgecolors="w",
                   linewidths=0.3, label="labelled negative")
        ax.scatter(data.x[pos, 0], data.x[pos, 1], s=size[pos], c="tab:red", marker="o", edgecolors="k", linewidths=0.3,
                   label="labelled positive")
        ax.set_title(fm.model.name, fontsize="small")
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].legend(loc="lower left", fontsize="x-small", framealpha=0.8)
    fig.suptitle(title + "; background: σ(f), red = negative, blue = positive, white ≈ 0.5", fontsize="medium")
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)


def run(out: str | Path, config: MoonsConfig = MoonsConfig()) -> dict[str, Any]:
    """Train every model for every seed; write ``moons_pu.{csv,json,md}`` and the two figures
    (``moons_pu_fig3.png``, ``moons_pu_fig4.png``, from the first seed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    measurements, first = [], None
    for seed in config.seeds:
        data = make_data(config, seed)
        fitted = fit_models(config, data, seed)
        if first is None:
            first = (data, fitted)
        for fm in fitted:
            measurements += [Measurement(fm.model.name, col, v, seed) for col, v in fm.metrics.items() if v is not None]
    names = [m.name for m in models(config)]
    a, b, g = config.param_sigmoid
    notes = [
        f"**Data:** make_moons, {config.n_per_class} points per class, noise std {config.noise:g}; class 1 positive; "
        f"{100 * config.unlabelled_fraction:g} % of the positives observed as negative; a new sample per seed; "
        f"metrics on {config.n_test_per_class} fresh clean points per class",
        f"**Model:** MLP 2-{'-'.join(map(str, config.hidden))}-1, {config.activation} (MONAI FullyConnectedNet; "
        f"the thesis does not give the activation), full-batch Adam lr {config.lr:g}, {config.steps} steps, "
        "same initial weights for every loss of a seed",
        f"**Losses:** weighted logistic = thesis Eq. 6 with α = {config.weighted_alpha:g}, β = {config.weighted_beta:g}; "
        f"sigmoid = Eq. 8; param. sigmoid = α σ(βf)^γ for negatives with α = {a:g}, β = {b:g}, γ = {g:g} "
        "(our choice, the thesis gives no values)",
        "**Margin:** mean Euclidean distance from the clean test positives to the boundary σ(f) = 0.5 "
        "(grid of 600 x 600 over the data's extent, unsigned)",
        "The thesis reports no numbers for this experiment (Figs. 3-4 only).",
    ]
    files = write_report(out, STEM, title="Ju 2017 Sec. 5.1.1: PU learning on two moons (recall, precision, margin)",
                         measurements=measurements, rows=names, columns=list(COLUMNS), device="cpu", decimals=3,
                         row_header="Loss", notes=notes, extra={"config": asdict(config)})
    data, fitted = first
    fig3 = plot_panels(out / f"{STEM}_fig3.png", fitted, data, "loss",
                       f"Fig. 3: decision regions, marker size = per-class normalised training loss (seed {config.seeds[0]})",
                       resolution=config.grid)
    fig4 = plot_panels(out / f"{STEM}_fig4.png", fitted, data, "derivative",
                       f"Fig. 4: marker size = per-class normalised |∂ℓ/∂f| (seed {config.seeds[0]})", resolution=config.grid)
    return {"csv": files.csv, "json": files.json, "markdown": files.markdown, "fig3": fig3, "fig4": fig4,
            "cells": files.cells}
