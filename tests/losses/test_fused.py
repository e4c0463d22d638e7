"""The fused β-CE: C++ kernel against the PyTorch fallback, gradcheck, and the forced / failed-build fallback.

The kernel is built on first use into the user cache (about a minute once per machine and torch
version, then loaded in well under a second); every shape here is tiny.
"""

from __future__ import annotations

import logging
import shutil

import pytest
import torch

from robustlabel.losses import get_loss
from robustlabel.losses import fused

SHAPES = [(2, 4, 5, 3, 2), (7, 10), (3, 3, 1), (2, 4, 70)]  # 70 voxels: one full block of 64 and a tail


@pytest.fixture(scope="module")
def kernel():
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler: only the PyTorch fallback exists here")
    module = fused.load_extension()
    assert module is not None, "a compiler exists but the fused β-CE kernel did not build (see the log)"
    return module


def _inputs(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(shape, generator=g, dtype=torch.float64) * 3).to(dtype)
    y = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    return z, y


def _value_and_grad(z: torch.Tensor, y: torch.Tensor, beta: float, backend: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    z = z.clone().requires_grad_(True)
    out = fused.beta_cross_entropy(z, y, beta, backend)
    w = torch.linspace(0.5, 2.0, out.numel(), dtype=out.dtype).view(out.shape)  # a non-uniform upstream gradient
    (out * w).sum().backward()
    return out.detach(), z.grad, type(out.grad_fn).__name__


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("beta", [0.001, 5.0])
def test_kernel_gradcheck_float64(kernel, shape: tuple[int, ...], beta: float) -> None:
    z, y = _inputs(shape, torch.float64, seed=1)
    z.requires_grad_(True)
    assert type(fused.beta_cross_entropy(z, y, beta, "cpp").grad_fn).__name__ == "BetaCECppFunctionBackward"
    assert torch.autograd.gradcheck(lambda t: fused.beta_cross_entropy(t, y, beta, "cpp"), (z,), eps=1e-6, atol=1e-5)


def test_fallback_gradcheck_float64() -> None:
    z, y = _inputs((2, 4, 3, 2), torch.float64, seed=1)
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: fused.beta_cross_entropy(t, y, 0.5, "torch"), (z,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("beta", [0.001, 5.0])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_kernel_matches_fallback(kernel, shape: tuple[int, ...], beta: float, dtype: torch.dtype, tol: float) -> None:
    z, y = _inputs(shape, dtype)
    v_cpp, g_cpp, fn_cpp = _value_and_grad(z, y, beta, "cpp")
    v_pt, g_pt, fn_pt = _value_and_grad(z, y, beta, "torch")
    assert (fn_cpp, fn_pt) == ("BetaCECppFunctionBackward", "BetaCEFunctionBackward")
    assert v_cpp.dtype == g_cpp.dtype == dtype
    assert v_cpp.shape == v_pt.shape and g_cpp.shape == g_pt.shape
    torch.testing.assert_close(v_cpp, v_pt, rtol=tol, atol=tol)
    torch.testing.assert_close(g_cpp, g_pt, rtol=tol, atol=tol)


def test_loss_class_uses_kernel_with_ignore_index_and_extreme_logits(kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    z, y = _inputs((2, 4, 6, 6), torch.float32, seed=3)
    y[0, :2] = -100
    z = torch.sign(z) * 1e4
    results = {}
    for backend in ("auto", "torch"):
        monkeypatch.setenv(fused.BACKEND_ENV, backend)
        zz = z.clone().requires_grad_(True)
        out = get_loss("beta_ce", beta=0.001)(zz, y)
        out.backward()
        results[backend] = (out.detach(), zz.grad)
    assert torch.isfinite(results["auto"][0]) and torch.isfinite(results["auto"][1]).all()
    assert results["auto"][1][0, :, :2].abs().max() == 0  # ignored voxels get no gradient
    torch.testing.assert_close(results["auto"][0], results["torch"][0])
    torch.testing.assert_close(results["auto"][1], results["torch"][1])


def test_env_forces_fallback(kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    z, y = _inputs((2, 3, 4), torch.float32)
    z.requires_grad_(True)
    monkeypatch.setenv(fused.BACKEND_ENV, "torch")
    assert type(fused.beta_cross_entropy(z, y, 0.1).grad_fn).__name__ == "BetaCEFunctionBackward"
    monkeypatch.setenv(fused.BACKEND_ENV, "auto")
    assert type(fused.beta_cross_entropy(z, y, 0.1).grad_fn).__name__ == "BetaCECppFunctionBackward"
    # half precision is not a kernel dtype: PyTorch path
    assert type(fused.beta_cross_entropy(z.detach().bfloat16().requires_grad_(), y, 0.1).grad_fn).__name__ == (
        "BetaCEFunctionBackward"
    )


def test_unknown_backend_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    z, y = _inputs((2, 3), torch.float32)
    with pytest.raises(ValueError, match="backend must be one of"):
        fused.beta_cross_entropy(z, y, 0.1, "triton")
    monkeypatch.setenv(fused.BACKEND_ENV, "nope")
    with pytest.raises(ValueError, match="ROBUSTLABEL_FUSED"):
        fused.beta_cross_entropy(z, y, 0.1)


def test_failed_build_falls_back_and_logs_once(tmp_path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """A compiler that does not exist: the build fails, one warning is logged, the PyTorch path runs."""
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv(fused.EXTENSION_DIR_ENV, str(tmp_path / "ext"))
    monkeypatch.setenv(fused.BACKEND_ENV, "auto")
    fused.reset_extension()
    try:
        z, y = _inputs((2, 4, 3), torch.float64)
        with caplog.at_level(logging.WARNING, logger=fused.__name__):
            first = _value_and_grad(z, y, 0.01, "cpp")
            second = _value_and_grad(z, y, 0.01, "auto")
        warnings = [r for r in caplog.records if r.name == fused.__name__ and "could not be built" in r.getMessage()]
        assert len(warnings) == 1
        assert first[2] == second[2] == "BetaCEFunctionBackward"
        reference = _value_and_grad(z, y, 0.01, "torch")
        torch.testing.assert_close(first[0], reference[0], rtol=0, atol=0)
        torch.testing.assert_close(first[1], reference[1], rtol=0, atol=0)
    finally:
        fused.reset_extension()  # later tests load the real kernel again


# ----------------------------------------------------------------------------- CE family (GCE, RCE, SCE, CE)
CE_FAMILY = [("gce", {"q": 0.7}), ("rce", {}), ("sce", {"alpha": 0.01, "gamma": 1.0}), ("ce", {})]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("name", "params"), CE_FAMILY)
def test_ce_family_kernel_gradcheck_and_matches_fallback(kernel, shape: tuple[int, ...], name: str, params: dict) -> None:
    phi = get_loss(name, **params)._phi
    z, y = _inputs(shape, torch.float64, seed=2)
    z.requires_grad_(True)
    assert type(fused.ce_family(z, y, phi, "cpp").grad_fn).__name__ == "CEFamilyCppFunctionBackward"
    assert torch.autograd.gradcheck(lambda t: fused.ce_family(t, y, phi, "cpp"), (z,), eps=1e-6, atol=1e-5)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-5)):
        zt = z.detach().to(dtype)
        out = {}
        for backend in ("cpp", "torch"):
            zb = zt.clone().requires_grad_(True)
            value = fused.ce_family(zb, y, phi, backend)
            (value * torch.linspace(0.5, 2.0, value.numel(), dtype=dtype).view(value.shape)).sum().backward()
            out[backend] = (value.detach(), zb.grad)
        torch.testing.assert_close(out["cpp"][0], out["torch"][0], rtol=tol, atol=tol)
        torch.testing.assert_close(out["cpp"][1], out["torch"][1], rtol=tol, atol=tol)


def test_loss_classes_use_the_ce_family_kernel(kernel) -> None:
    z, y = _inputs((2, 4, 3, 3), torch.float32, seed=4)
    z.requires_grad_(True)
    for name, params in CE_FAMILY:
        assert type(get_loss(name, reduction="none", **params)(z, y).grad_fn).__name__ == "CEFamilyCppFunctionBackward"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vector_expm1_matches_torch(kernel, dtype: torch.dtype) -> None:
    x = torch.cat([torch.linspace(-80, 20, 1001, dtype=dtype), torch.tensor([0.0, 1e-8, -1e-8, -1e-30], dtype=dtype)])
    torch.testing.assert_close(fused.expm1(x), torch.expm1(x), rtol=4 * torch.finfo(dtype).eps, atol=0)
    assert torch.equal(fused.expm1(x, "torch"), torch.expm1(x))
