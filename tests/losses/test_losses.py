"""Each loss against an independent closed-form reference, limits, gradients, numerics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.utils import LossReduction

from robustlabel.losses import LOSSES, SourceAwareLoss, get_loss

A = math.log(1e-4)


def _softmax(z: np.ndarray) -> np.ndarray:
    """Reference softmax over axis 1 in float64 numpy."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _reference(name: str, params: dict, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Elementwise loss written directly from the formulas (probabilities, not log space)."""
    if name in ("cd_sigmoid", "param_sigmoid"):
        f = z[:, 0]
        a, b, g = (params.get(k, 1.0) for k in ("alpha", "beta", "gamma"))
        neg = _sigmoid(f) if name == "cd_sigmoid" else a * _sigmoid(-b * (-f)) ** g
        return np.where(y == 1, -np.log(_sigmoid(f)), neg)
    p = _softmax(z)
    py = np.take_along_axis(p, y[:, None], axis=1)[:, 0]
    if name == "ce":
        return -np.log(py)
    if name == "gce":
        q = params["q"]
        return (1 - py**q) / q
    if name in ("beta_ce", "bce"):
        b = params["beta"]
        return -(b + 1) / b * (py**b - 1) + (p ** (b + 1)).sum(axis=1)
    if name == "rce":
        return -params.get("A", A) * (1 - py)
    if name == "sce":
        return params["alpha"] * -np.log(py) + params["gamma"] * -A * (1 - py)
    if name == "weighted_ce":
        return -np.asarray(params["weights"])[y] * np.log(py)
    if name == "cd_softmax":
        return np.where(y == 0, 1 - p[:, 0], -np.log(py))
    if name == "hard_bootstrap":
        b = params["beta"]
        p_hat = p.max(axis=1)
        return np.where(y == 0, -b * np.log(p[:, 0]) - (1 - b) * np.log(p_hat), -np.log(py))
    raise AssertionError(name)


CASES = [
    ("ce", {}),
    ("gce", {"q": 0.7}),
    ("gce", {"q": 1.0}),
    ("beta_ce", {"beta": 5.0}),
    ("bce", {"beta": 0.5}),
    ("rce", {}),
    ("sce", {"alpha": 0.1, "gamma": 0.01}),
    ("weighted_ce", {"weights": [0.5, 1.0, 2.0, 1.5]}),
    ("cd_softmax", {}),
    ("hard_bootstrap", {"beta": 0.8}),
    ("cd_sigmoid", {}),
    ("param_sigmoid", {"alpha": 2.0, "beta": 3.0, "gamma": 0.5}),
]


def _inputs(name: str, shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n, c, *spatial = shape
    if name in ("cd_sigmoid", "param_sigmoid"):
        c, n_cls = 1, 2
    else:
        n_cls = c
    z = 3 * torch.randn((n, c, *spatial), generator=g, dtype=torch.float64)
    y = torch.randint(0, n_cls, (n, *spatial), generator=g)
    return z, y


def _to_rows(z: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, *S) -> (N*S, C) numpy rows for the reference."""
    c = z.shape[1]
    return z.movedim(1, -1).reshape(-1, c).numpy(), y.reshape(-1).numpy()


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("shape", [(6, 4), (2, 4, 3, 5, 2)])
def test_matches_closed_form(name: str, params: dict, shape: tuple[int, ...]) -> None:
    z, y = _inputs(name, shape)
    expected = _reference(name, params, *_to_rows(z, y)).reshape(y.shape)
    none = get_loss(name, reduction="none", **params)(z, y)
    assert none.shape == y.shape
    np.testing.assert_allclose(none.numpy(), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(get_loss(name, **params)(z, y).item(), expected.mean(), rtol=1e-10)
    np.testing.assert_allclose(get_loss(name, reduction="sum", **params)(z, y).item(), expected.sum(), rtol=1e-10)
    # (N, 1, *S) targets are accepted as well
    if len(shape) > 2:
        np.testing.assert_allclose(get_loss(name, **params)(z, y.unsqueeze(1)).item(), expected.mean(), rtol=1e-10)


def test_float32_path_matches_reference() -> None:
    z, y = _inputs("gce", (2, 4, 8, 8))
    expected = _reference("gce", {"q": 0.7}, *_to_rows(z, y)).mean()
    out = get_loss("gce", q=0.7)(z.float(), y)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(expected, rel=1e-5)


def test_gce_tends_to_ce_as_q_to_zero() -> None:
    z, y = _inputs("ce", (64, 5))
    ce = get_loss("ce")(z, y).item()
    gaps = [abs(get_loss("gce", q=q)(z, y).item() - ce) for q in (1e-1, 1e-2, 1e-3, 1e-5)]
    assert all(a > b for a, b in zip(gaps, gaps[1:]))
    assert gaps[-1] < 1e-4 * max(ce, 1.0)


def test_beta_ce_tends_to_ce_plus_one_as_beta_to_zero() -> None:
    z, y = _inputs("ce", (64, 5))
    ce = get_loss("ce")(z, y).item()
    gaps = [abs(get_loss("beta_ce", beta=b)(z, y).item() - (ce + 1.0)) for b in (1e-1, 1e-2, 1e-3, 1e-5)]
    assert all(a > b for a, b in zip(gaps, gaps[1:]))
    assert gaps[-1] < 1e-3


def test_gce_at_q_one_is_mae_over_two() -> None:
    z, y = _inputs("ce", (32, 3))
    p = torch.softmax(z, 1)
    mae = (p - torch.nn.functional.one_hot(y, 3)).abs().sum(1).mean()
    assert get_loss("gce", q=1.0)(z, y).item() == pytest.approx(mae.item() / 2, rel=1e-10)


@pytest.mark.parametrize("name,params", CASES)
def test_gradcheck_float64(name: str, params: dict) -> None:
    z, y = _inputs(name, (2, 4, 3, 2), seed=1)
    z.requires_grad_(True)
    loss = get_loss(name, **params)
    assert torch.autograd.gradcheck(lambda t: loss(t, y), (z,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name,params", CASES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_extreme_logits_stay_finite(name: str, params: dict, dtype: torch.dtype) -> None:
    z, y = _inputs(name, (4, 4, 6, 6), seed=2)
    z = (torch.sign(z) * 1e4).to(dtype).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = get_loss(name, **params)(z, y)
    out.backward()
    assert out.dtype == torch.float32
    assert torch.isfinite(out)
    assert torch.isfinite(z.grad.float()).all()


@pytest.mark.parametrize("name,params", CASES)
def test_ignore_index(name: str, params: dict) -> None:
    z, y = _inputs(name, (3, 4, 5, 5), seed=3)
    y_ign = y.clone()
    mask = torch.rand(y.shape, generator=torch.Generator().manual_seed(0)) < 0.3
    y_ign[mask] = 255
    loss_none = get_loss(name, reduction="none", ignore_index=255, **params)(z, y_ign)
    full = get_loss(name, reduction="none", **params)(z, y)
    assert torch.all(loss_none[mask] == 0)
    torch.testing.assert_close(loss_none[~mask], full[~mask])
    mean = get_loss(name, ignore_index=255, **params)(z, y_ign)
    torch.testing.assert_close(mean, full[~mask].mean())
    # an in-range ignore_index (e.g. 0) must be excluded as well
    ign0 = get_loss(name, ignore_index=0, **params)(z, y)
    torch.testing.assert_close(ign0, full[y != 0].mean())


def test_reduction_takes_monai_loss_reduction() -> None:
    z, y = _inputs("gce", (2, 3, 4), seed=5)
    values = get_loss("gce", reduction=LossReduction.NONE)(z, y)
    assert values.shape == (2, 4)
    torch.testing.assert_close(get_loss("gce", reduction=LossReduction.SUM)(z, y), values.sum())
    torch.testing.assert_close(get_loss("gce", reduction="mean")(z, y), values.mean())
    loss = SourceAwareLoss(reduction=LossReduction.SUM)
    assert loss.reduction == "sum" and get_loss("ce", reduction=LossReduction.MEAN).reduction == "mean"


def test_all_ignored_gives_zero_with_gradient() -> None:
    z = torch.randn(2, 3, 4, requires_grad=True)
    y = torch.full((2, 4), -100)
    out = get_loss("gce", q=0.5)(z, y)
    out.backward()
    assert out.item() == 0.0 and torch.all(z.grad == 0)


def test_source_aware_mixes_per_sample() -> None:
    z, y = _inputs("ce", (5, 4, 3, 3), seed=4)
    is_pseudo = torch.tensor([True, False, True, False, False])
    ce = get_loss("ce", reduction="none")(z, y)
    gce = get_loss("gce", q=0.7, reduction="none")(z, y)
    for w in (1.0, 0.25):
        loss = SourceAwareLoss(get_loss("ce"), get_loss("gce", q=0.7), pseudo_weight=w)
        expected = torch.where(is_pseudo[:, None, None], w * gce, ce)
        torch.testing.assert_close(loss(z, y, is_pseudo), expected.mean())
        none = SourceAwareLoss(get_loss("ce"), get_loss("gce", q=0.7), pseudo_weight=w, reduction="none")
        torch.testing.assert_close(none(z, y, is_pseudo), expected)
    # mean over the batch equals the loss over the concatenated sets
    loss = SourceAwareLoss(get_loss("ce"), get_loss("gce", q=0.7))
    concat = torch.cat([ce[~is_pseudo].flatten(), gce[is_pseudo].flatten()]).mean()
    torch.testing.assert_close(loss(z, y, is_pseudo), concat)
    # all-clinician and all-pseudo batches
    torch.testing.assert_close(loss(z, y, torch.zeros(5, dtype=torch.bool)), ce.mean())
    torch.testing.assert_close(loss(z, y, torch.ones(5, dtype=torch.bool)), gce.mean())


def test_source_aware_gradient_reaches_both_sources() -> None:
    z, y = _inputs("ce", (4, 3, 2, 2), seed=5)
    z.requires_grad_(True)
    SourceAwareLoss()(z, y, torch.tensor([True, False, True, False])).backward()
    assert all(z.grad[i].abs().sum() > 0 for i in range(4))


def test_source_aware_with_ignore_counts_only_kept_voxels() -> None:
    z, y = _inputs("ce", (4, 3, 4), seed=6)
    y[0, :2] = -100
    y[1, 1:] = -100
    is_pseudo = torch.tensor([False, True, True, False])
    loss = SourceAwareLoss(get_loss("ce"), get_loss("sce", alpha=0.1, gamma=1.0))
    ce = get_loss("ce", reduction="none")(z, y)
    sce = get_loss("sce", alpha=0.1, gamma=1.0, reduction="none")(z, y)
    kept = y != -100
    expected = torch.where(is_pseudo[:, None], sce, ce)[kept].mean()
    torch.testing.assert_close(loss(z, y, is_pseudo), expected)


# ---------------------------------------------------------------------- validation errors
@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: get_loss("focal"), "unknown loss 'focal'; valid names: .*beta_ce.*gce"),
        (lambda: get_loss("gce", q=0.0), "q must be > 0"),
        (lambda: get_loss("gce", q=1.5), r"q must lie in \(0, 1.0\]"),
        (lambda: get_loss("beta_ce", beta=0.0), "beta must be > 0"),
        (lambda: get_loss("bce", beta=-1.0), "beta must be > 0"),
        (lambda: get_loss("weighted_ce", weights=[1.0, -0.5]), "non-negative"),
        (lambda: get_loss("sce", alpha=-1.0, gamma=1.0), "alpha must be > 0"),
        (lambda: get_loss("rce", A=1.0), "A .* must be < 0"),
        (lambda: get_loss("hard_bootstrap", beta=1.0), r"beta must lie in \(0, 1.0\)"),
        (lambda: get_loss("ce", reduction="avg"), "'avg' is not a valid value"),  # monai's look_up_option
        (lambda: SourceAwareLoss(reduction="total"), "Unsupported option 'total'"),
        (lambda: get_loss("ce", q=0.5), r"does not take parameter\(s\) \['q'\]"),
        (lambda: SourceAwareLoss(pseudo_weight=-1), "pseudo_weight"),
        (lambda: SourceAwareLoss(pseudo=torch.nn.CrossEntropyLoss()), "pseudo must be a robustlabel loss"),
    ],
)
def test_constructor_errors(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "logits_shape,target,match",
    [
        ((2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long), "shape mismatch"),
        ((2, 3), torch.zeros(3, dtype=torch.long), "shape mismatch"),
        ((2, 3, 4), torch.tensor([[0, 1, 2, 3], [0, 0, 0, 0]]), r"target values must lie in \[0, 3\)"),
        ((2, 3), torch.tensor([0, -1]), r"found values in \[-1, 0\]"),
        ((2, 3), torch.tensor([0.0, 1.5]), "integer class indices"),
        ((2, 1), torch.tensor([0, 1]), "at least 2 classes"),
    ],
)
def test_forward_errors(logits_shape, target: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_loss("gce", q=0.5)(torch.randn(logits_shape), target)


def test_binary_loss_errors() -> None:
    with pytest.raises(ValueError, match="single logit"):
        get_loss("cd_sigmoid")(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        get_loss("cd_sigmoid")(torch.randn(2, 1), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="3 weights given for logits with 4 classes"):
        get_loss("weighted_ce", weights=[1, 1, 1])(torch.randn(2, 4), torch.tensor([0, 1]))


def test_source_aware_errors() -> None:
    z, y = torch.randn(3, 2, 4), torch.zeros(3, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="is_pseudo must be a bool tensor of shape"):
        SourceAwareLoss()(z, y, torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="is_pseudo must be a bool tensor of shape"):
        SourceAwareLoss()(z, y, torch.tensor([True, False]))


def test_every_registered_name_builds() -> None:
    defaults = {"weighted_ce": {"weights": [1.0, 1.0]}}
    for name in LOSSES:
        assert isinstance(get_loss(name, **defaults.get(name, {})), torch.nn.Module)
    assert type(get_loss("bce")) is type(get_loss("beta_ce"))
