"""Cui et al., "Semi-supervised Learning using Robust Loss", Fig. 2: the toy example.

Three classes in 2-D, each a mixture of two Gaussians, plus a small mislabelled sub-cluster
in the bottom left whose points carry the label of the class on the far right.  A single-layer
perceptron (one ``nn.Linear(2, 3)``, softmax) is trained full-batch with Adam
(:func:`robustlabel.engine.full_batch.fit_full_batch`) under CE, β-CE, GCE and SCE.  CE bends its
decision boundaries towards the outliers; the robust losses leave them (almost) where a CE model
trained without the outliers puts them.

Outputs in ``out``: ``fig2_decision_regions.png`` (data panel + one panel per loss, first seed)
and ``toy_table.{md,csv,json}``: accuracy on a fresh clean test set drawn from the three
classes, and the share of the training outliers each model classifies with their wrong label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustlabel.engine.full_batch import fit_full_batch
from robustlabel.experiments.figures import DecisionPanel, plot_decision_regions
from robustlabel.experiments.tables import Measurement, write_report
from robustlabel.losses import get_loss

__all__ = ["ToyConfig", "ToyData", "make_toy_data", "run_toy", "toy_config"]

#: centres of the two Gaussian components of each class (top-left, top-right, bottom)
CLASS_COMPONENTS = {
    0: ((-2.5, 1.0), (-1.5, 2.5)),
    1: ((2.5, 1.0), (1.5, 2.5)),
    2: ((-0.8, -2.0), (0.8, -2.5)),
}
CLASS_NAMES = ("class 0", "class 1", "class 2")
ACCURACY = "Clean test accuracy"
FITTED = "Outliers fitted"
REFERENCE = "CE, no outliers (reference)"
#: seed offset of the clean test set (a fresh draw, disjoint from every training seed)
TEST_SEED_OFFSET = 10_000
#: --quick values of the settings left unset, and the full ones
QUICK = {"steps": 500, "seeds": (0, 1)}
FULL = {"steps": 2000, "seeds": (0, 1, 2)}


@dataclass(frozen=True)
class ToyData:
    """Points ``(N, 2)``, labels ``(N,)`` and which points are the mislabelled sub-cluster."""

    points: np.ndarray
    labels: np.ndarray
    is_outlier: np.ndarray


def make_toy_data(
    n_per_class: int, n_outliers: int, seed: int, spread: float = 0.6,
    outlier_centre: tuple[float, float] = (-3.0, -3.0), outlier_spread: float = 0.4, outlier_label: int = 1,
) -> ToyData:
    """``n_per_class`` points per class (half from each component, std ``spread``) plus
    ``n_outliers`` points around ``outlier_centre`` labelled ``outlier_label``."""
    if n_per_class < 2 or n_outliers < 0:
        raise ValueError(f"need n_per_class >= 2 and n_outliers >= 0, got {n_per_class}, {n_outliers}")
    if outlier_label not in CLASS_COMPONENTS:
        raise ValueError(f"outlier_label must be one of {sorted(CLASS_COMPONENTS)}, got {outlier_label}")
    rng = np.random.default_rng(seed)
    points, labels = [], []
    for label, centres in CLASS_COMPONENTS.items():
        for i, centre in enumerate(centres):
            n = n_per_class // 2 + (i < n_per_class % 2)
            points.append(rng.normal(centre, spread, size=(n, 2)))
            labels.append(np.full(n, label))
    points.append(rng.normal(outlier_centre, outlier_spread, size=(n_outliers, 2)))
    labels.append(np.full(n_outliers, outlier_label))
    is_outlier = np.concatenate([np.zeros(sum(len(l) for l in labels[:-1]), bool), np.ones(n_outliers, bool)])
    return ToyData(np.concatenate(points).astype(np.float32), np.concatenate(labels).astype(np.int64), is_outlier)




@dataclass
class ToyConfig:
    """Every setting of the toy (the script's options; :func:`toy_config` fills ``--quick``).

    The robust losses' defaults (β = 1, q = 0.7, α = 0.1, γ = 1) are the toy's own, not the
    paper's CIFAR-10 or BraTS values: the figure gives none.
    """

    out: Path
    quick: bool = False
    seeds: tuple[int, ...] = FULL["seeds"]
    n_per_class: int = 200
    n_outliers: int = 60
    n_test: int = 1000
    steps: int = FULL["steps"]
    lr: float = 0.05
    beta: float = 1.0
    q: float = 0.7
    sce: tuple[float, float] = (0.1, 1.0)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.seeds:
            raise ValueError("need at least one seed")


def toy_config(quick: bool = False, **options: object) -> ToyConfig:
    """A :class:`ToyConfig`: options that are not ``None`` win over the :data:`QUICK` (with
    ``quick``) or :data:`FULL` values."""
    values = {**(QUICK if quick else FULL), **{k: v for k, v in options.items() if v is not None}}
    return ToyConfig(quick=quick, **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def losses(config: ToyConfig) -> dict[str, tuple[str, dict[str, float]]]:
    """Row name -> (loss name, hyper-parameters)."""
    alpha, gamma = config.sce
    return {
        "CE": ("ce", {}),
        f"β-CE (β={config.beta:g})": ("bce", {"beta": config.beta}),
        f"GCE (q={config.q:g})": ("gce", {"q": config.q}),
        f"SCE (α={alpha:g}, γ={gamma:g})": ("sce", {"alpha": alpha, "gamma": gamma}),
    }


def predictor(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """numpy ``(M, 2)`` points -> predicted classes."""

    @torch.no_grad()
    def predict(points: np.ndarray) -> np.ndarray:
        return model(torch.as_tensor(points, dtype=torch.float32)).argmax(1).numpy()

    return predict


def train_perceptron(data: ToyData, loss_name: str, params: dict[str, float], config: ToyConfig, seed: int,
                     description: str) -> nn.Module:
    """``nn.Linear(2, 3)`` seeded with ``seed``, fitted full-batch on ``data`` with ``get_loss(loss_name, **params)``."""
    torch.manual_seed(seed)
    model = nn.Linear(2, len(CLASS_NAMES))
    fit_full_batch(model, torch.from_numpy(data.points), torch.from_numpy(data.labels), get_loss(loss_name, **params),
                   steps=config.steps, lr=config.lr, description=description)
    return model


def run_toy(config: ToyConfig) -> Path:
    """Train every row for every seed, write the figure and the table; returns the Markdown table."""
    # Thousands of tiny full-batch steps: intra-op threads only add synchronisation (5-20x
    # slower with 2 threads on a busy machine), so the toy runs single-threaded.
    torch.set_num_threads(1)
    rows = losses(config)
    measurements, panels = [], []
    for seed in config.seeds:
        train = make_toy_data(config.n_per_class, config.n_outliers, seed)
        clean = ToyData(train.points[~train.is_outlier], train.labels[~train.is_outlier], train.is_outlier[~train.is_outlier])
        test = make_toy_data(config.n_test, 0, seed + TEST_SEED_OFFSET)
        runs = {name: (train, *spec) for name, spec in rows.items()} | {REFERENCE: (clean, "ce", {})}
        if seed == config.seeds[0]:
            panels.append(DecisionPanel(f"data ({config.n_outliers} mislabelled)", train.points, train.labels,
                                        highlight=train.is_outlier))
        for name, (data, loss_name, params) in runs.items():
            predict = predictor(train_perceptron(data, loss_name, params, config, seed, f"seed {seed} {name}"))
            measurements.append(Measurement(name, ACCURACY, 100.0 * np.mean(predict(test.points) == test.labels), seed))
            if name != REFERENCE:
                fitted = predict(train.points[train.is_outlier]) == train.labels[train.is_outlier]
                measurements.append(Measurement(name, FITTED, 100.0 * np.mean(fitted), seed))
            if seed == config.seeds[0]:
                panels.append(DecisionPanel(name, train.points, train.labels, predict, highlight=train.is_outlier))

    config.out.mkdir(parents=True, exist_ok=True)
    figure = plot_decision_regions(config.out / "fig2_decision_regions.png", panels, n_classes=len(CLASS_NAMES),
                                   class_names=CLASS_NAMES, suptitle=f"single-layer perceptron, seed {config.seeds[0]}")
    files = write_report(
        config.out, "toy_table",
        title="Cui et al. Fig. 2 toy: perceptron decision regions with a mislabelled sub-cluster",
        measurements=measurements, rows=[*rows, REFERENCE], columns=[ACCURACY, FITTED],
        quick=config.quick, device="cpu", unit="%",
        notes=[
            "The paper shows this example as a figure only (no numbers): there is no paper column.",
            f"**{ACCURACY}:** on {config.n_test} fresh points per class without outliers; "
            f"**{FITTED}:** share of the {config.n_outliers} mislabelled training points given their wrong label.",
            f"**Data:** {config.n_per_class} points per class (two Gaussian components, std 0.6), "
            f"{config.n_outliers} outliers around (−3, −3) labelled class 1; "
            f"**training:** nn.Linear(2, 3), full-batch Adam lr {config.lr:g}, {config.steps} steps.",
            f"**Figure:** {figure.name} (seed {config.seeds[0]}; mislabelled points ringed).",
        ],
        extra={"settings": asdict(config)},
    )
    return files.markdown
