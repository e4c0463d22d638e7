#!/usr/bin/env python
"""Benchmark: crop to the brain before the sliding window (``robustlabel.engine.crop``) against
today's whole-volume sliding window, on a **trained** tiny TransBTS.

1. ``--cases`` synthetic studies (``robustlabel.data.synthetic``) of ``--shape``, each zero-padded
   by ``--pad`` voxels in x and y (the phantom's brain fills 78-90 % of each axis; a real BraTS
   240×240×155 volume is mostly background around a brain box of about 45 % of the volume; the
   report gives the box fraction measured here);
2. the tiny TransBTS (``TINY_TRANSBTS``, 32³ windows) trained with CE for ``--epochs`` on all but
   ``--eval-cases`` of them, through the engine (:func:`robustlabel.engine.trainer.train`);
3. on each held-out case, side by side in one run (settings interleaved per case, untimed warm-up
   first): **stock** (:meth:`WindowSettings.stock`: no crop, overlap 0.5, Gaussian blending) and
   the crop with each ``--margins`` at each ``--overlaps`` × ``--blends`` × ``--sw-batch-sizes``,
   plus the crop aligned to stock's window grid (overlap 0.5), in float32 and, on a CPU with native
   bf16, under bf16 autocast; time of ``predict_probabilities``
   (sliding window + softmax, the volume already in memory), WT/TC/ET Dice of each output against
   **stock's output** (does the speed-up keep the labels?) and against the ground truth (did the
   network learn?), and the number of 32³ windows the network ran on (the work, which timing
   noise on a shared machine does not touch);
4. the choice of the two defaults of :mod:`robustlabel.engine.inference` (:func:`choose`): among
   the settings whose worst-case WT Dice against stock's output is at least the caller's bound
   (``/infer`` 0.99, the pool 0.98), the fewest windows, then the shortest median time.

    python scripts/bench_crop.py [--cases 8] [--shape 64 64 48] [--pad 24] [--epochs 30] [--margins 8]
                                 [--overlaps 0.5 0.25 0.125] [--blends gaussian constant]
                                 [--sw-batch-sizes 1 4] [--checkpoint best.pt] [--out results/bench_crop]

Writes ``bench_crop.json``, ``bench_crop.md`` and ``bench_crop.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from robustlabel.atomic import write_json_atomic as atomic_write_json, write_text_atomic as atomic_write_text
from robustlabel.data.labels import train_to_brats
from robustlabel.data.nifti import read_nifti
from robustlabel.data.studies import import_brats, studies_datalist
from robustlabel.data.synthetic import write_synthetic_brats
from robustlabel.data.transforms import infer_transforms
from robustlabel.engine.checkpoint import load_network
from robustlabel.engine.config import TrainConfig
from robustlabel.engine.crop import DEFAULT_MARGIN, foreground_box
from robustlabel.engine.inference import WindowSettings, cpu_bf16_supported, default_channels_last, prepare_network
from robustlabel.engine.inference import BLEND_MODE, BLEND_MODES
from robustlabel.markdown import markdown_table
from robustlabel.engine.trainer import train
from robustlabel.experiments.figures import PlotPanel, plot_panels
from robustlabel.machine import describe_machine
from robustlabel.metrics.brats import brats_metrics
from robustlabel.networks import TINY_TRANSBTS

REGIONS = ("WT", "TC", "ET")
#: worst-case WT Dice against stock's output that each caller's default must keep
MIN_WT_DICE: dict[str, float] = {"infer": 0.99, "pool": 0.98}


class CountingNetwork(torch.nn.Module):
    """The network, counting the windows it is run on: the work, free of timing noise."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.out_channels = getattr(network, "out_channels", None)
        self.windows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.windows += int(x.shape[0])
        return self.network(x)


def settings(sw_batch_size: int, margins: list[int], overlaps: list[float], blends: list[str] | None = None,
             sw_batch_sizes: list[int] | None = None) -> dict[str, WindowSettings]:
    """Stock first (at ``sw_batch_size``), then per margin the aligned crop (also in bf16 where the
    CPU has it natively) and the crop with every overlap × blending × sw_batch_size."""
    out = {"stock (no crop, overlap 0.5)": WindowSettings.stock(sw_batch_size)}
    for margin in margins:
        out[f"crop margin {margin}, aligned, overlap 0.5"] = WindowSettings(sw_batch_size, 0.5, margin, crop_align=True)
        if cpu_bf16_supported():
            out[f"crop margin {margin}, aligned, overlap 0.5, bf16"] = WindowSettings(
                sw_batch_size, 0.5, margin, crop_align=True, cpu_bf16=True)
        for overlap in overlaps:
            for blend in blends or [BLEND_MODE]:
                for sw in sw_batch_sizes or [sw_batch_size]:
                    out[f"crop margin {margin}, overlap {overlap:g}, {blend}, sw batch {sw}"] = WindowSettings(
                        sw, overlap, margin, crop_align=False, blend=blend)
    return out


def choose(summary: dict[str, dict], min_wt: float) -> str | None:
    """The setting with the fewest windows (then the shortest median time) among those whose
    worst-case WT Dice against stock's output is at least ``min_wt``; ``None`` if none is."""
    ok = [name for name, s in summary.items() if s["dice_vs_stock_WT"] >= min_wt]
    return min(ok, key=lambda name: (summary[name]["windows"], summary[name]["median_s"])) if ok else None


def train_tiny(root: Path, cases: int, shape: Sequence[int], epochs: int, seed: int, eval_cases: int = 0,
               checkpoint: Path | None = None) -> tuple[Path, float, int | None, list[dict], list[dict]]:
    """Train the tiny TransBTS with CE on ``cases`` synthetic labelled studies of ``shape`` under ``root``.

    The first ``eval_cases`` studies are held out, the next one validates, the rest train.  With
    ``checkpoint`` given, nothing is trained (the studies are still written: the same seed gives
    the same cases).

    Returns:
        ``(best checkpoint, training seconds, best epoch, held-out items, training items)``.
    """
    write_synthetic_brats(root / "src", cases=cases, shape=tuple(shape), seed=seed, progress=False)
    import_brats(root / "src", root / "studies", labeled_fraction=1.0, seed=seed, progress=False)
    items = studies_datalist(root / "studies")
    held_out, train_items = items[:eval_cases], items[eval_cases:]
    if checkpoint is not None:
        return checkpoint, 0.0, None, held_out, train_items
    config = TrainConfig(network=dict(TINY_TRANSBTS), batch_size=2, epochs=epochs, val_interval=epochs,
                         lr=3e-3, sw_batch_size=4, num_workers=0, device="cpu", seed=seed, pseudo_loss="ce",
                         pseudo_params={})
    t0 = time.perf_counter()
    result = train(train_items[1:], train_items[:1], root / "run", config, progress=False)
    return Path(result.best_checkpoint), time.perf_counter() - t0, result.best_epoch, held_out, train_items


def pad_case(image: torch.Tensor, label: np.ndarray, pad: int) -> tuple[torch.Tensor, np.ndarray]:
    """Zero background of ``pad`` voxels on both sides of x and y."""
    if pad <= 0:
        return image, label
    image = torch.nn.functional.pad(image, (0, 0, pad, pad, pad, pad))
    return image, np.pad(label, ((pad, pad), (pad, pad), (0, 0)))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--eval-cases", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 64, 48))
    parser.add_argument("--pad", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting and case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--margins", type=int, nargs="+", default=[DEFAULT_MARGIN])
    parser.add_argument("--overlaps", type=float, nargs="+", default=[0.5, 0.25, 0.125])
    parser.add_argument("--blends", nargs="+", default=list(BLEND_MODES), choices=BLEND_MODES)
    parser.add_argument("--sw-batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="reuse this trained checkpoint (skips training; the data must come from the same seed)")
    parser.add_argument("--save-checkpoint", type=Path, default=None, help="copy the trained best.pt here")
    parser.add_argument("--out", type=Path, default=Path("results/bench_crop"))
    args = parser.parse_args(argv)
    if not 1 <= args.eval_cases < args.cases - 1:
        raise SystemExit("need at least two training cases and one held-out case")
    machine = describe_machine("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint, train_s, best_epoch, held_out, train_items = train_tiny(
            root, args.cases, args.shape, args.epochs, args.seed, args.eval_cases, args.checkpoint)
        if args.checkpoint is None and args.save_checkpoint:
            args.save_checkpoint.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(checkpoint, args.save_checkpoint)
        network, config = load_network(checkpoint, "cpu")
        network = CountingNetwork(prepare_network(network, default_channels_last(torch.device("cpu"))))
        options = settings(config.sw_batch_size, args.margins, args.overlaps, args.blends, args.sw_batch_sizes)
        transforms = infer_transforms()
        times: dict[str, list[float]] = {name: [] for name in options}
        windows: dict[str, int] = {name: 0 for name in options}
        rows = []
        for item in held_out:
            image = transforms({"image": item["image"]})["image"].as_tensor()
            truth, _ = read_nifti(item["label"])
            image, truth = pad_case(image, truth, args.pad)
            batch = image.unsqueeze(0)
            box = foreground_box(image, DEFAULT_MARGIN)
            box_fraction = float(np.prod([s.stop - s.start for s in box]) / np.prod(image.shape[1:]))
            labels = {}
            for r in range(args.repeats + 1):  # round 0: untimed warm-up
                for name, s in options.items():
                    before = network.windows
                    t = time.perf_counter()
                    probs = s.predict(network, batch, config.resolved_roi_size)
                    if r:
                        times[name].append(time.perf_counter() - t)
                    else:
                        windows[name] += network.windows - before
                    labels[name] = train_to_brats(probs[0].argmax(0).numpy().astype(np.uint8))
            stock = labels[next(iter(options))]
            for name in options:
                vs_stock = brats_metrics(labels[name], stock)
                vs_truth = brats_metrics(labels[name], truth)
                rows.append({"case": item["case"], "setting": name, "box_fraction": box_fraction,
                             **{f"dice_vs_stock_{k}": vs_stock[f"dice_{k}"] for k in REGIONS},
                             **{f"dice_vs_truth_{k}": vs_truth[f"dice_{k}"] for k in REGIONS}})
    stock_name = next(iter(options))
    t_stock = statistics.median(times[stock_name])
    summary = {}
    for name in options:
        mine = [r for r in rows if r["setting"] == name]
        summary[name] = {
            "median_s": statistics.median(times[name]),
            "windows": windows[name],
            "window_ratio_vs_stock": windows[stock_name] / windows[name],
            "speedup_vs_stock": t_stock / statistics.median(times[name]),
            **{f"dice_vs_stock_{k}": min(r[f"dice_vs_stock_{k}"] for r in mine) for k in REGIONS},
            **{f"dice_vs_truth_{k}": statistics.mean(r[f"dice_vs_truth_{k}"] for r in mine) for k in REGIONS},
        }
    volume = "×".join(map(str, (4, args.shape[0] + 2 * args.pad, args.shape[1] + 2 * args.pad, args.shape[2])))
    box = statistics.mean(r["box_fraction"] for r in rows)
    lines = [
        f"Crop before the sliding window, {machine['device']} (torch {machine['torch']}, {machine['date']}): tiny TransBTS "
        + (f"trained {args.epochs} epochs ({train_s:.0f} s)" if args.checkpoint is None else f"from {args.checkpoint}")
        + f" on {len(train_items) - 1} synthetic cases, evaluated on "
        f"{len(held_out)} held-out {volume} volumes (brain box + margin = {100 * box:.0f} % of the volume); "
        f"median of {args.repeats} interleaved runs per case; Dice vs stock = the worst case.",
        "",
        markdown_table(
            ["setting", "windows", "fewer windows", "median s", "speed-up", "Dice vs stock WT / TC / ET",
             "Dice vs truth WT / TC / ET"],
            [[name, s["windows"], f"{s['window_ratio_vs_stock']:.2f}×", f"{s['median_s']:.2f}",
              f"{s['speedup_vs_stock']:.2f}×", " / ".join(f"{s[f'dice_vs_stock_{k}']:.4f}" for k in REGIONS),
              " / ".join(f"{s[f'dice_vs_truth_{k}']:.3f}" for k in REGIONS)] for name, s in summary.items()],
            "lrrrrll"),
    ]
    chosen = {caller: choose(summary, bound) for caller, bound in MIN_WT_DICE.items()}
    lines += [""] + [f"Chosen for {caller} (worst-case WT Dice vs stock ≥ {MIN_WT_DICE[caller]}; fewest windows, "
                     f"then fastest): {name or 'none qualifies'}" for caller, name in chosen.items()]
    table = "\n".join(lines)
    print(table)
    out = {"machine": machine,
           "chosen": {caller: None if name is None else {"setting": name, **options[name].describe()}
                      for caller, name in chosen.items()},
           "args": {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                    for k, v in vars(args).items()},
           "train_seconds": train_s, "best_epoch": best_epoch, "summary": summary, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "bench_crop.json", out)
    atomic_write_text(args.out / "bench_crop.md", table + "\n")
    plot_panels(args.out / "bench_crop.png", [
        PlotPanel("time per volume", list(summary), {"seconds": [s["median_s"] for s in summary.values()]}, ylabel="s"),
        PlotPanel("Dice against stock output", list(REGIONS),
                  {name: [s[f"dice_vs_stock_{k}"] for k in REGIONS] for name, s in summary.items()}, ylabel="Dice"),
    ], suptitle=machine["device"])
    return out


if __name__ == "__main__":
    main()
