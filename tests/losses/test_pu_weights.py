"""Per-class ``weights`` of the PU losses (cd_softmax, hard_bootstrap, cd_sigmoid, param_sigmoid)
and the inverse-frequency weights of thesis Sec. 4."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustlabel.losses import get_loss, inverse_frequency_weights

MULTICLASS = [("cd_softmax", {}), ("hard_bootstrap", {"beta": 0.8})]
BINARY = [("cd_sigmoid", {}), ("param_sigmoid", {"alpha": 2.0, "beta": 3.0, "gamma": 0.5})]


def _inputs(binary: bool, shape=(7, 4, 3), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n, c, *spatial = shape
    c, n_cls = (1, 2) if binary else (c, c)
    z = 3 * torch.randn((n, c, *spatial), generator=g, dtype=torch.float64)
    return z, torch.randint(0, n_cls, (n, *spatial), generator=g)


@pytest.mark.parametrize("name,params", MULTICLASS + BINARY)
def test_weights_scale_each_entry_by_its_class_weight(name: str, params: dict) -> None:
    binary = name in ("cd_sigmoid", "param_sigmoid")
    z, y = _inputs(binary)
    weights = [0.25, 3.0] if binary else [0.25, 3.0, 1.5, 0.0]
    plain = get_loss(name, reduction="none", **params)(z, y)
    weighted = get_loss(name, reduction="none", weights=weights, **params)(z, y)
    expected = torch.tensor(weights, dtype=torch.float64)[y] * plain
    torch.testing.assert_close(weighted, expected, rtol=1e-12, atol=1e-14)
    # "mean" divides by the number of entries (not by the sum of weights); "sum" sums
    mean = get_loss(name, weights=weights, **params)(z, y)
    assert mean.item() == pytest.approx(expected.sum().item() / y.numel(), rel=1e-12)
    assert get_loss(name, reduction="sum", weights=weights, **params)(z, y).item() == pytest.approx(
        expected.sum().item(), rel=1e-12)
    # all-ones weights and no weights are the same loss; the default is unweighted
    ones = get_loss(name, reduction="none", weights=[1.0] * len(weights), **params)(z, y)
    torch.testing.assert_close(ones, plain, rtol=0, atol=0)


@pytest.mark.parametrize("name,params", MULTICLASS + BINARY)
def test_weighted_gradients_match_finite_differences(name: str, params: dict) -> None:
    binary = name in ("cd_sigmoid", "param_sigmoid")
    z, y = _inputs(binary, shape=(5, 3))
    weights = [0.5, 2.0] if binary else [0.5, 2.0, 1.25]
    loss = get_loss(name, weights=weights, **params)
    assert torch.autograd.gradcheck(lambda x: loss(x, y), (z.clone().requires_grad_(True),))


def test_weights_with_ignore_index() -> None:
    z, y = _inputs(False, shape=(6, 3))
    y[0] = -100
    weights = [0.2, 1.0, 4.0]
    values = get_loss("cd_softmax", reduction="none", weights=weights)(z, y)
    assert values[0].item() == 0.0
    mean = get_loss("cd_softmax", weights=weights)(z, y)
    assert mean.item() == pytest.approx(values.sum().item() / 5, rel=1e-12)


@pytest.mark.parametrize(
    "name,weights,logits_shape,match",
    [
        ("cd_softmax", [1.0, 1.0], (2, 3), "2 weights given for logits with 3 classes"),
        ("hard_bootstrap", [1.0, 1.0, 1.0, 1.0], (2, 3), "4 weights given for logits with 3 classes"),
        ("cd_sigmoid", [1.0, 1.0, 1.0], (2, 1), "3 weights given for a single-logit binary loss"),
    ],
)
def test_wrong_number_of_weights(name, weights, logits_shape, match) -> None:
    with pytest.raises(ValueError, match=match):
        get_loss(name, weights=weights)(torch.randn(logits_shape), torch.tensor([0, 1]))


@pytest.mark.parametrize("name", ["cd_softmax", "hard_bootstrap", "cd_sigmoid", "param_sigmoid"])
def test_invalid_weights(name: str) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        get_loss(name, weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="empty"):
        get_loss(name, weights=[])
    assert "weights=[0.5, 2.0]" in repr(get_loss(name, weights=[0.5, 2.0]))


def test_inverse_frequency_weights() -> None:
    labels = [0] * 6 + [1] * 2 + [2] * 3  # class 3 absent
    w = inverse_frequency_weights(labels, 4)
    inverse = np.array([1 / 6, 1 / 2, 1 / 3])
    np.testing.assert_allclose(w[:3], inverse / inverse.mean(), rtol=1e-12)
    assert w[3] == 0.0 and np.mean(w[:3]) == pytest.approx(1.0)
    # each present class then carries the same total weight w_k · n_k
    totals = np.array(w[:3]) * np.array([6, 2, 3])
    np.testing.assert_allclose(totals, totals[0], rtol=1e-12)
    assert inverse_frequency_weights(torch.tensor([1, 0, 1, 0]), 2) == [1.0, 1.0]
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        inverse_frequency_weights([0, 2], 2)
    with pytest.raises(ValueError, match="at least one label"):
        inverse_frequency_weights([], 3)
