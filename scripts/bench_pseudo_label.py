#!/usr/bin/env python
"""Benchmark: pool pseudo-labelling, our batch path against MONAI Label's stock batch inference.

Both paths run in one process on the same studies, through the real app built from
``apps/brats`` (as ``monailabel`` builds it), with the same TransBTS checkpoint:

* **ours** -- ``app.batch_infer(...)``, i.e. the app's ``/batch/infer`` task
  (``apps/brats/lib/infers/pseudo_pool.py``): the engine's ``PseudoLabeller`` loads the teacher
  once, stacks volumes of equal shape into batches, decompresses the next ones in data-loader
  workers, and stores each label through the datastore (tag ``pseudo``);
* **stock** -- MONAI Label's own ``monailabel.interfaces.tasks.batch_infer.BatchInferTask``
  called with the app's ``infer`` and ``multi_gpu: false`` (its default ``multi_gpu: true``
  divides by the CUDA device count and fails without a GPU), ``max_workers: 1`` (the endpoint's
  default), ``save_label: true``: one ``app.infer`` per image (load → sliding window → write →
  datastore save, tag ``original``).  It uses the same infer task as Slicer's "Run" button
  (``apps/brats/lib/infers/transbts.py``, unchanged).

Fairness:

* same weights: both paths serve the one published checkpoint (a seeded, *untrained* network in
  the engine's checkpoint format; throughput does not depend on the weights) and rebuild it from
  its stored config;
* same sliding window: MONAI ``SlidingWindowInferer`` with the checkpoint's ``roi_size`` (the
  network's ``img_size``: 32³ tiny, 128³ full; smaller volumes are padded to one window by both),
  Gaussian blending, and the checkpoint's ``sw_batch_size`` and ``sw_overlap`` (0.5), which the
  stock request sets explicitly (they are also the infer task's ``SW_OVERLAP`` default); autocast
  only on CUDA (bf16 where supported) in both;
* same warm-up: one extra volume runs through each path first, untimed (model load, CUDA
  context, oneDNN primitive cache); every timed run then labels all ``--cases`` volumes (before a
  repeat of ours the previous pseudo-labels are removed through the datastore, otherwise the
  resume-by-teacher skip would make it free);
* the runs alternate ours/stock ``--repeats`` times and the **median** times are reported, since
  the machine may be shared (the spread is in the JSON);
* the labels of both paths are compared voxel by voxel.  Ours keeps the network in
  ``channels_last_3d`` on CPU (oneDNN's fast conv3d layout; not possible for the stock path
  without editing the app's infer task, and not done there), which changes the logits by float
  rounding only; near-ties of the untrained network's logits can then flip a few voxels.  So the
  script also labels ``--exact-cases`` volumes with ours in the contiguous layout
  (``channels_last=False``) and checks that they equal the stock labels exactly.

Output: volumes per second of each path, the ratio ours/stock (target ≥ 10), the device, the
agreement; ``<out>.json`` and ``<out>.md``.  With CUDA it also measures BraTS-sized
4×240×240×155 volumes (``--brats-cases``).

    python scripts/bench_pseudo_label.py [--cases 8] [--shape 64 64 48] [--network tiny|full]
                                         [--repeats 3] [--device auto] [--out results/bench_pseudo_label]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from robustlabel import cli
from robustlabel.data.nifti import write_bytes_atomic
from robustlabel.data.studies import modalities_path
from robustlabel.engine.checkpoint import TrainingRecord, atomic_torch_save
from robustlabel.engine.config import TrainConfig
from robustlabel.engine.pseudo_label import PseudoLabeller, StudiesSink
from robustlabel.machine import describe_machine, pick_device
from robustlabel.networks import build_network

REPO = Path(__file__).resolve().parents[1]
APP_DIR = REPO / "apps" / "brats"
BRATS_SHAPE = (240, 240, 155)


def load_app(studies: Path, model_dir: Path, tiny: bool, device: str) -> Any:
    """Build the app from apps/brats exactly as ``monailabel`` does (``main.py``'s MONAILabelApp subclass)."""
    from monailabel.config import settings
    from monailabel.utils.others.class_utils import get_class_of_subclass_from_file

    settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD = False  # no file-watcher thread during timing
    app_class = get_class_of_subclass_from_file("main", str(APP_DIR / "main.py"), "MONAILabelApp")
    conf = {"models": "transbts", "tiny": str(tiny).lower(), "device": device, "model_dir": str(model_dir)}
    return app_class(app_dir=str(APP_DIR), studies=str(studies), conf=conf)


def write_teacher(app: Any, seed: int) -> tuple[Path, TrainConfig]:
    """Save a seeded untrained TransBTS of the app's configuration as the published checkpoint."""
    task_config = app.models["transbts"]
    config = TrainConfig(network=task_config.network_config, roi_size=app.app_conf.roi_size)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        network = build_network(config.network)
    record = TrainingRecord(config=config.to_dict())
    path = atomic_torch_save({"network": network.state_dict(), "record": record.state_dict()}, task_config.published_model)
    return path, config


def make_studies(root: Path, cases: int, shape: tuple[int, int, int], seed: int) -> Path:
    """``cases`` synthetic volumes imported without clinician labels (the whole set is the pool)."""
    source, studies = root / "source", root / "studies"
    assert cli.main(["synth-brats", str(source), "--cases", str(cases), "--shape", *map(str, shape), "--seed", str(seed)]) == 0
    assert cli.main(["import-brats", str(source), str(studies), "--labeled-fraction", "0", "--no-progress"]) == 0
    return studies


def run_ours(app: Any, images: list[str], device: str, batch_size: int, num_workers: int | None) -> dict[str, Any]:
    request = {"model": "transbts", "images": images, "label_tag": "pseudo", "device": device, "batch_size": batch_size}
    if num_workers is not None:
        request["num_workers"] = num_workers
    return app.batch_infer(request)


def run_stock(app: Any, images: list[str], device: str, config: TrainConfig) -> dict[str, Any]:
    from monailabel.interfaces.tasks.batch_infer import BatchInferTask

    request = {"model": "transbts", "images": images, "label_tag": "original", "save_label": True,
               "multi_gpu": False, "device": device, "max_workers": 1, "sw_batch_size": config.sw_batch_size,
               "sw_overlap": config.sw_overlap, "logging": "WARNING"}
    return BatchInferTask()(request, app.datastore(), app.infer)


def timed(fn: Any, *args: Any) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def remove_pseudo_labels(app: Any, images: list[str]) -> None:
    """Drop the pseudo-labels of ``images`` (datastore API) so that ours labels them again."""
    for image in images:
        app.datastore().retire_pseudo_label(image)


def label_agreement(studies: Path, images: list[str], ours_dir: str = "labels/pseudo") -> float:
    """Fraction of voxels where ours (``ours_dir``) and the stock ``original`` labels of ``images`` agree."""
    same = total = 0
    for image in images:
        ours = np.asarray(nib.load(studies / ours_dir / f"{image}.nii.gz").dataobj)
        stock = np.asarray(nib.load(studies / "labels" / "original" / f"{image}.nii.gz").dataobj)
        same += int((ours == stock).sum())
        total += ours.size
    return same / max(total, 1)


def bench(root: Path, cases: int, shape: tuple[int, int, int], args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Both paths on ``cases`` volumes of ``shape`` (plus one warm-up volume)."""
    studies = make_studies(root, cases + 1, shape, args.seed)
    app = load_app(studies, root / "model", args.network == "tiny", device)
    checkpoint, config = write_teacher(app, args.seed)
    images = sorted(app.datastore().list_images())
    warm, timed_images = images[:1], images[1:]
    run_ours(app, warm, device, args.batch_size, args.num_workers)
    run_stock(app, warm, device, config)
    ours_runs, stock_runs = [], []
    for repeat in range(args.repeats):
        if repeat:
            remove_pseudo_labels(app, timed_images)
        ours_runs.append(timed(run_ours, app, timed_images, device, args.batch_size, args.num_workers))
        stock_runs.append(timed(run_stock, app, timed_images, device, config))
    ours_s, stock_s = float(np.median(ours_runs)), float(np.median(stock_runs))
    exact = timed_images[: args.exact_cases]
    exact_agreement = None
    if exact:  # ours in the contiguous layout: must reproduce the stock labels voxel for voxel
        contiguous = PseudoLabeller(checkpoint, device=device, batch_size=args.batch_size, channels_last=False)
        items = [{"image": str(modalities_path(app.datastore().get_image_uri(i))), "case": i} for i in exact]
        contiguous.label(items, StudiesSink(studies, label_dir=root / "contiguous"), progress=False)
        exact_agreement = label_agreement(studies, exact, ours_dir=str(root / "contiguous"))
    row = {
        "shape": [4, *shape],
        "volumes": len(timed_images),
        "network": args.network,
        "roi_size": list(app.app_conf.roi_size),
        "batch_size": args.batch_size,
        "num_workers": "app default" if args.num_workers is None else args.num_workers,
        "sw_batch_size": config.sw_batch_size,
        "sw_overlap": config.sw_overlap,
        "repeats": args.repeats,
        "ours_runs_s": [round(t, 3) for t in ours_runs],
        "stock_runs_s": [round(t, 3) for t in stock_runs],
        "ours_s": round(ours_s, 3),
        "stock_s": round(stock_s, 3),
        "ours_volumes_per_s": len(timed_images) / ours_s,
        "stock_volumes_per_s": len(timed_images) / stock_s,
        "ratio": stock_s / ours_s,
        "ratio_of_fastest_runs": min(stock_runs) / min(ours_runs),
        "label_agreement": label_agreement(studies, timed_images),
        "exact_check_volumes": len(exact),
        "exact_check_agreement": exact_agreement,
    }
    exact_text = "" if exact_agreement is None else f"; contiguous-layout ours vs stock: {100 * exact_agreement:.4f} %"
    print(f"{row['shape']} × {row['volumes']} ({args.network}, {device}): ours {row['ours_volumes_per_s']:.3f} vol/s, "
          f"stock {row['stock_volumes_per_s']:.3f} vol/s, ratio {row['ratio']:.2f}× (median of {args.repeats}; "
          f"fastest runs {row['ratio_of_fastest_runs']:.2f}×; "
          f"labels agree on {100 * row['label_agreement']:.4f} % of voxels{exact_text})", flush=True)
    return row


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Pool pseudo-labelling: ours vs MONAI Label's stock BatchInferTask",
        "",
        f"Device: {report['machine']['device']}; torch {report['machine']['torch']} "
        f"({torch.get_num_threads()} intra-op threads); {report['machine']['date']}.",
        "Stock path: `BatchInferTask` (monailabel 0.8.5) with the app's `infer`, `multi_gpu: false`, `max_workers: 1`.",
        "Both: same untrained seeded TransBTS checkpoint (throughput only), roi = network img_size, Gaussian "
        "blending, same sw_batch_size/overlap; one untimed warm-up volume per path; runs alternate, median reported.",
        "Ours uses channels_last_3d on CPU (float rounding only); 'exact' = ours in the contiguous layout vs stock.",
        "",
        "| volume | volumes | network | roi | sw batch / overlap | ours (vol/s) | stock (vol/s) | ratio ours/stock "
        "| ratio, fastest runs | labels agree | exact |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["results"]:
        exact = "–" if row["exact_check_agreement"] is None else f"{100 * row['exact_check_agreement']:.2f} %"
        lines.append(
            f"| {'×'.join(map(str, row['shape']))} | {row['volumes']} | {row['network']} | "
            f"{'×'.join(map(str, row['roi_size']))} | {row['sw_batch_size']} / {row['sw_overlap']} | "
            f"{row['ours_volumes_per_s']:.3f} | {row['stock_volumes_per_s']:.3f} | {row['ratio']:.2f}× | "
            f"{row['ratio_of_fastest_runs']:.2f}× | "
            f"{100 * row['label_agreement']:.3f} % | {exact} |"
        )
    lines += ["", f"Target: ratio ≥ 10×.  Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8, help="timed volumes (default %(default)s)")
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 64, 48], metavar=("X", "Y", "Z"))
    parser.add_argument("--network", choices=("tiny", "full"), default=None,
                        help="TransBTS size (default: full with CUDA, tiny on CPU)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=None, help="volumes per batch, ours (default 4 CUDA, 2 CPU)")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="loader workers, ours (default: the app's, min(4, cores) with CUDA, 0 on CPU)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timed runs per path; medians (default %(default)s)")
    parser.add_argument("--exact-cases", type=int, default=1,
                        help="volumes also labelled by ours in the contiguous layout, checked for equality (default %(default)s)")
    parser.add_argument("--brats-cases", type=int, default=4, help="BraTS-sized volumes with CUDA (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="keep the generated studies here (default: a temp dir)")
    parser.add_argument("--out", default="results/bench_pseudo_label", help="output stem for .json and .md")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.cases < 1 or args.exact_cases < 0:
        parser.error("--repeats and --cases must be >= 1, --exact-cases >= 0")
    logging.basicConfig(level=logging.WARNING)
    torch_device = pick_device(args.device)
    cuda = torch_device.type == "cuda"
    args.network = args.network or ("full" if cuda else "tiny")
    args.batch_size = args.batch_size or (4 if cuda else 2)
    device = "cuda" if cuda else "cpu"

    with tempfile.TemporaryDirectory(prefix="bench_pseudo_label_") as tmp:
        root = Path(args.workdir) if args.workdir else Path(tmp)
        results = [bench(root / "small", args.cases, tuple(args.shape), args, device)]
        if cuda and args.brats_cases > 0:
            results.append(bench(root / "brats", args.brats_cases, BRATS_SHAPE, args, device))
    report = {
        "machine": describe_machine(torch_device),
        "command": " ".join(["python", "scripts/bench_pseudo_label.py", *(argv if argv is not None else sys.argv[1:])]),
        "stock_path": "monailabel BatchInferTask + app.infer, multi_gpu false, max_workers 1, save_label true",
        "results": results,
    }
    out = Path(args.out)
    write_bytes_atomic(out.with_suffix(".json"), (json.dumps(report, indent=2) + "\n").encode())
    write_bytes_atomic(out.with_suffix(".md"), markdown(report).encode())
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
