#!/usr/bin/env python
"""Benchmark: forward + backward of each robust loss against ``F.cross_entropy``, and the share
of one training step that the loss takes.

**Losses.**  Every loss and ``F.cross_entropy`` are timed side by side in one run, interleaved
round by round so that machine noise hits them alike, on

* ``seg 2×4×128³`` -- TransBTS logits of a batch of two 128³ crops (Cui et al.'s BraTS setting),
* ``cls 256×10`` -- a CIFAR-10 batch of 256,
* ``cls 128×11`` -- the thesis CNN's batch (Ju 2017: 128 images, ten classes + non-relevant).

Reported: the median time of each and the ratio ``loss / cross_entropy`` (targets on 3-D logits:
β-CE ≤ 1.35, GCE/RCE/SCE ≤ 1.15; none on the small batches, where autograd's per-node overhead
dominates).  β-CE appears twice: the default backend (the fused C++ kernel where it builds, see
:mod:`robustlabel.losses.fused`) and the PyTorch fallback (``ROBUSTLABEL_FUSED=torch``).

**Share of a training step.**  For each shape, one training step of the network that produces
such logits: forward, loss, backward, on random inputs, ``train()`` mode, no optimiser step:

* seg: the tiny TransBTS (``robustlabel.networks.TINY_TRANSBTS``) on 2×4×32³ (a CPU-sized
  stand-in for the full network on 128³: both the convolutions and the loss scale with the voxels,
  so the share is about the same; the full network's share is smaller still),
* cls 256×10: the CIFAR ResNet-18 at width 0.25 (``cifar10_robust_ssl.py --quick``) on 256×3×32²,
* cls 128×11: the thesis CNN (:class:`robustlabel.networks.ThesisCNN`) on 128×3×32².

``share = t_loss / (t_step,CE − t_CE + t_loss)``, with ``t_loss`` and ``t_CE`` timed on logits of
the step's own shape in the same interleaved rounds.

    python scripts/bench_losses.py [--repeats 15] [--step-repeats 5] [--out results/bench_losses]

Writes ``bench_losses.json``, ``bench_losses.md`` and ``bench_losses.png`` with ``--out``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from robustlabel.atomic import write_json_atomic as atomic_write_json, write_text_atomic as atomic_write_text
from robustlabel.experiments.figures import PlotPanel, plot_panels
from robustlabel.losses import get_loss
from robustlabel.losses.fused import BACKEND_ENV, load_extension
from robustlabel.machine import describe_machine, resolve_device

LOSSES: dict[str, dict] = {
    "gce": {"q": 0.7},
    "beta_ce": {"beta": 0.001},
    "rce": {},
    "sce": {"alpha": 0.01, "gamma": 1.0},
}
#: the β-CE fallback row: the same loss with ``ROBUSTLABEL_FUSED=torch``
FALLBACK = "beta_ce (PyTorch fallback)"
SHAPES: dict[str, tuple[int, ...]] = {
    "seg 2×4×128³": (2, 4, 128, 128, 128),
    "cls 256×10": (256, 10),
    "cls 128×11": (128, 11),
}
#: per shape: (description of the training step, its network builder, its input shape)
STEPS: dict[str, tuple[str, Callable[[], nn.Module], tuple[int, ...]]] = {}


def _tiny_transbts() -> nn.Module:
    from robustlabel.networks import TINY_TRANSBTS, build_network

    return build_network(dict(TINY_TRANSBTS))


def _resnet18_quarter() -> nn.Module:
    from robustlabel.networks.resnet import cifar_resnet18

    return cifar_resnet18(10, widen_factor=0.25)


def _thesis_cnn() -> nn.Module:
    from robustlabel.networks import ThesisCNN

    return ThesisCNN(num_classes=11)


STEPS.update({
    "seg 2×4×128³": ("tiny TransBTS, 2×4×32³", _tiny_transbts, (2, 4, 32, 32, 32)),
    "cls 256×10": ("CIFAR ResNet-18 width 0.25, 256×3×32²", _resnet18_quarter, (256, 3, 32, 32)),
    "cls 128×11": ("thesis CNN, 128×3×32²", _thesis_cnn, (128, 3, 32, 32)),
})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], None], device: torch.device, inner: int = 1) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / inner


def loss_functions() -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """``cross_entropy`` first, then every robust loss, then the β-CE fallback."""
    fns: dict[str, Callable] = {"cross_entropy": lambda a, b: F.cross_entropy(a, b)}
    fns.update({name: get_loss(name, **params) for name, params in LOSSES.items()})
    beta_ce = fns["beta_ce"]

    def fallback(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        old = os.environ.get(BACKEND_ENV)
        os.environ[BACKEND_ENV] = "torch"
        try:
            return beta_ce(a, b)
        finally:
            if old is None:
                del os.environ[BACKEND_ENV]
            else:
                os.environ[BACKEND_ENV] = old

    fns[FALLBACK] = fallback
    return fns


def _logits(shape: tuple[int, ...], device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g).to(device).requires_grad_(True)
    y = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g).to(device)
    return z, y


def _loss_step(fn: Callable, z: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        z.grad = None
        fn(z, y).backward()

    return run


def bench_shape(shape: tuple[int, ...], device: torch.device, repeats: int) -> list[dict]:
    """Median forward + backward time of every loss on ``shape``; two untimed warm-up rounds."""
    z, y = _logits(shape, device)
    fns = loss_functions()
    times: dict[str, list[float]] = {name: [] for name in fns}
    inner = 1 if z.numel() > 1e6 else 50
    for r in range(repeats + 2):
        for name, fn in fns.items():
            t = _timed(_loss_step(fn, z, y), device, inner)
            if r >= 2:
                times[name].append(t)
    ref = statistics.median(times["cross_entropy"])
    return [
        {"loss": name, "median_ms": 1e3 * statistics.median(ts), "ratio_vs_ce": statistics.median(ts) / ref}
        for name, ts in times.items()
    ]


def bench_step_share(label: str, device: torch.device, repeats: int) -> dict:
    """Training-step time with CE and the share each loss would take of it (see the module docstring)."""
    what, build, input_shape = STEPS[label]
    torch.manual_seed(0)
    network = build().to(device).train()
    x = torch.randn(input_shape, device=device)
    with torch.no_grad():
        logit_shape = tuple(network(x).shape)
    z, y = _logits(logit_shape, device, seed=1)
    fns = loss_functions()

    def step() -> None:
        network.zero_grad(set_to_none=True)
        F.cross_entropy(network(x), y).backward()

    step_times: list[float] = []
    loss_times: dict[str, list[float]] = {name: [] for name in fns}
    inner = 1 if z.numel() > 1e6 else 20
    for r in range(repeats + 1):
        t_step = _timed(step, device)
        for name, fn in fns.items():
            run = _loss_step(fn, z, y)
            run()  # untimed: the network step just evicted the caches and parked the threads
            t = _timed(run, device, inner)
            if r >= 1:
                loss_times[name].append(t)
        if r >= 1:
            step_times.append(t_step)
    t_step = statistics.median(step_times)
    t_ce = statistics.median(loss_times["cross_entropy"])
    shares = {}
    for name, ts in loss_times.items():
        t = statistics.median(ts)
        shares[name] = t / (t_step - t_ce + t)
    return {"step": what, "logits": list(logit_shape), "step_ms": 1e3 * t_step, "share": shares}


def markdown(results: dict, steps: dict, machine: dict, repeats: int, step_repeats: int, backend: str) -> str:
    labels = list(results)
    lines = [
        f"Forward + backward, median of {repeats} interleaved rounds on {machine['device']} "
        f"(torch {machine['torch']}, {machine['date']}); ratio = loss / `F.cross_entropy` on the same logits; "
        f"β-CE kernel: {backend}.",
        "",
        "| loss | " + " | ".join(f"{s} ms | {s} ratio" for s in labels) + " |",
        "|---|" + "---:|---:|" * len(labels),
    ]
    for i, row in enumerate(results[labels[0]]):
        cells = []
        for label in labels:
            r = results[label][i]
            cells += [f"{r['median_ms']:.3f}", f"{r['ratio_vs_ce']:.2f}"]
        lines.append(f"| {row['loss']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Share of one training step (forward + loss + backward, median of {step_repeats} rounds) that the loss takes:",
        "",
        "| logits | training step | step ms | " + " | ".join(results[labels[0]][i]["loss"] for i in range(len(results[labels[0]]))) + " |",
        "|---|---|---:|" + "---:|" * len(results[labels[0]]),
    ]
    for label, s in steps.items():
        shares = " | ".join(f"{100 * v:.2f} %" for v in s["share"].values())
        lines.append(f"| {label} | {s['step']} (logits {'×'.join(map(str, s['logits']))}) | {s['step_ms']:.1f} | {shares} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--step-repeats", type=int, default=5)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--out", type=Path, default=None, help="folder for bench_losses.json/.md/.png")
    args = parser.parse_args()
    device = resolve_device(args.device)
    machine = describe_machine(device)
    print(f"device: {machine['device']} | torch {machine['torch']}")
    t0 = time.perf_counter()
    kernel = load_extension() if device.type == "cpu" else None
    backend = (f"C++ kernel (loaded in {time.perf_counter() - t0:.1f} s)" if kernel is not None
               else "PyTorch (no C++ kernel on this device/build)")
    print(f"β-CE backend: {backend}")
    results = {}
    for label, shape in SHAPES.items():  # printed as they come: a long run on a shared machine
        results[label] = bench_shape(shape, device, args.repeats)
        print(label, " | ".join(f"{r['loss']} {r['ratio_vs_ce']:.2f}×" for r in results[label]), flush=True)
    steps = {label: bench_step_share(label, device, args.step_repeats) for label in SHAPES}
    table = markdown(results, steps, machine, args.repeats, args.step_repeats, backend)
    print(table)
    seg = {r["loss"]: r["ratio_vs_ce"] for r in results["seg 2×4×128³"]}
    others = max(seg[name] for name in ("gce", "rce", "sce"))
    print(f"3-D targets: β-CE {seg['beta_ce']:.2f} (≤ 1.35: {'met' if seg['beta_ce'] <= 1.35 else 'NOT met'}), "
          f"worst of GCE/RCE/SCE {others:.2f} (≤ 1.15: {'met' if others <= 1.15 else 'NOT met'})")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out / "bench_losses.json", {"machine": machine, "beta_ce_backend": backend,
                                                           "results": results, "training_step_share": steps})
        atomic_write_text(args.out / "bench_losses.md", table + "\n")
        names = [r["loss"] for r in results[next(iter(SHAPES))] if r["loss"] != "cross_entropy"]
        plot_panels(args.out / "bench_losses.png", [
            PlotPanel("loss / cross-entropy (fwd + bwd)", names,
                      {label: [next(r["ratio_vs_ce"] for r in rows if r["loss"] == n) for n in names]
                       for label, rows in results.items()}, ylabel="time ratio"),
            PlotPanel("share of a training step", names,
                      {label: [100 * s["share"][n] for n in names] for label, s in steps.items()}, ylabel="%"),
        ], suptitle=machine["device"])
        print(f"wrote {args.out}/bench_losses.json, .md, .png")


if __name__ == "__main__":
    main()
