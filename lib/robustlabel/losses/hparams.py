"""The seed paper's robust-loss hyper-parameters: the one table every default reads.

Cui et al., *Semi-supervised Learning using Robust Loss*, chose them on their validation sets:
CIFAR-10 β = 5, q = 0.9, α = 0.1, γ = 0.01; BraTS β = 0.001, q = 0.7, α = 0.01, γ = 1.0.
The loss constructors (BraTS values), the engine's and the app's pseudo-loss defaults and the
paper scripts all read :data:`PAPER_HPARAMS`; nothing else writes these numbers.
"""

from __future__ import annotations

#: ``PAPER_HPARAMS[dataset][loss] = {parameter: value}``; ``bce`` is the paper's name for β-CE
PAPER_HPARAMS: dict[str, dict[str, dict[str, float]]] = {
    "cifar10": {"bce": {"beta": 5.0}, "gce": {"q": 0.9}, "sce": {"alpha": 0.1, "gamma": 0.01}},
    "brats": {"bce": {"beta": 0.001}, "gce": {"q": 0.7}, "sce": {"alpha": 0.01, "gamma": 1.0}},
}
#: the BraTS values, the defaults of the loss classes and of the app
BRATS_HPARAMS: dict[str, dict[str, float]] = PAPER_HPARAMS["brats"]


def paper_params(loss: str, dataset: str = "brats") -> dict[str, float]:
    """The paper's hyper-parameters of ``loss`` (``{}`` for CE and for losses the paper did not tune).

    ``beta_ce`` is looked up under the paper's name ``bce``.

    Raises:
        KeyError: for a dataset other than ``cifar10`` and ``brats``.
    """
    key = "bce" if loss.lower() == "beta_ce" else loss.lower()
    return dict(PAPER_HPARAMS[dataset].get(key, {}))
