"""Fused forward/backward for losses that are functions of the softmax.

PyTorch's autograd would store and revisit every intermediate of a composite loss; on
2×4×128³ logits that costs ~50 % more than ``F.cross_entropy``.  These functions keep one
``log_softmax`` pass forward and one pass backward, like the native cross-entropy kernel.

* :func:`ce_family` – any ``ℓ = φ(CE, y)`` with ``CE = −log p_y`` (CE, GCE, RCE, SCE):

  .. math:: \\frac{∂ℓ}{∂z_j} = φ'(CE)\\,(p_j − δ_{jy}).

  :class:`CEFamilyCppFunction` (the C++ kernel below: forward one pass for ``lse`` and ``CE``,
  keeping only ``lse``; backward one pass that recomputes ``p``) or :class:`CEFamilyFunction`
  (PyTorch: ``log_softmax`` kept for the backward), picked like the β-CE backends.

* β-cross-entropy, ``ℓ = −\\frac{β+1}{β}(p_y^β − 1) + S``, ``S = Σ_k p_k^{β+1}``:

  .. math:: \\frac{∂ℓ}{∂z_j} = (β+1)\\,[\\,p_j (p_y^β − S) + p_j^{β+1}\\,] − (β+1)\\,p_y^β\\,δ_{jy}.

  (From ``∂p_k/∂z_j = p_k(δ_{kj} − p_j)``: ``∂p_y^β/∂z_j = β p_y^β (δ_{jy} − p_j)`` and
  ``∂S/∂z_j = (β+1)\\,(p_j^{β+1} − p_j S)``.)  Two implementations, equal up to float rounding:

  - :class:`BetaCECppFunction`, a C++ kernel (CPU, float32/float64) built once per machine with
    :func:`torch.utils.cpp_extension.load_inline` into :func:`extension_dir`.  Per voxel it reads
    the ``C`` logits once, computes ``lse = log Σ_k e^{z_k}`` and the loss, and keeps only ``lse``
    (one number per voxel) for the backward, which recomputes ``p_k = e^{z_k − lse}`` and
    ``p_k^{β+1} = e^{(β+1)(z_k − lse)}`` and writes the gradient in the same pass.  Voxels are
    processed in blocks of 64 so that the compiler vectorises ``exp`` (glibc's libmvec), blocks
    are spread over PyTorch's intra-op threads (``at::parallel_for``).
  - :class:`BetaCEFunction`, the same maths in PyTorch operations: the fallback on CUDA, for
    other dtypes, and wherever the kernel cannot be built (no compiler, build error; logged once).

  :func:`beta_cross_entropy` picks one; ``ROBUSTLABEL_FUSED=torch`` (or ``backend="torch"``)
  forces the fallback.

Both are first-order only (``once_differentiable``); the tests check them against
``torch.autograd.gradcheck`` in float64.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ..machine import describe_machine

logger = logging.getLogger(__name__)

#: φ(ce, y) -> (value, dφ/dce or None for slope 1)
Phi = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]

#: environment variable choosing the β-CE backend: ``auto`` (default) or ``torch`` (the fallback)
BACKEND_ENV = "ROBUSTLABEL_FUSED"
#: environment variable overriding the build/cache folder of the C++ kernel
EXTENSION_DIR_ENV = "ROBUSTLABEL_EXTENSION_DIR"
BACKENDS = ("auto", "cpp", "torch")


def _softmax_minus_onehot(logp: torch.Tensor, y1: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``w · (p − e_y)`` with ``w`` of shape (N, 1, *S), built in place on ``exp(logp)``."""
    grad = torch.exp(logp).mul_(w)
    return grad.scatter_add_(1, y1, -w)


def _log_softmax_and_ce(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log p, y as (N, 1, *S), CE = −log p_y)``."""
    logp = F.log_softmax(z, dim=1)
    y1 = y.unsqueeze(1)
    return logp, y1, logp.gather(1, y1).squeeze(1).neg_()


class CEFamilyFunction(torch.autograd.Function):
    """``ℓ = φ(−log p_y)`` elementwise, shape (N, *S)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, y: torch.Tensor, phi: Phi) -> torch.Tensor:  # type: ignore[override]
        logp, y1, ce = _log_softmax_and_ce(z, y)
        value, slope = phi(ce, y)
        ctx.save_for_backward(logp, y1, slope if slope is not None else torch.ones(()))
        ctx.unit_slope = slope is None
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        logp, y1, slope = ctx.saved_tensors
        w = g if ctx.unit_slope else g * slope
        return _softmax_minus_onehot(logp, y1, w.unsqueeze(1)), None, None


class BetaCEFunction(torch.autograd.Function):
    """β-cross-entropy elementwise, shape (N, *S), in PyTorch operations (the fallback)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:  # type: ignore[override]
        logp, y1, ce = _log_softmax_and_ce(z, y)
        m = torch.expm1(-beta * ce)  # p_y^β − 1
        p_pow = torch.mul(logp, beta + 1.0).exp_()  # p_k^{β+1}
        s = p_pow.sum(1)
        ctx.save_for_backward(logp, y1, p_pow, m, s)
        ctx.beta = beta
        return s.add(m, alpha=-(beta + 1.0) / beta)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        logp, y1, p_pow, m, s = ctx.saved_tensors
        b1 = (g * (ctx.beta + 1.0)).unsqueeze(1)
        e = (m + 1.0).unsqueeze(1)  # p_y^β
        grad = torch.exp(logp).mul_(b1 * (e - s.unsqueeze(1))).addcmul_(p_pow, b1)
        return grad.scatter_add_(1, y1, -(b1 * e)), None, None


# ---------------------------------------------------------------------- the C++ kernel
_CPP_SOURCE = r"""
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <vector>

namespace {

constexpr int64_t BLOCK = 64;  // voxels per block: the unit of vectorisation and of threading

// blocks (n, s0..s0+L) of the (N, C, S) logits; parallel over blocks, serial below a grain
template <typename F>
void for_blocks(int64_t N, int64_t C, int64_t S, const F& f) {
  const int64_t nblk = (S + BLOCK - 1) / BLOCK;
  const int64_t grain = std::max<int64_t>(1, 32768 / (BLOCK * C));
  at::parallel_for(0, N * nblk, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t n = b / nblk, s0 = (b % nblk) * BLOCK;
      f(n, s0, std::min(BLOCK, S - s0));
    }
  });
}

// lse[i] = m_i + log sum_k exp(z_k,i - m_i), m_i = max_k z_k,i: the stable log-sum-exp over the C classes of one
// block of L voxels (class stride S). Shared by every forward kernel.
template <typename T>
inline void block_logsumexp(const T* zn, int64_t C, int64_t S, int64_t L, T* lse) {
  T mx[BLOCK], acc[BLOCK];
  for (int64_t i = 0; i < L; ++i) mx[i] = zn[i];
  for (int64_t k = 1; k < C; ++k) {
    const T* zk = zn + k * S;
    for (int64_t i = 0; i < L; ++i) mx[i] = std::fmax(mx[i], zk[i]);  // fmax: a vector max (std::max became a branch)
  }
  for (int64_t i = 0; i < L; ++i) acc[i] = T(0);
  for (int64_t k = 0; k < C; ++k) {
    const T* zk = zn + k * S;
    for (int64_t i = 0; i < L; ++i) acc[i] += std::exp(zk[i] - mx[i]);
  }
  for (int64_t i = 0; i < L; ++i) lse[i] = mx[i] + std::log(acc[i]);  // separate loop: log vectorises
}

template <typename T>
void forward_kernel(const T* z, const int64_t* y, T* loss, T* lse_out, int64_t N, int64_t C, int64_t S, T beta) {
  const T b1 = beta + T(1), coef = b1 / beta;
  for_blocks(N, C, S, [&](int64_t n, int64_t s0, int64_t L) {
    T acc[BLOCK], lse[BLOCK], zy[BLOCK];
    const T* zn = z + n * C * S + s0;
    const int64_t* yn = y + n * S + s0;
    block_logsumexp(zn, C, S, L, lse);
    for (int64_t i = 0; i < L; ++i) acc[i] = T(0);
    for (int64_t k = 0; k < C; ++k) {  // S = sum_k p_k^(b+1) = sum_k exp((b+1)(z_k - lse))
      const T* zk = zn + k * S;
      for (int64_t i = 0; i < L; ++i) acc[i] += std::exp(b1 * (zk[i] - lse[i]));
    }
    for (int64_t i = 0; i < L; ++i) zy[i] = zn[yn[i] * S + i];
    T* ln = loss + n * S + s0;
    T* on = lse_out + n * S + s0;
    for (int64_t i = 0; i < L; ++i) {  // -(b+1)/b (p_y^b - 1) + S
      ln[i] = acc[i] - coef * std::expm1(beta * (zy[i] - lse[i]));
      on[i] = lse[i];
    }
  });
}

template <typename T>
void backward_kernel(const T* g, const T* z, const int64_t* y, const T* lse, T* grad,
                     int64_t N, int64_t C, int64_t S, T beta) {
  const T b1 = beta + T(1);
  for_blocks(N, C, S, [&](int64_t n, int64_t s0, int64_t L) {
    std::vector<T> q(C * BLOCK);  // p_k^(b+1)
    T acc[BLOCK], e[BLOCK], w[BLOCK], zy[BLOCK];
    const T* zn = z + n * C * S + s0;
    const int64_t* yn = y + n * S + s0;
    const T* lsen = lse + n * S + s0;
    const T* gn = g + n * S + s0;
    T* dn = grad + n * C * S + s0;
    for (int64_t i = 0; i < L; ++i) acc[i] = T(0);
    for (int64_t k = 0; k < C; ++k) {
      const T* zk = zn + k * S;
      T* qk = q.data() + k * BLOCK;
      for (int64_t i = 0; i < L; ++i) { qk[i] = std::exp(b1 * (zk[i] - lsen[i])); acc[i] += qk[i]; }
    }
    for (int64_t i = 0; i < L; ++i) zy[i] = zn[yn[i] * S + i];
    for (int64_t i = 0; i < L; ++i) { e[i] = std::exp(beta * (zy[i] - lsen[i])); w[i] = b1 * gn[i]; }
    for (int64_t k = 0; k < C; ++k) {  // g (b+1) [p_k (p_y^b - S) + p_k^(b+1)]
      const T* zk = zn + k * S;
      const T* qk = q.data() + k * BLOCK;
      T* dk = dn + k * S;
      for (int64_t i = 0; i < L; ++i) dk[i] = w[i] * (std::exp(zk[i] - lsen[i]) * (e[i] - acc[i]) + qk[i]);
    }
    for (int64_t i = 0; i < L; ++i) dn[yn[i] * S + i] -= w[i] * e[i];  // - g (b+1) p_y^b
  });
}

template <typename T>
void ce_forward_kernel(const T* z, const int64_t* y, T* ce, T* lse_out, int64_t N, int64_t C, int64_t S) {
  for_blocks(N, C, S, [&](int64_t n, int64_t s0, int64_t L) {
    const T* zn = z + n * C * S + s0;
    const int64_t* yn = y + n * S + s0;
    T* cn = ce + n * S + s0;
    T* on = lse_out + n * S + s0;
    block_logsumexp(zn, C, S, L, on);
    for (int64_t i = 0; i < L; ++i) cn[i] = on[i] - zn[yn[i] * S + i];  // CE = lse - z_y
  });
}

template <typename T>
void ce_backward_kernel(const T* w, const T* z, const int64_t* y, const T* lse, T* grad, int64_t N, int64_t C, int64_t S) {
  for_blocks(N, C, S, [&](int64_t n, int64_t s0, int64_t L) {
    const T* zn = z + n * C * S + s0;
    const int64_t* yn = y + n * S + s0;
    const T* lsen = lse + n * S + s0;
    const T* wn = w + n * S + s0;
    T* dn = grad + n * C * S + s0;
    for (int64_t k = 0; k < C; ++k) {  // w (p_k - [k = y])
      const T* zk = zn + k * S;
      T* dk = dn + k * S;
      for (int64_t i = 0; i < L; ++i) dk[i] = wn[i] * std::exp(zk[i] - lsen[i]);
    }
    for (int64_t i = 0; i < L; ++i) dn[yn[i] * S + i] -= wn[i];
  });
}

void check(const at::Tensor& z, const at::Tensor& y) {
  TORCH_CHECK(z.device().is_cpu() && y.device().is_cpu(), "beta_ce: CPU tensors only");
  TORCH_CHECK(z.dim() == 3 && z.is_contiguous(), "beta_ce: logits must be contiguous (N, C, S)");
  TORCH_CHECK(y.dim() == 2 && y.is_contiguous() && y.scalar_type() == at::kLong, "beta_ce: target must be contiguous int64 (N, S)");
  TORCH_CHECK(y.size(0) == z.size(0) && y.size(1) == z.size(2), "beta_ce: target shape does not match the logits");
}

}  // namespace

std::vector<at::Tensor> beta_ce_forward(at::Tensor z, at::Tensor y, double beta) {
  check(z, y);
  const int64_t N = z.size(0), C = z.size(1), S = z.size(2);
  auto loss = at::empty({N, S}, z.options());
  auto lse = at::empty({N, S}, z.options());
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "beta_ce_forward", [&] {
    forward_kernel<scalar_t>(z.data_ptr<scalar_t>(), y.data_ptr<int64_t>(), loss.data_ptr<scalar_t>(),
                             lse.data_ptr<scalar_t>(), N, C, S, static_cast<scalar_t>(beta));
  });
  return {loss, lse};
}

at::Tensor vec_expm1(at::Tensor x) {  // libmvec's vector expm1 (ATen's CPU expm1 is scalar, ~4x exp)
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous(), "expm1: a contiguous CPU tensor");
  auto out = at::empty_like(x);
  const int64_t n = x.numel();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "expm1", [&] {
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) o[i] = std::expm1(in[i]);
    });
  });
  return out;
}

std::vector<at::Tensor> ce_forward(at::Tensor z, at::Tensor y) {
  check(z, y);
  const int64_t N = z.size(0), C = z.size(1), S = z.size(2);
  auto ce = at::empty({N, S}, z.options());
  auto lse = at::empty({N, S}, z.options());
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "ce_forward", [&] {
    ce_forward_kernel<scalar_t>(z.data_ptr<scalar_t>(), y.data_ptr<int64_t>(), ce.data_ptr<scalar_t>(),
                                lse.data_ptr<scalar_t>(), N, C, S);
  });
  return {ce, lse};
}

at::Tensor ce_backward(at::Tensor w, at::Tensor z, at::Tensor y, at::Tensor lse) {
  check(z, y);
  TORCH_CHECK(w.sizes() == y.sizes() && lse.sizes() == y.sizes() && w.is_contiguous() && lse.is_contiguous(),
              "ce_family: weight/lse must be contiguous (N, S)");
  const int64_t N = z.size(0), C = z.size(1), S = z.size(2);
  auto grad = at::empty_like(z);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "ce_backward", [&] {
    ce_backward_kernel<scalar_t>(w.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(), y.data_ptr<int64_t>(),
                                 lse.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), N, C, S);
  });
  return grad;
}

at::Tensor beta_ce_backward(at::Tensor g, at::Tensor z, at::Tensor y, at::Tensor lse, double beta) {
  check(z, y);
  TORCH_CHECK(g.sizes() == y.sizes() && lse.sizes() == y.sizes() && g.is_contiguous() && lse.is_contiguous(),
              "beta_ce: gradient/lse must be contiguous (N, S)");
  const int64_t N = z.size(0), C = z.size(1), S = z.size(2);
  auto grad = at::empty_like(z);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "beta_ce_backward", [&] {
    backward_kernel<scalar_t>(g.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(), y.data_ptr<int64_t>(),
                              lse.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), N, C, S, static_cast<scalar_t>(beta));
  });
  return grad;
}
"""

#: ``-ffast-math`` lets GCC call glibc's vector ``exp``; ``-march=native`` is why the build folder
#: is keyed by the CPU (see :func:`_build_key`)
_CFLAGS = ["-O3", "-ffast-math", "-march=native", "-fopenmp"]
_LDFLAGS = ["-fopenmp"]

_lock = threading.Lock()
_state: dict[str, object] = {}


def _build_key() -> str:
    """Hash of everything the binary depends on: source, flags, torch, Python and the CPU."""
    parts = [_CPP_SOURCE, *_CFLAGS, *_LDFLAGS, torch.__version__, platform.python_version(), platform.machine(),
             describe_machine("cpu")["cpu"], torch.backends.cpu.get_cpu_capability(), os.environ.get("CXX", "c++")]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def extension_dir() -> Path:
    """Folder of the built kernel: ``$ROBUSTLABEL_EXTENSION_DIR`` or ``~/.cache/robustlabel/torch_extensions``
    (``$XDG_CACHE_HOME`` respected), one subfolder per :func:`_build_key`."""
    root = os.environ.get(EXTENSION_DIR_ENV)
    if root:
        return Path(root)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "robustlabel" / "torch_extensions"


def load_extension() -> ModuleType | None:
    """The compiled β-CE kernel, built on first use (about a minute) and cached on disk; ``None``
    (logged once per process) where it cannot be built. Thread-safe; concurrent processes share
    the build through :func:`torch.utils.cpp_extension.load_inline`'s lock file."""
    with _lock:
        if "module" in _state:
            return _state["module"]  # type: ignore[return-value]
        module = None
        t0 = time.perf_counter()
        try:
            from torch.utils import cpp_extension

            name = f"robustlabel_fused_{_build_key()}"
            build = extension_dir() / name
            build.mkdir(parents=True, exist_ok=True)
            module = cpp_extension.load_inline(
                name=name,
                cpp_sources=[_CPP_SOURCE],
                functions=["beta_ce_forward", "beta_ce_backward", "ce_forward", "ce_backward", "vec_expm1"],
                extra_cflags=_CFLAGS,
                extra_ldflags=_LDFLAGS,
                build_directory=str(build),
                verbose=False,
            )
            _state["load_seconds"] = time.perf_counter() - t0
        except Exception as exc:  # no compiler, no ninja, a compile or link error, an unwritable cache
            logger.warning(
                "robustlabel: the fused β-CE C++ kernel could not be built (%s: %s); using the PyTorch "
                "implementation (same values, slower). Set %s=torch to skip the build.",
                type(exc).__name__, str(exc).strip().splitlines()[-1] if str(exc).strip() else "", BACKEND_ENV,
            )
            module = None
        _state["module"] = module
        return module


def reset_extension() -> None:
    """Forget the loaded (or failed) kernel so that the next call retries; for tests."""
    with _lock:
        _state.clear()


def resolve_backend(backend: str | None = None) -> str:
    """``backend`` or ``$ROBUSTLABEL_FUSED`` or ``"auto"``, validated."""
    value = (backend or os.environ.get(BACKEND_ENV) or "auto").lower()
    if value not in BACKENDS:
        raise ValueError(f"β-CE backend must be one of {BACKENDS}, got {value!r} (argument or ${BACKEND_ENV})")
    return value


class BetaCECppFunction(torch.autograd.Function):
    """β-cross-entropy elementwise through the C++ kernel; ``z`` (N, C, *S) CPU float32/64."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, y: torch.Tensor, beta: float, module: ModuleType) -> torch.Tensor:  # type: ignore[override]
        n, c = z.shape[:2]
        z3 = z.reshape(n, c, -1).contiguous()
        y2 = y.reshape(n, -1).contiguous()
        loss, lse = module.beta_ce_forward(z3, y2, float(beta))
        ctx.save_for_backward(z3, y2, lse)
        ctx.beta, ctx.module, ctx.shape = float(beta), module, z.shape
        return loss.view(y.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        z3, y2, lse = ctx.saved_tensors
        g2 = g.reshape(y2.shape).to(z3.dtype).contiguous()
        grad = ctx.module.beta_ce_backward(g2, z3, y2, lse, ctx.beta)
        return grad.view(ctx.shape), None, None, None


class CEFamilyCppFunction(torch.autograd.Function):
    """``ℓ = φ(−log p_y)`` elementwise through the C++ kernel; ``z`` (N, C, *S) CPU float32/64.

    Forward: one pass over the logits gives ``lse`` and ``CE = lse − z_y`` per voxel (only ``lse``
    and ``φ'`` are kept, not the ``C``-channel ``log p``); backward: one pass writes
    ``w (p − e_y)`` with ``w = g φ'(CE)`` and ``p_k = e^{z_k − lse}`` recomputed.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, y: torch.Tensor, phi: Phi, module: ModuleType) -> torch.Tensor:  # type: ignore[override]
        n, c = z.shape[:2]
        z3 = z.reshape(n, c, -1).contiguous()
        y2 = y.reshape(n, -1).contiguous()
        ce, lse = module.ce_forward(z3, y2)
        value, slope = phi(ce.view(y.shape), y)
        ctx.save_for_backward(z3, y2, lse, slope if slope is not None else torch.ones(()))
        ctx.unit_slope, ctx.module, ctx.shape = slope is None, module, z.shape
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        z3, y2, lse, slope = ctx.saved_tensors
        w = g if ctx.unit_slope else g * slope
        grad = ctx.module.ce_backward(w.reshape(y2.shape).to(z3.dtype).contiguous(), z3, y2, lse)
        return grad.view(ctx.shape), None, None, None


def _kernel_for(z: torch.Tensor, backend: str | None) -> ModuleType | None:
    """The C++ module where ``backend`` allows it and ``z`` is a CPU float32/64 tensor, else ``None``."""
    if resolve_backend(backend) != "torch" and z.device.type == "cpu" and z.dtype in (torch.float32, torch.float64):
        return load_extension()
    return None


def expm1(x: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """``e^x − 1`` without autograd, for the ``φ`` of :func:`ce_family` (which runs inside a
    ``Function``'s forward): the C++ kernel's vectorised ``expm1`` for CPU float32/64 (ATen's is
    scalar, about 4× the cost of ``exp`` and more than a whole ``F.cross_entropy`` on 3-D logits),
    else :func:`torch.expm1`.  Same accuracy class (a few ulp)."""
    module = _kernel_for(x, backend)
    if module is not None and not x.requires_grad:
        return module.vec_expm1(x.contiguous())
    return torch.expm1(x)


def ce_family(z: torch.Tensor, y: torch.Tensor, phi: Phi, backend: str | None = None) -> torch.Tensor:
    """Elementwise ``φ(CE, y)`` of logits ``z`` (N, C, *S) and long targets ``y`` (N, *S), with the
    fused backward ``φ'(CE)(p − e_y)`` (GCE, RCE, SCE, CE).

    Args:
        phi: ``φ(ce, y) -> (value, dφ/dce or None for slope 1)``.
        backend: as in :func:`beta_cross_entropy`.

    Raises:
        ValueError: an unknown backend.
    """
    module = _kernel_for(z, backend)
    if module is not None:
        return CEFamilyCppFunction.apply(z, y, phi, module)
    return CEFamilyFunction.apply(z, y, phi)


def beta_cross_entropy(z: torch.Tensor, y: torch.Tensor, beta: float, backend: str | None = None) -> torch.Tensor:
    """Elementwise β-CE of logits ``z`` (N, C, *S) and long targets ``y`` (N, *S).

    Args:
        backend: ``"auto"`` (the C++ kernel for CPU float32/float64 where it builds, else PyTorch),
            ``"cpp"`` (the kernel; falls back like ``auto`` where it cannot be built) or ``"torch"``;
            ``None`` reads ``$ROBUSTLABEL_FUSED``.

    Raises:
        ValueError: an unknown backend.
    """
    module = _kernel_for(z, backend)
    if module is not None:
        return BetaCECppFunction.apply(z, y, beta, module)
    return BetaCEFunction.apply(z, y, beta)
