#!/usr/bin/env python
"""Benchmark: pool pseudo-labelling and ``/infer`` with today's sliding window against the new
defaults (crop to the brain, measured overlap; :mod:`robustlabel.engine.inference`), side by side
in one run, through the real app built from ``apps/brats`` (as ``monailabel`` builds it).

**The paths.**

* *ours* (pool) -- ``app.batch_infer(...)``, the app's ``/batch/infer`` task
  (``apps/brats/lib/infers/pseudo_pool.py``): the engine's ``PseudoLabeller`` with its defaults
  (:data:`~robustlabel.engine.inference.POOL_WINDOWS`), teacher loaded once, volumes of equal
  shape batched, labels stored through the datastore (tag ``pseudo``);
* *stock* -- MONAI Label's own ``BatchInferTask`` calling the app's ``infer`` one image at a time
  (``multi_gpu: false``, ``max_workers: 1``, ``save_label: true``, tag ``original``) with
  **today's settings**: the request carries ``sw_stock: true`` (no crop, overlap 0.5, Gaussian
  blending; :meth:`WindowSettings.stock`), so the baseline never benefits from the new code;
* *ours* (infer) -- ``app.infer`` with its defaults (:data:`~robustlabel.engine.inference.INFER_WINDOWS`)
  against ``app.infer`` with ``sw_stock: true``.

**Labels are checked with a trained network.**  A tiny TransBTS is trained inside the benchmark
(CE, ``--train-epochs`` epochs on ``--train-cases`` synthetic studies; ``scripts/bench_crop.py``'s
:func:`train_tiny`) and published as the app's model; WT/TC/ET Dice of each fast path's labels
against the stock path's labels (worst volume) say whether the speed-up keeps the labels, and the
Dice against the phantoms' truth whether the network learned at all.  A last check labels one
volume with ``PseudoLabeller(windows=WindowSettings.stock(), channels_last=False)`` and compares it
with the stock labels voxel by voxel: the switch restores today's output exactly.

**Measured**, side by side: volumes per second (median of ``--repeats`` alternating runs, one
untimed warm-up volume per path first), the peak resident memory of the process during each path
(``VmHWM`` after resetting it through ``/proc/self/clear_refs``; CPU runs have no loader workers),
and the Dice above.

**Full-size mode** (``--full-size``) measures the goals of issue 15 on 4×240×240×155 volumes
(``robustlabel synth-brats --shape 240 240 155``):

* (a) ``/infer`` of one volume with the **full** TransBTS (seeded weights: time does not depend
  on them), today's settings and the new defaults, in units of one forward pass of a single
  4×128³ window timed in the same run (goal ≤ 4.5; 12.0 before); the labels' Dice against
  today's output with the trained tiny network on the same volume (goal WT ≥ 0.99);
* (b) the pool against stock on ``--full-cases`` full-size volumes with the trained tiny network
  (goal ≥ 2×);
* (c) the peak memory of a pool of 40 volumes against a pool of 10 (tiny network, each pool in
  its own process, its own ``VmHWM``; ``--memory-shape`` volumes, copies of a few
  phantoms): goal within 10 %.

    python scripts/bench_pseudo_label.py [--cases 4] [--shape 64 64 48] [--pad 24] [--repeats 2]
                                         [--full-size] [--out results/bench_pseudo_label]

Writes ``<out>.json``, ``<out>.md`` and ``<out>.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from robustlabel.atomic import write_json_atomic, write_text_atomic
from robustlabel.data.studies import modalities_path
from robustlabel.data.synthetic import write_synthetic_brats
from robustlabel.engine.checkpoint import (TrainingRecord, atomic_torch_save, load_network, network_from_checkpoint,
                                          read_checkpoint)
from robustlabel.engine.config import TrainConfig
from robustlabel.engine.inference import INFER_WINDOWS, POOL_WINDOWS, WindowSettings, prepare_network
from robustlabel.engine.pseudo_label import PseudoLabeller, StudiesSink
from robustlabel.experiments.figures import PlotPanel, plot_panels
from robustlabel.machine import describe_machine, resolve_device
from robustlabel.markdown import markdown_table
from robustlabel.metrics.brats import brats_metrics
from robustlabel.networks import build_network

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_crop import train_tiny  # noqa: E402  (one training recipe for both crop benchmarks)

REPO = Path(__file__).resolve().parents[1]
APP_DIR = REPO / "apps" / "brats"
BRATS_SHAPE = (240, 240, 155)
REGIONS = ("WT", "TC", "ET")
#: the request keys that give today's sliding window (``lib.conf.parse_sliding_window``)
STOCK_REQUEST = {"sw_stock": True}


# ---------------------------------------------------------------------------- memory
def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (``VmHWM``); ``False`` where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float | None:
    """This process's RSS high-water mark in MiB (``VmHWM``), ``None`` off Linux."""
    try:
        found = re.search(r"VmHWM:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(found.group(1)) / 1024 if found else None


# ---------------------------------------------------------------------------- app and data
def load_app(studies: Path, model_dir: Path, tiny: bool, device: str) -> Any:
    """Build the app from apps/brats exactly as ``monailabel`` does (``main.py``'s MONAILabelApp subclass)."""
    from monailabel.config import settings
    from monailabel.utils.others.class_utils import get_class_of_subclass_from_file

    settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD = False  # no file-watcher thread during timing
    app_class = get_class_of_subclass_from_file("main", str(APP_DIR / "main.py"), "MONAILabelApp")
    conf = {"models": "transbts", "tiny": str(tiny).lower(), "device": device, "model_dir": str(model_dir)}
    return app_class(app_dir=str(APP_DIR), studies=str(studies), conf=conf)


def publish(app: Any, checkpoint: Path | None, seed: int) -> tuple[Path, TrainConfig]:
    """Publish ``checkpoint`` as the app's model, or a seeded untrained network of the app's configuration."""
    task_config = app.models["transbts"]
    target = Path(task_config.published_model)
    target.parent.mkdir(parents=True, exist_ok=True)
    if checkpoint is not None:
        shutil.copyfile(checkpoint, target)
        return target, load_network(target, "cpu")[1]
    config = TrainConfig(network=task_config.network_config, roi_size=app.app_conf.roi_size)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        network = build_network(config.network)
    record = TrainingRecord(config=config.to_dict())
    return atomic_torch_save({"network": network.state_dict(), "record": record.state_dict()}, target), config


def make_studies(root: Path, cases: int, shape: tuple[int, int, int], seed: int, pad: int = 0) -> Path:
    """``cases`` synthetic volumes (zero-padded by ``pad`` in x and y) imported without clinician labels."""
    from robustlabel.data.studies import import_brats

    write_synthetic_brats(root / "source", cases=cases, shape=shape, seed=seed, progress=False)
    if pad:
        for path in sorted((root / "source").rglob("*.nii.gz")):
            image = nib.load(path)
            data = np.pad(np.asarray(image.dataobj), ((pad, pad), (pad, pad), (0, 0)))
            nib.save(nib.Nifti1Image(data, image.affine, image.header), path)
    import_brats(root / "source", root / "studies", labeled_fraction=0.0, seed=seed, progress=False)
    return root / "studies"


def truth_of(root: Path, image: str) -> np.ndarray:
    """The phantom's ground truth (BraTS values) of studies image ``image``."""
    found = sorted((root / "source").rglob(f"{image}*seg.nii.gz"))
    return np.asarray(nib.load(found[0]).dataobj) if found else np.zeros(0)


def read_label(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def dice(ours: list[np.ndarray], reference: list[np.ndarray]) -> dict[str, float]:
    """Worst-volume WT/TC/ET Dice of ``ours`` against ``reference``."""
    per_volume = [brats_metrics(a, b) for a, b in zip(ours, reference) if b.size]
    return {k: min(m[f"dice_{k}"] for m in per_volume) if per_volume else float("nan") for k in REGIONS}


# ---------------------------------------------------------------------------- the paths
def run_pool(app: Any, images: list[str], device: str, batch_size: int) -> None:
    app.batch_infer({"model": "transbts", "images": images, "label_tag": "pseudo", "device": device,
                     "batch_size": batch_size})


def run_stock(app: Any, images: list[str], device: str, config: TrainConfig) -> None:
    from monailabel.interfaces.tasks.batch_infer import BatchInferTask

    request = {"model": "transbts", "images": images, "label_tag": "original", "save_label": True,
               "multi_gpu": False, "device": device, "max_workers": 1, "sw_batch_size": config.sw_batch_size,
               "logging": "WARNING", **STOCK_REQUEST}
    BatchInferTask()(request, app.datastore(), app.infer)


def measured(fn: Any, *args: Any) -> tuple[float, float | None]:
    """``(seconds, peak RSS in MiB during the call)``."""
    reset = reset_peak_rss()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, peak_rss_mib() if reset else None


def bench_pool(root: Path, cases: int, shape: tuple[int, int, int], pad: int, checkpoint: Path | None,
               args: argparse.Namespace, device: str, tiny: bool = True) -> dict[str, Any]:
    """Pool (ours) against stock on ``cases`` volumes (plus one warm-up), side by side."""
    studies = make_studies(root, cases + 1, shape, args.seed, pad)
    app = load_app(studies, root / "model", tiny, device)
    published, config = publish(app, checkpoint, args.seed)
    images = sorted(app.datastore().list_images())
    warm, timed_images = images[:1], images[1:]
    run_pool(app, warm, device, args.batch_size)
    run_stock(app, warm, device, config)
    runs: dict[str, list[tuple[float, float | None]]] = {"ours": [], "stock": []}
    for repeat in range(args.repeats):
        if repeat:  # otherwise the resume-by-teacher skip makes ours free
            for image in timed_images:
                app.datastore().retire_pseudo_label(image)
        runs["ours"].append(measured(run_pool, app, timed_images, device, args.batch_size))
        runs["stock"].append(measured(run_stock, app, timed_images, device, config))
    ours = [read_label(studies / "labels" / "pseudo" / f"{i}.nii.gz") for i in timed_images]
    stock = [read_label(studies / "labels" / "original" / f"{i}.nii.gz") for i in timed_images]
    truth = [truth_of(root, i) for i in timed_images]
    # the switch: the engine with today's settings in the contiguous layout gives the stock labels exactly
    exact_dir = root / "exact"
    item = {"image": str(modalities_path(app.datastore().get_image_uri(timed_images[0]))), "case": timed_images[0]}
    PseudoLabeller(published, device=device, batch_size=1, windows=WindowSettings.stock(config.sw_batch_size),
                   channels_last=False).label([item], StudiesSink(studies, label_dir=exact_dir), progress=False)
    exact = float((read_label(exact_dir / f"{timed_images[0]}.nii.gz") == stock[0]).mean())
    median = {path: statistics.median(t for t, _ in r) for path, r in runs.items()}
    peak = {path: max((m for _, m in r if m is not None), default=None) for path, r in runs.items()}
    row = {
        "volume": [4, shape[0] + 2 * pad, shape[1] + 2 * pad, shape[2]],
        "volumes": len(timed_images),
        "network": "tiny, trained" if checkpoint is not None else ("tiny" if tiny else "full") + ", untrained",
        "roi_size": list(config.resolved_roi_size),
        "ours_windows": POOL_WINDOWS.replace(sw_batch_size=None).describe(),
        "stock_windows": WindowSettings.stock(config.sw_batch_size).describe(),
        "batch_size": args.batch_size,
        "runs_s": {path: [round(t, 3) for t, _ in r] for path, r in runs.items()},
        "ours_volumes_per_s": len(timed_images) / median["ours"],
        "stock_volumes_per_s": len(timed_images) / median["stock"],
        "ratio": median["stock"] / median["ours"],
        "ours_peak_rss_mib": peak["ours"],
        "stock_peak_rss_mib": peak["stock"],
        "dice_vs_stock": dice(ours, stock),
        "dice_vs_truth_ours": dice(ours, truth),
        "dice_vs_truth_stock": dice(stock, truth),
        "stock_switch_agreement": exact,
    }
    print(f"pool {row['volume']} × {row['volumes']} ({row['network']}, {device}): ours {row['ours_volumes_per_s']:.3f} "
          f"vol/s, stock {row['stock_volumes_per_s']:.3f} vol/s, ratio {row['ratio']:.2f}×; peak RSS ours "
          f"{peak['ours']} MiB, stock {peak['stock']} MiB; Dice vs stock {row['dice_vs_stock']}; "
          f"stock switch reproduces stock on {100 * exact:.4f} % of voxels", flush=True)
    return row


def bench_infer(root: Path, checkpoint: Path | None, args: argparse.Namespace, device: str, tiny: bool,
                single_window: bool) -> dict[str, Any]:
    """``app.infer`` of one full-size volume: today's settings against the ``/infer`` defaults;
    with ``single_window`` also one forward pass of a single window (the time unit)."""
    studies = make_studies(root, 1, BRATS_SHAPE, args.seed)
    app = load_app(studies, root / "model", tiny, device)
    published, config = publish(app, checkpoint, args.seed)
    image = sorted(app.datastore().list_images())[0]
    request = {"model": "transbts", "image": image, "device": device}
    out: dict[str, Any] = {"network": "tiny, trained" if checkpoint is not None else ("tiny" if tiny else "full") + ", untrained",
                           "volume": [4, *BRATS_SHAPE], "roi_size": list(config.resolved_roi_size)}
    if single_window:  # the unit: one forward of one window, the network prepared as the infer task serves it
        network, _ = network_from_checkpoint(read_checkpoint(published, device), device)
        network = prepare_network(network, torch.device(device).type == "cpu")
        x = torch.randn(1, 4, *config.resolved_roi_size, device=device)
        times = []
        for _ in range(args.window_repeats + 1):
            with torch.inference_mode():
                times.append(measured(network, x)[0])
        out["single_window_s"] = statistics.median(times[1:])
        del network, x
    labels = {}
    for name, extra in (("stock", STOCK_REQUEST), ("ours", {})):
        seconds, peak = measured(lambda: labels.__setitem__(name, read_label(Path(app.infer({**request, **extra})["file"]))))
        out[name] = {"seconds": seconds, "peak_rss_mib": peak}
    out["ours_windows"] = INFER_WINDOWS.describe()
    out["speedup"] = out["stock"]["seconds"] / out["ours"]["seconds"]
    out["dice_vs_stock"] = dice([labels["ours"]], [labels["stock"]])
    out["dice_vs_truth_stock"] = dice([labels["stock"]], [truth_of(root, image)])
    if single_window:
        for name in ("stock", "ours"):
            out[name]["single_windows"] = out[name]["seconds"] / out["single_window_s"]
    print(f"infer {out['volume']} ({out['network']}): " + ", ".join(
        f"{n} {out[n]['seconds']:.1f} s" + (f" = {out[n]['single_windows']:.2f} single-window forwards" if single_window else "")
        for n in ("stock", "ours")) + f"; Dice vs stock {out['dice_vs_stock']}", flush=True)
    return out


_MEMORY_CHILD = textwrap.dedent("""
    import json, re, sys
    from robustlabel.engine.pseudo_label import PseudoLabeller, StudiesSink
    checkpoint, items, studies, batch_size = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    PseudoLabeller(checkpoint, device="cpu", batch_size=batch_size).label(items, StudiesSink(studies), progress=False)
    print(json.dumps({"vmhwm_kib": int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1))}))
""")


def bench_memory(root: Path, checkpoint: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of a pool of each ``--memory-pools`` size, each pool in its own process: the child's
    own ``VmHWM`` (not ``wait4``'s ``ru_maxrss``, which Linux raises at ``exec`` to the RSS of the
    forked copy of this large parent process)."""
    distinct = 3
    studies = make_studies(root, distinct, tuple(args.memory_shape), args.seed)
    four_d = sorted((studies / "modalities").glob("*.nii.gz"))
    largest = max(args.memory_pools)
    pool = root / "pool"
    (pool / "modalities").mkdir(parents=True)
    items = []
    for i in range(largest):  # copies of a few phantoms: the pool's size, not its content, is measured
        target = pool / "modalities" / f"case{i:03d}.nii.gz"
        shutil.copyfile(four_d[i % distinct], target)
        items.append({"image": str(target), "case": f"case{i:03d}"})
    out: dict[str, Any] = {"volume": [4, *args.memory_shape], "network": "tiny, trained", "pools": {}}
    for size in sorted(args.memory_pools):
        studies_dir = root / f"labels_{size}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "lib"), os.environ.get("PYTHONPATH", "")])}
        start = time.perf_counter()
        child = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(checkpoint), json.dumps(items[:size]),
                                str(studies_dir), str(args.batch_size)], env=env, capture_output=True, text=True)
        if child.returncode != 0:
            raise RuntimeError(f"the pool of {size} failed: {child.stderr[-2000:]}")
        peak = json.loads(child.stdout.strip().splitlines()[-1])["vmhwm_kib"] / 1024
        out["pools"][size] = {"peak_rss_mib": peak, "seconds": time.perf_counter() - start}
    sizes = sorted(args.memory_pools)
    out["ratio_largest_vs_smallest"] = out["pools"][sizes[-1]]["peak_rss_mib"] / out["pools"][sizes[0]]["peak_rss_mib"]
    print(f"pool memory {out['volume']}: " + ", ".join(f"{s} volumes {p['peak_rss_mib']:.0f} MiB" for s, p in out["pools"].items())
          + f"; ratio {out['ratio_largest_vs_smallest']:.3f}", flush=True)
    return out


# ---------------------------------------------------------------------------- report
def _fmt(value: Any, spec: str = ".2f") -> str:
    return "–" if value is None or (isinstance(value, float) and value != value) else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Pseudo-labelling and /infer: new defaults against today's sliding window", "",
        f"{m['device']}, torch {m['torch']} ({torch.get_num_threads()} intra-op threads), {m['date']}; "
        f"load average at the start {report['load_average']}.  Training of the tiny checkpoint: "
        f"{report['training']['epochs']} epochs on {report['training']['shape']} ({report['training']['seconds']:.0f} s).", "",
        f"Defaults: pool `{POOL_WINDOWS}`; /infer `{INFER_WINDOWS}`; stock = `sw_stock: true` (`{WindowSettings.stock()}`).", "",
        "## Pool (ours: app /batch/infer) against stock (BatchInferTask + app.infer, today's settings)", "",
    ]
    header = ["volume", "n", "network", "ours vol/s", "stock vol/s", "ratio", "peak RSS ours / stock MiB",
              "Dice vs stock WT / TC / ET", "Dice vs truth ours / stock WT", "stock switch = stock"]
    rows = [[("×".join(map(str, r["volume"]))), r["volumes"], r["network"], _fmt(r["ours_volumes_per_s"], ".3f"),
             _fmt(r["stock_volumes_per_s"], ".3f"), f"{r['ratio']:.2f}×",
             f"{_fmt(r['ours_peak_rss_mib'], '.0f')} / {_fmt(r['stock_peak_rss_mib'], '.0f')}",
             " / ".join(_fmt(r["dice_vs_stock"][k], ".4f") for k in REGIONS),
             f"{_fmt(r['dice_vs_truth_ours']['WT'], '.3f')} / {_fmt(r['dice_vs_truth_stock']['WT'], '.3f')}",
             f"{100 * r['stock_switch_agreement']:.2f} %"] for r in report["pool"]]
    lines += [markdown_table(header, rows, "lrlrrrrllr"), ""]
    for infer in report.get("infer", []):
        unit = "single_windows" in infer["stock"]
        lines += [f"## /infer of one {'×'.join(map(str, infer['volume']))} volume ({infer['network']})", "",
                  markdown_table(["settings", "seconds", "single-window forwards" if unit else "–", "peak RSS MiB"],
                                 [[n, f"{infer[n]['seconds']:.1f}", _fmt(infer[n].get("single_windows")),
                                   _fmt(infer[n]["peak_rss_mib"], ".0f")] for n in ("stock", "ours")], "lrrr"), "",
                  f"Speed-up {infer['speedup']:.2f}×; Dice vs stock WT / TC / ET "
                  + " / ".join(_fmt(infer["dice_vs_stock"][k], ".4f") for k in REGIONS)
                  + (f"; one 4×128³ window forward: {infer['single_window_s']:.2f} s (goal ≤ 4.5 forwards)" if unit else ""), ""]
    if "memory" in report:
        mem = report["memory"]
        lines += ["## Peak memory against the pool's size (each pool in its own process)", "",
                  markdown_table(["volumes", "peak RSS MiB", "seconds"],
                                 [[s, f"{p['peak_rss_mib']:.0f}", f"{p['seconds']:.0f}"] for s, p in mem["pools"].items()], "rrr"),
                  "", f"Largest / smallest pool: {mem['ratio_largest_vs_smallest']:.3f} (goal ≤ 1.10).", ""]
    lines += [f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=4, help="timed pool volumes (default %(default)s)")
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 64, 48], metavar=("X", "Y", "Z"))
    parser.add_argument("--pad", type=int, default=24, help="zero voxels added on both sides of x and y")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=2, help="volumes per batch, ours")
    parser.add_argument("--repeats", type=int, default=2, help="alternating timed runs per path; medians")
    parser.add_argument("--train-cases", type=int, default=6)
    parser.add_argument("--train-shape", type=int, nargs=3, default=[64, 64, 48])
    parser.add_argument("--train-epochs", type=int, default=30)
    parser.add_argument("--checkpoint", type=Path, default=None, help="a trained tiny checkpoint (skips training)")
    parser.add_argument("--full-size", action="store_true", help="also measure the issue's goals on 4×240×240×155")
    parser.add_argument("--full-cases", type=int, default=2, help="full-size pool volumes (b)")
    parser.add_argument("--window-repeats", type=int, default=1, help="timed single-window forwards (a)")
    parser.add_argument("--skip-full-network", action="store_true", help="(a) without the full TransBTS")
    parser.add_argument("--memory-pools", type=int, nargs=2, default=[10, 40])
    parser.add_argument("--memory-shape", type=int, nargs=3, default=[96, 96, 64])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the generated data here (default: a temp dir)")
    parser.add_argument("--out", default="results/bench_pseudo_label", help="output stem for .json, .md and .png")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.cases < 1:
        parser.error("--repeats and --cases must be >= 1")
    logging.basicConfig(level=logging.WARNING)
    torch_device = resolve_device(args.device)
    device = "cuda" if torch_device.type == "cuda" else "cpu"
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_pseudo_label_") as tmp:
        root = args.workdir or Path(tmp)
        checkpoint, train_s, best_epoch, _, _ = train_tiny(root / "train", args.train_cases, args.train_shape,
                                                          args.train_epochs, args.seed + 1, 0, args.checkpoint)
        report: dict[str, Any] = {
            "machine": describe_machine(torch_device), "load_average": load,
            "command": " ".join(["python", "scripts/bench_pseudo_label.py", *(argv if argv is not None else sys.argv[1:])]),
            "training": {"epochs": args.train_epochs if args.checkpoint is None else "given", "seconds": train_s,
                         "best_epoch": best_epoch, "shape": list(args.train_shape)},
            "pool": [bench_pool(root / "small", args.cases, tuple(args.shape), args.pad, checkpoint, args, device)],
        }
        if args.full_size:
            report["infer"] = [bench_infer(root / "infer_tiny", checkpoint, args, device, tiny=True, single_window=False)]
            if not args.skip_full_network:
                report["infer"].append(bench_infer(root / "infer_full", None, args, device, tiny=False, single_window=True))
            report["pool"].append(bench_pool(root / "full", args.full_cases, BRATS_SHAPE, 0, checkpoint, args, device))
            report["memory"] = bench_memory(root / "memory", checkpoint, args)
        report["total_s"] = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out.with_suffix(".json"), report)
    write_text_atomic(out.with_suffix(".md"), markdown(report))
    panels = [PlotPanel("volumes per second", ["×".join(map(str, r["volume"])) for r in report["pool"]],
                        {"ours": [r["ours_volumes_per_s"] for r in report["pool"]],
                         "stock": [r["stock_volumes_per_s"] for r in report["pool"]]}, ylabel="vol/s"),
              PlotPanel("Dice against stock output", list(REGIONS),
                        {"×".join(map(str, r["volume"])): [r["dice_vs_stock"][k] for k in REGIONS] for r in report["pool"]},
                        ylabel="Dice")]
    plot_panels(out.with_suffix(".png"), panels, suptitle=report["machine"]["device"])
    print(markdown(report))
    print(f"total {report['total_s']:.0f} s; wrote {out}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
