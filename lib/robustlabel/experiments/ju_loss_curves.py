"""Ju 2017, Fig. 2: two PU losses and their derivatives with respect to the model output ``f``.

For one logit ``f`` and the two observed classes (``+`` = positive, ``−`` = negative / unlabelled):

* the weighted logistic loss, thesis Eq. 6 with ``α = 1, β = 0.5``:
  ``ℓ_+ = −α log σ(f)``, ``ℓ_− = −β log(1 − σ(f))``, ``∂ℓ_−/∂f = β σ(f)`` grows towards ``β``;
* the class-dependent sigmoid loss, Eq. 8: ``ℓ_+ = −log σ(f)``, ``ℓ_− = σ(f)``,
  ``∂ℓ_−/∂f = σ(f)(1 − σ(f))`` falls back to 0 for large ``f`` (the loss saturates).

Both come from the library (:func:`robustlabel.losses.get_loss`): the weighted logistic loss
is ``weighted_ce`` with ``weights = (β, α)`` on the two logits ``(0, f)`` (their softmax is
``(1 − σ(f), σ(f))``), the sigmoid loss is ``cd_sigmoid`` on ``f``.  The derivatives are
autograd's, not hand-written formulas.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robustlabel.losses import PixelwiseLoss, get_loss
from robustlabel.experiments.figures import pyplot, save_figure
from robustlabel.experiments.tables import Measurement, write_report

#: Fig. 2's weights of the weighted logistic loss (positive α, negative β)
WEIGHTED_ALPHA = 1.0
WEIGHTED_BETA = 0.5
#: the thesis plots f ∈ (−5, 5)
F_RANGE = (-5.0, 5.0)
STEM = "pu_loss_curves"


def two_logits(f: torch.Tensor) -> torch.Tensor:
    """``(N,)`` or ``(N, 1, *S)`` single logits ``f`` → ``(N, 2, *S)`` logits ``(0, f)``.

    ``softmax(0, f) = (1 − σ(f), σ(f))``, so a two-class loss on these logits is the
    single-logit binary loss: CE becomes the logistic loss.
    """
    f = f if f.dim() > 1 else f[:, None]
    return torch.cat([torch.zeros_like(f), f], dim=1)


@dataclass(frozen=True)
class Curve:
    """One observed class of one loss: ``ℓ(f)`` and ``∂ℓ/∂f`` on the grid ``f``."""

    loss: str
    sign: str  # "+" | "−"
    f: np.ndarray
    value: np.ndarray
    derivative: np.ndarray

    @property
    def name(self) -> str:
        return f"{self.loss} ({self.sign})"


def _curve(loss: PixelwiseLoss, name: str, f: np.ndarray, target: int, binary_logit: bool) -> Curve:
    x = torch.tensor(f, dtype=torch.float64, requires_grad=True)
    logits = x[:, None] if binary_logit else two_logits(x)
    values = loss(logits, torch.full((len(f),), target, dtype=torch.long))
    (grad,) = torch.autograd.grad(values.sum(), x)
    return Curve(name, "+" if target == 1 else "−", f, values.detach().numpy(), grad.numpy())


def loss_curves(
    points: int = 101, f_range: tuple[float, float] = F_RANGE, alpha: float = WEIGHTED_ALPHA, beta: float = WEIGHTED_BETA
) -> list[Curve]:
    """The four curves of Fig. 2 (weighted logistic ±, sigmoid ±) on ``points`` values of ``f``."""
    if points < 2:
        raise ValueError(f"need at least 2 points, got {points}")
    f = np.linspace(*f_range, points)
    weighted = get_loss("weighted_ce", weights=[beta, alpha], reduction="none")
    sigmoid = get_loss("cd_sigmoid", reduction="none")
    weighted_name = f"weighted logistic (α={alpha:g}, β={beta:g})"
    return [
        _curve(weighted, weighted_name, f, 1, binary_logit=False),
        _curve(weighted, weighted_name, f, 0, binary_logit=False),
        _curve(sigmoid, "sigmoid", f, 1, binary_logit=True),
        _curve(sigmoid, "sigmoid", f, 0, binary_logit=True),
    ]


def plot_curves(path: str | Path, curves: Sequence[Curve]) -> Path:
    """Fig. 2: loss (left) and ``∂ℓ/∂f`` (right) against ``f``, one line per loss and class."""
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    names = list(dict.fromkeys(c.loss for c in curves))
    for c in curves:
        i = names.index(c.loss)
        style = dict(ls="-" if c.sign == "+" else "--", color=f"C{i}", lw=3.0 - 1.5 * min(i, 1), label=c.name)
        axes[0].plot(c.f, c.value, **style)
        axes[1].plot(c.f, c.derivative, **style)
    for ax, title in zip(axes, ("loss ℓ(f)", "derivative ∂ℓ/∂f (autograd)")):
        ax.set_title(title)
        ax.set_xlabel("model output f(x)")
        ax.axhline(0, color="k", lw=0.5)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle("Ju 2017 Fig. 2: weighted logistic vs class-dependent sigmoid loss (the (+) curves coincide for α = 1)",
                 fontsize="medium")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def run(out: str | Path, points: int = 101, alpha: float = WEIGHTED_ALPHA, beta: float = WEIGHTED_BETA) -> dict[str, Path]:
    """Write ``pu_loss_curves.{csv,json,md,png}`` under ``out``: one table row per ``f``, one
    column per curve and quantity (long format through :func:`robustlabel.experiments.tables.write_report`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    curves = loss_curves(points, alpha=alpha, beta=beta)
    measurements, columns = [], []
    for c in curves:
        for quantity, values in (("loss", c.value), ("dloss/df", c.derivative)):
            column = f"{c.name} {quantity}"
            columns.append(column)
            measurements += [Measurement(f"{fv:+.2f}", column, float(v)) for fv, v in zip(c.f, values)]
    files = write_report(
        out, STEM,
        title="Ju 2017 Fig. 2: PU losses and their derivatives over the model output f",
        measurements=measurements, columns=columns, rows=[f"{fv:+.2f}" for fv in curves[0].f],
        row_header="f", decimals=4, device="cpu",
        notes=[f"weighted logistic loss: thesis Eq. 6 with α = {alpha:g} (positive), β = {beta:g} (negative), "
               "computed as `weighted_ce` on the logits (0, f)",
               "sigmoid loss: thesis Eq. 8, `cd_sigmoid`",
               "derivatives: torch.autograd on the library's losses (float64)",
               "(+): observed positive, (−): observed negative / unlabelled; single evaluation, no repeats"],
        extra={"alpha": alpha, "beta": beta, "points": points},
    )
    png = plot_curves(out / f"{STEM}.png", curves)
    return {"csv": files.csv, "json": files.json, "markdown": files.markdown, "png": png}
