#!/usr/bin/env python
"""GPU benchmark, sized for a lent H100/H200 (about 2-3 minutes there); run it through
``scripts/bench_gpu.sh``, which brings MONAI and nibabel as carried wheels.

It measures, in one run, on one device:

1. **Pool pseudo-labelling throughput** (volumes/s), reading and writing included, on
   BraTS-sized synthetic volumes (``robustlabel.data.synthetic``, 4×240×240×155, written as real
   gzip NIfTI studies; a few distinct phantoms, copied to make the pool):

   * *engine* -- :class:`robustlabel.engine.pseudo_label.PseudoLabeller` over the pool (its own
     defaults: batches of equal-shape volumes, loader workers, bf16 autocast on CUDA), writing
     labels and sidecars into the studies folder;
   * *baseline* -- the stock pattern built from MONAI alone, one volume at a time:
     ``LoadImage`` → ``NormalizeIntensity`` → ``SlidingWindowInferer`` (same ROI, same
     ``sw_batch_size``, overlap 0.5, Gaussian blending, same autocast) → argmax → ``SaveImage``.

   Both run the same seeded, untrained TransBTS (throughput does not depend on the weights);
   one untimed warm-up volume each.  Goals: engine ≥ 10× baseline and ≥ 30 volumes/s.
2. **A TransBTS training step** (forward, cross-entropy, backward, Adam step) on 4×128³ crops at
   batch 1 and 2, float32 against bf16 autocast (attention through
   ``scaled_dot_product_attention``, as the network always does): median time and peak CUDA
   memory.  Goal: bf16 ≤ 0.7× the float32 memory and faster.
3. **Infer latency** for one full-size volume already in memory (the ``/infer`` compute):
   today's settings (:meth:`WindowSettings.stock`: no crop, overlap 0.5) against the crop to the
   non-zero bounding box (:mod:`robustlabel.engine.crop`), plain and aligned to stock's window
   grid, with the voxel agreement of each label map with stock's (an untrained network: a
   consistency check, not a quality measure).

``--dry-run`` runs everything on the CPU with the tiny TransBTS on 40×40×32 volumes, for the
tests; its numbers mean nothing.  Output: ``bench_gpu.md`` (naming the device) and
``bench_gpu.json`` in ``--out``.

    python scripts/bench_gpu.py [--dry-run] [--out results/bench_gpu] [--pool-cases 32]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustlabel.data.studies import MODALITIES_DIR, import_brats, unlabeled_datalist
from robustlabel.data.synthetic import write_synthetic_brats
from robustlabel.data.transforms import infer_transforms
from robustlabel.engine.checkpoint import TrainingRecord, atomic_torch_save
from robustlabel.engine.config import TrainConfig, amp_dtype_for
from robustlabel.engine.inference import WindowSettings, default_channels_last, predict_probabilities, prepare_network
from robustlabel.engine.pseudo_label import PseudoLabeller, StudiesSink
from robustlabel.losses import CrossEntropyLoss
from robustlabel.machine import describe_machine, resolve_device
from robustlabel.markdown import markdown_table
from robustlabel.networks import TINY_TRANSBTS, build_network
from robustlabel.atomic import write_json_atomic, write_text_atomic

#: the report's sections, in order (the dry-run test checks each heading)
SECTIONS = ("Machine", "Pool pseudo-labelling throughput", "TransBTS training step", "Infer latency")


@dataclass(frozen=True)
class Sizes:
    """What one run measures on."""

    volume: tuple[int, int, int]  # pool and infer volumes
    network: dict[str, Any]  # build_network config ({} = the full TransBTS)
    distinct: int  # distinct synthetic phantoms; the pool copies them
    pool_cases: int  # timed engine volumes
    baseline_cases: int  # timed baseline volumes
    train_side: int  # training crop side (the network's img_size)
    train_steps: int  # timed steps per configuration
    infer_repeats: int  # timed infer runs per setting (after 1 untimed)
    warmup_steps: int = 2  # untimed training steps per configuration (cuDNN autotuning, allocator)


FULL = Sizes((240, 240, 155), {}, distinct=1, pool_cases=32, baseline_cases=3, train_side=128, train_steps=5,
             infer_repeats=3)
DRY_RUN = Sizes((40, 40, 32), dict(TINY_TRANSBTS), distinct=1, pool_cases=2, baseline_cases=1, train_side=32,
                train_steps=1, infer_repeats=1, warmup_steps=1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def timer(device: torch.device, into: list[float]) -> Iterator[None]:
    """Append the wall time of the block (after a device synchronisation) to ``into``."""
    _sync(device)
    t0 = time.perf_counter()
    yield
    _sync(device)
    into.append(time.perf_counter() - t0)


# ---------------------------------------------------------------------------- data and teacher
def make_pool(root: Path, sizes: Sizes, seed: int = 0) -> list[dict[str, str]]:
    """A studies folder of ``1 + pool_cases + 1 + baseline_cases`` unlabelled cases (two warm-ups):
    ``distinct`` synthetic phantoms imported with ``import_brats``, then copied under new names."""
    source, studies = root / "source", root / "studies"
    write_synthetic_brats(source, cases=sizes.distinct, shape=sizes.volume, seed=seed, progress=False)
    import_brats(source, studies, labeled_fraction=0.0, seed=seed, progress=False)
    originals = sorted(p for p in studies.iterdir() if p.is_file() and p.name.endswith(".nii.gz"))
    needed = 2 + sizes.pool_cases + sizes.baseline_cases
    for i in range(needed - len(originals)):
        src = originals[i % len(originals)]
        name = f"copy{i:03d}_{src.name}"
        shutil.copyfile(src, studies / name)
        shutil.copyfile(studies / MODALITIES_DIR / src.name, studies / MODALITIES_DIR / name)
    items = unlabeled_datalist(studies)
    if len(items) < needed:
        raise RuntimeError(f"pool has {len(items)} cases, expected {needed}")
    return items[:needed]


def write_teacher(path: Path, sizes: Sizes, seed: int = 0) -> tuple[Path, TrainConfig]:
    """A seeded, untrained TransBTS saved in the engine's checkpoint format."""
    config = TrainConfig(network=dict(sizes.network))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        network = build_network(config.network)
    record = TrainingRecord(config=config.to_dict())
    return atomic_torch_save({"network": network.state_dict(), "record": record.state_dict()}, path), config


# ---------------------------------------------------------------------------- 1. the pool
def run_engine(checkpoint: Path, items: list[dict[str, str]], studies: Path, device: torch.device) -> dict[str, Any]:
    """Warm up on ``items[0]``, then time the pool ``items[1:]`` (reading and writing included)."""
    labeller = PseudoLabeller(checkpoint, device=str(device))
    sink = StudiesSink(studies)
    labeller.label(items[:1], sink, progress=False)
    times: list[float] = []
    with timer(device, times):
        results = labeller.label(items[1:], sink, progress=False)
    written = sum(r.status == "written" for r in results)
    if written != len(items) - 1:
        raise RuntimeError(f"engine wrote {written} of {len(items) - 1} pseudo-labels")
    return {"volumes": len(items) - 1, "seconds": times[0], "volumes_per_s": (len(items) - 1) / times[0],
            "batch_size": labeller.batch_size, "num_workers": labeller.num_workers,
            "sw_batch_size": labeller.inferer.sw_batch_size, "overlap": labeller.inferer.overlap,
            "amp_dtype": str(labeller.amp_dtype)}


def run_baseline(checkpoint: Path, config: TrainConfig, items: list[dict[str, str]], out: Path,
                 device: torch.device) -> dict[str, Any]:
    """MONAI only, one volume at a time: LoadImage → NormalizeIntensity → SlidingWindowInferer → SaveImage."""
    from monai.data import MetaTensor
    from monai.inferers import SlidingWindowInferer
    from monai.transforms import Compose, LoadImage, NormalizeIntensity, SaveImage

    from robustlabel.engine.checkpoint import network_from_checkpoint, read_checkpoint

    network, _ = network_from_checkpoint(read_checkpoint(checkpoint, device), device)
    load = Compose([LoadImage(image_only=True, ensure_channel_first=True),
                    NormalizeIntensity(nonzero=True, channel_wise=True)])
    inferer = SlidingWindowInferer(config.resolved_roi_size, sw_batch_size=config.sw_batch_size, overlap=0.5,
                                   mode="gaussian")
    save = SaveImage(output_dir=str(out), output_postfix="seg", output_ext=".nii.gz", output_dtype=np.uint8,
                     resample=False, separate_folder=False, print_log=False)
    amp = amp_dtype_for(device)

    def one(item: dict[str, str]) -> None:
        image = load(item["image"])
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = inferer(image.unsqueeze(0).to(device), network)
        label = logits.argmax(1).to(torch.uint8).cpu()
        save(MetaTensor(label, meta=image.meta))  # the meta holds the source affine

    one(items[0])
    times: list[float] = []
    with timer(device, times):
        for item in items[1:]:
            one(item)
    return {"volumes": len(items) - 1, "seconds": times[0], "volumes_per_s": (len(items) - 1) / times[0],
            "sw_batch_size": config.sw_batch_size, "overlap": 0.5, "amp_dtype": str(amp)}


def bench_pool(root: Path, sizes: Sizes, device: torch.device) -> dict[str, Any]:
    t0 = time.perf_counter()
    items = make_pool(root, sizes)
    prepare_s = time.perf_counter() - t0
    checkpoint, config = write_teacher(root / "teacher.pt", sizes)
    n = 1 + sizes.pool_cases
    engine = run_engine(checkpoint, items[:n], root / "studies", device)
    baseline = run_baseline(checkpoint, config, items[n:], root / "baseline_out", device)
    return {"volume": [4, *sizes.volume], "data_prepare_s": prepare_s, "engine": engine, "baseline": baseline,
            "ratio": engine["volumes_per_s"] / baseline["volumes_per_s"]}


# ---------------------------------------------------------------------------- 2. training step
def bench_training(sizes: Sizes, device: torch.device) -> list[dict[str, Any]]:
    """Median step time and peak memory of the TransBTS training step per (batch, precision)."""
    rows = []
    loss_fn = CrossEntropyLoss()
    side = sizes.train_side
    bf16 = torch.bfloat16
    for batch in (1, 2):
        for precision, dtype in (("fp32", None), ("bf16 autocast", bf16)):
            torch.manual_seed(0)
            network = build_network(dict(sizes.network)).to(device).train()
            optimiser = torch.optim.Adam(network.parameters(), lr=2e-4)
            x = torch.randn(batch, 4, side, side, side, device=device)
            y = torch.randint(0, 4, (batch, side, side, side), device=device)

            def step() -> None:
                optimiser.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss = loss_fn(network(x), y)
                loss.backward()
                optimiser.step()

            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            times: list[float] = []
            for i in range(sizes.warmup_steps + sizes.train_steps):
                if i < sizes.warmup_steps:
                    step()
                else:
                    with timer(device, times):
                        step()
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            rows.append({"batch": batch, "precision": precision, "step_ms": 1e3 * statistics.median(times),
                         "peak_gib": peak, "steps": len(times)})
            del network, optimiser, x, y
    return rows


# ---------------------------------------------------------------------------- 3. infer latency
def bench_infer(item: dict[str, str], checkpoint: Path, sizes: Sizes, device: torch.device) -> dict[str, Any]:
    from robustlabel.engine.checkpoint import network_from_checkpoint, read_checkpoint

    network, config = network_from_checkpoint(read_checkpoint(checkpoint, device), device)
    network = prepare_network(network, default_channels_last(device))
    image = infer_transforms()({"image": item["image"]})["image"].as_tensor().unsqueeze(0).to(device)
    amp = amp_dtype_for(device)
    settings = {"stock (no crop, overlap 0.5)": WindowSettings.stock(config.sw_batch_size),
                "crop (margin 8, overlap 0.5)": WindowSettings(config.sw_batch_size, crop_align=False),
                "crop aligned to stock's windows (margin 8, overlap 0.5)": WindowSettings(config.sw_batch_size,
                                                                                          crop_align=True)}
    out: dict[str, Any] = {"volume": list(image.shape[1:]), "settings": {}}
    labels = {}
    for name, s in settings.items():
        inferer = s.inferer(config.resolved_roi_size)

        def run() -> torch.Tensor:
            return predict_probabilities(network, image, inferer, amp, crop_margin=s.crop_margin,
                                         crop_align=s.crop_align)

        labels[name] = run().argmax(1)
        times: list[float] = []
        for _ in range(sizes.infer_repeats):
            with timer(device, times):
                run()
        out["settings"][name] = {"seconds": statistics.median(times), "runs": len(times), **asdict(s)}
    stock = next(iter(settings))
    for name, s in out["settings"].items():
        s["speedup_vs_stock"] = out["settings"][stock]["seconds"] / s["seconds"]
        s["agreement_vs_stock"] = float((labels[name] == labels[stock]).float().mean())
    return out


# ---------------------------------------------------------------------------- report
def markdown(result: dict[str, Any]) -> str:
    m, pool, train, infer = result["machine"], result["pool"], result["training"], result["infer"]
    dry = " **(CPU dry run: tiny sizes, the numbers mean nothing)**" if result["dry_run"] else ""
    vol = "×".join(map(str, pool["volume"]))
    lines = [
        f"# GPU benchmark on {m['device']}{dry}", "",
        f"## {SECTIONS[0]}", "",
        f"- device: {m['device']}", f"- CPU: {m['cpu']} ({m['cpu_count']} cores)", f"- torch {m['torch']}, "
        f"MONAI {result['versions']['monai']}, nibabel {result['versions']['nibabel']}, numpy {result['versions']['numpy']}",
        f"- date: {m['date']}; total run time {result['total_s']:.0f} s", "",
        f"## {SECTIONS[1]}", "",
        f"Synthetic {vol} gzip NIfTI studies, reading and writing included, one untimed warm-up volume each; "
        f"a seeded untrained TransBTS ({'full' if not result['sizes']['network'] else 'tiny'}).", "",
    ]
    e, b = pool["engine"], pool["baseline"]
    lines.append(markdown_table(["path", "volumes", "seconds", "volumes/s", "settings"], [
        ["engine (PseudoLabeller)", e["volumes"], f"{e['seconds']:.2f}", f"{e['volumes_per_s']:.3f}",
         f"batch {e['batch_size']}, workers {e['num_workers']}, sw batch {e['sw_batch_size']}, overlap "
         f"{e['overlap']}, amp {e['amp_dtype']}"],
        ["baseline (MONAI LoadImage → SlidingWindowInferer → SaveImage)", b["volumes"], f"{b['seconds']:.2f}",
         f"{b['volumes_per_s']:.3f}", f"one volume at a time, sw batch {b['sw_batch_size']}, overlap 0.5, amp {b['amp_dtype']}"],
    ], align="-rrr-"))
    lines += ["", f"Engine / baseline: **{pool['ratio']:.2f}×** (goal ≥ 10×); engine {e['volumes_per_s']:.2f} volumes/s "
              f"(goal ≥ 30).", "",
              f"## {SECTIONS[2]}", "",
              f"Forward + cross-entropy + backward + Adam step on {result['sizes']['train_side']}³ crops, 4 modalities; "
              "median step time and peak allocated CUDA memory.", "",
              markdown_table(["batch", "precision", "step ms", "peak GiB"], [
                  [r["batch"], r["precision"], f"{r['step_ms']:.1f}", "n/a (CPU)" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"]
                  for r in train], align="r-rr")]
    for batch in (1, 2):
        fp32, bf16 = (next(r for r in train if r["batch"] == batch and r["precision"].startswith(p)) for p in ("fp32", "bf16"))
        mem = "n/a" if fp32["peak_gib"] is None else f"{bf16['peak_gib'] / fp32['peak_gib']:.2f}×"
        lines.append(f"\nBatch {batch}: bf16 / fp32 memory {mem} (goal ≤ 0.7×), time {bf16['step_ms'] / fp32['step_ms']:.2f}× "
                     "(goal < 1×).")
    lines += ["", f"## {SECTIONS[3]}", "",
              f"One {'×'.join(map(str, infer['volume']))} volume in device memory, sliding window + softmax.", "",
              markdown_table(["settings", "seconds", "speed-up", "argmax agreement with stock"], [
                  [name, f"{s['seconds']:.3f}", f"{s['speedup_vs_stock']:.2f}×", f"{100 * s['agreement_vs_stock']:.3f} %"]
                  for name, s in infer["settings"].items()], align="-rrr")]
    lines += ["", "Agreement of an untrained network's labels: a consistency check, not a quality measure."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny network and volumes (for the tests)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i] (--dry-run forces cpu)")
    parser.add_argument("--out", type=Path, default=Path("results/bench_gpu"))
    parser.add_argument("--pool-cases", type=int, default=None, help="timed engine volumes (default 32; dry run 3)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sizes = DRY_RUN if args.dry_run else FULL
    if args.pool_cases is not None:
        sizes = Sizes(**{**asdict(sizes), "pool_cases": int(args.pool_cases)})
    device = resolve_device("cpu" if args.dry_run else args.device)
    if device.type != "cuda" and not args.dry_run:
        print("warning: no CUDA device; this is not a GPU measurement (use --dry-run for a smoke test)")
    import monai
    import nibabel

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        root = Path(tmp)
        pool = bench_pool(root, sizes, device)
        print(f"pool: engine {pool['engine']['volumes_per_s']:.3f} vol/s, baseline "
              f"{pool['baseline']['volumes_per_s']:.3f} vol/s, ratio {pool['ratio']:.2f}", flush=True)
        training = bench_training(sizes, device)
        print("training:", [(r["batch"], r["precision"], round(r["step_ms"], 1), r["peak_gib"]) for r in training], flush=True)
        infer = bench_infer(unlabeled_datalist(root / "studies")[0], root / "teacher.pt", sizes, device)
        print(f"infer: {infer['settings']}", flush=True)
    result = {
        "machine": describe_machine(device), "dry_run": bool(args.dry_run), "sizes": asdict(sizes),
        "versions": {"monai": monai.__version__, "nibabel": nibabel.__version__, "numpy": np.__version__},
        "pool": pool, "training": training, "infer": infer, "total_s": time.perf_counter() - t0,
    }
    text = markdown(result)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "bench_gpu.md", text)
    write_json_atomic(args.out / "bench_gpu.json", result)
    print(text)
    print(f"wrote {args.out / 'bench_gpu.md'} and bench_gpu.json")
    return result


if __name__ == "__main__":
    main()
