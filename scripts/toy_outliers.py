#!/usr/bin/env python
"""Reproduce Fig. 2 of Cui et al., "Semi-supervised Learning using Robust Loss": a toy example.

Three classes in 2-D, each a mixture of two Gaussians, plus a small mislabelled sub-cluster
in the bottom left whose points carry the label of the class on the far right.  A single-layer
perceptron (one ``nn.Linear(2, 3)``, softmax) is trained full-batch with Adam under CE, β-CE,
GCE and SCE.  CE bends its decision boundaries towards the outliers; the robust losses leave
them (almost) where a CE model trained without the outliers puts them.

    python scripts/toy_outliers.py --out results/toy
    python scripts/toy_outliers.py --out results/toy --beta 2 --q 0.9 --sce 0.1,1 --seeds 0 1 2 3 4

Outputs in --out: fig2_decision_regions.png (data panel + one panel per loss, first seed) and
toy_table.{md,csv,json}: accuracy on a fresh clean test set drawn from the three classes, and
the share of the training outliers each model classifies with their wrong label.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustlabel.engine.classify import fit_full_batch
from robustlabel.losses import get_loss
from robustlabel.reporting import DecisionPanel, Measurement, parse_float_pair, plot_decision_regions, write_report

#: centres of the two Gaussian components of each class (top-left, top-right, bottom)
CLASS_COMPONENTS = {
    0: ((-2.5, 1.0), (-1.5, 2.5)),
    1: ((2.5, 1.0), (1.5, 2.5)),
    2: ((-0.8, -2.0), (0.8, -2.5)),
}
CLASS_NAMES = ("class 0", "class 1", "class 2")
ACCURACY = "Clean test accuracy"
FITTED = "Outliers fitted"


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seeds", type=int, nargs="+", help="one data set + initialisation per seed (default 0 1 2; quick: 0 1)")
    p.add_argument("--quick", action="store_true", help="fewer Adam steps (500) and seeds (0 1)")
    p.add_argument("--n-per-class", type=int, default=200)
    p.add_argument("--n-outliers", type=int, default=60, help="size of the mislabelled sub-cluster")
    p.add_argument("--n-test", type=int, default=1000, help="clean test points per class")
    p.add_argument("--steps", type=int, help="full-batch Adam steps (default 2000)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--beta", type=float, default=1.0, help="β of β-CE")
    p.add_argument("--q", type=float, default=0.7, help="q of GCE")
    p.add_argument("--sce", type=parse_float_pair, default=(0.1, 1.0), metavar="ALPHA,GAMMA", help="α, γ of SCE")
    return p


def losses(args: argparse.Namespace) -> dict[str, tuple[str, dict[str, float]]]:
    """Row name -> (loss name, hyper-parameters)."""
    alpha, gamma = args.sce
    return {
        "CE": ("ce", {}),
        f"β-CE (β={args.beta:g})": ("bce", {"beta": args.beta}),
        f"GCE (q={args.q:g})": ("gce", {"q": args.q}),
        f"SCE (α={alpha:g}, γ={gamma:g})": ("sce", {"alpha": alpha, "gamma": gamma}),
    }


def predictor(model: nn.Module):
    """numpy ``(M, 2)`` points -> predicted classes."""

    @torch.no_grad()
    def predict(points: np.ndarray) -> np.ndarray:
        return model(torch.as_tensor(points, dtype=torch.float32)).argmax(1).numpy()

    return predict


def train_perceptron(data: ToyData, loss_name: str, params: dict[str, float], args: argparse.Namespace, seed: int,
                     description: str) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Linear(2, len(CLASS_NAMES))
    fit_full_batch(model, torch.from_numpy(data.points), torch.from_numpy(data.labels), get_loss(loss_name, **params),
                   steps=args.steps, lr=args.lr, description=description)
    return model


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Thousands of tiny full-batch steps: intra-op threads only add synchronisation (5-20x
    # slower with 2 threads on a busy machine), so the toy runs single-threaded.
    torch.set_num_threads(1)
    if args.steps is None:
        args.steps = 500 if args.quick else 2000
    if args.seeds is None:
        args.seeds = [0, 1] if args.quick else [0, 1, 2]
    rows = losses(args)
    reference = "CE, no outliers (reference)"
    measurements, panels = [], []
    for seed in args.seeds:
        train = make_toy_data(args.n_per_class, args.n_outliers, seed)
        clean = ToyData(train.points[~train.is_outlier], train.labels[~train.is_outlier], train.is_outlier[~train.is_outlier])
        test = make_toy_data(args.n_test, 0, seed + 10_000)
        runs = {name: (train, *spec) for name, spec in rows.items()} | {reference: (clean, "ce", {})}
        if seed == args.seeds[0]:
            panels.append(DecisionPanel(f"data ({args.n_outliers} mislabelled)", train.points, train.labels,
                                        highlight=train.is_outlier))
        for name, (data, loss_name, params) in runs.items():
            predict = predictor(train_perceptron(data, loss_name, params, args, seed, f"seed {seed} {name}"))
            measurements.append(Measurement(name, ACCURACY, 100.0 * np.mean(predict(test.points) == test.labels), seed))
            if name != reference:
                fitted = predict(train.points[train.is_outlier]) == train.labels[train.is_outlier]
                measurements.append(Measurement(name, FITTED, 100.0 * np.mean(fitted), seed))
            if seed == args.seeds[0]:
                panels.append(DecisionPanel(name, train.points, train.labels, predict, highlight=train.is_outlier))

    args.out.mkdir(parents=True, exist_ok=True)
    figure = plot_decision_regions(args.out / "fig2_decision_regions.png", panels, n_classes=len(CLASS_NAMES),
                                   class_names=CLASS_NAMES, suptitle=f"single-layer perceptron, seed {args.seeds[0]}")
    files = write_report(
        args.out, "toy_table",
        title="Cui et al. Fig. 2 toy: perceptron decision regions with a mislabelled sub-cluster",
        measurements=measurements, rows=[*rows, reference], columns=[ACCURACY, FITTED],
        quick=args.quick, device="cpu", unit="%",
        notes=[
            "The paper shows this example as a figure only (no numbers): there is no paper column.",
            f"**{ACCURACY}:** on {args.n_test} fresh points per class without outliers; "
            f"**{FITTED}:** share of the {args.n_outliers} mislabelled training points given their wrong label.",
            f"**Data:** {args.n_per_class} points per class (two Gaussian components, std 0.6), "
            f"{args.n_outliers} outliers around (−3, −3) labelled class 1; "
            f"**training:** nn.Linear(2, 3), full-batch Adam lr {args.lr:g}, {args.steps} steps.",
            f"**Figure:** {figure.name} (seed {args.seeds[0]}; mislabelled points ringed).",
        ],
        extra={"settings": vars(args)},
    )
    print(files.markdown.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
