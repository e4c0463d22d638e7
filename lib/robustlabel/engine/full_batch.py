"""Full-batch training of a small model: the 2-D toy perceptrons (Cui et al. Fig. 2, Ju 2017 moons).

A plain loop: one full-batch Adam step per iteration on a few hundred points, where an ignite
engine, a data loader and checkpoints would add nothing.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from robustlabel.losses import PixelwiseLoss


def fit_full_batch(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss: PixelwiseLoss | nn.Module,
    *,
    steps: int = 2000,
    lr: float = 0.05,
    description: str = "fit",
) -> list[float]:
    """Full-batch Adam on ``loss(model(inputs), targets)`` for ``steps`` iterations; returns the loss curve.

    ``θ_{t+1} = Adam(θ_t, ∇_θ loss(model_θ(inputs), targets))``, ``t = 0 … steps − 1``; the model is
    left in eval mode.

    Args:
        model: trained in place.
        inputs: the whole training set, e.g. points ``(N, 2)``.
        targets: ``(N,)`` integer classes.
        loss: a robustlabel loss (see :func:`~robustlabel.losses.get_loss`) or any ``nn.Module`` loss.
        steps: Adam steps.
        lr: Adam learning rate.
        description: tqdm label.

    Raises:
        ValueError: ``steps < 1`` or ``lr <= 0``.
    """
    if steps < 1 or not lr > 0:
        raise ValueError(f"need steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    curve = []
    for _ in tqdm(range(steps), desc=description, leave=False, mininterval=0.5):
        optimizer.zero_grad(set_to_none=True)
        value = loss(model(inputs), targets)
        value.backward()
        optimizer.step()
        curve.append(float(value.detach()))
    model.eval()
    return curve
