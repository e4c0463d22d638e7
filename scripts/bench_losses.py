#!/usr/bin/env python
"""Benchmark: forward + backward of each robust loss against ``F.cross_entropy``.

Both are timed side by side in one run, interleaved round by round so that machine noise
hits them alike, on 2×4×128³ segmentation logits and on (256, 10) classification logits.
Prints the median time of each and the ratio ``loss / cross_entropy`` (target ≤ 1.15), and
the device (CUDA when present, else CPU).  Writes JSON and Markdown with ``--out``.

    python scripts/bench_losses.py [--repeats 15] [--out results/bench_losses]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from robustlabel.data.nifti import write_bytes_atomic, write_json_atomic
from robustlabel.losses import get_loss
from robustlabel.machine import describe_machine, resolve_device

LOSSES: dict[str, dict] = {
    "gce": {"q": 0.7},
    "beta_ce": {"beta": 0.001},
    "rce": {},
    "sce": {"alpha": 0.01, "gamma": 1.0},
}
SHAPES: dict[str, tuple[int, ...]] = {"seg 2×4×128³": (2, 4, 128, 128, 128), "cls 256×10": (256, 10)}


def _step(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], z: torch.Tensor, y: torch.Tensor) -> float:
    """One timed forward + backward."""
    z.grad = None
    if z.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn(z, y).backward()
    if z.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench_shape(shape: tuple[int, ...], device: torch.device, repeats: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(shape, generator=g).to(device).requires_grad_(True)
    y = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g).to(device)
    fns = {"cross_entropy": lambda a, b: F.cross_entropy(a, b)}
    fns.update({name: get_loss(name, **params) for name, params in LOSSES.items()})
    times: dict[str, list[float]] = {name: [] for name in fns}
    inner = 1 if z.numel() > 1e6 else 50
    for r in range(repeats + 2):  # two warm-up rounds
        for name, fn in fns.items():
            t = sum(_step(fn, z, y) for _ in range(inner)) / inner
            if r >= 2:
                times[name].append(t)
    ref = statistics.median(times["cross_entropy"])
    return [
        {"loss": name, "median_ms": 1e3 * statistics.median(ts), "ratio_vs_ce": statistics.median(ts) / ref}
        for name, ts in times.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--out", type=Path, default=None, help="folder for bench_losses.json/.md")
    args = parser.parse_args()
    device = resolve_device(args.device)
    machine = describe_machine(device)
    print(f"device: {machine['device']} | torch {torch.__version__} | {platform.processor() or platform.machine()}")
    results = {label: bench_shape(shape, device, args.repeats) for label, shape in SHAPES.items()}
    lines = [f"Forward + backward, median of {args.repeats} interleaved rounds on {machine['device']}.", "",
             "| loss | " + " | ".join(f"{s} ms | {s} ratio" for s in SHAPES) + " |",
             "|---|" + "---:|---:|" * len(SHAPES)]
    for i, row in enumerate(results[next(iter(SHAPES))]):
        cells = []
        for label in SHAPES:
            r = results[label][i]
            cells += [f"{r['median_ms']:.3f}", f"{r['ratio_vs_ce']:.2f}"]
        lines.append(f"| {row['loss']} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    worst = max(r["ratio_vs_ce"] for rows in results.values() for r in rows)
    print(f"worst ratio: {worst:.2f} (target ≤ 1.15: {'met' if worst <= 1.15 else 'NOT met'})")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out / "bench_losses.json", {"machine": machine, "results": results})
        write_bytes_atomic(args.out / "bench_losses.md", (table + "\n").encode())


if __name__ == "__main__":
    main()
