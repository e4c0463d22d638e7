#!/usr/bin/env python
"""Benchmark: scaling out on ``torch.distributed`` -- pool pseudo-labelling and a short training
run with 1 and with N ranks on the same work.

Work (identical for every rank count):

* **pool pseudo-labelling**: the same teacher checkpoint labels the same ``--cases`` synthetic
  volumes (batch size 1) with :func:`robustlabel.engine.pool_shards.label_pool`, sharded over
  the ranks; the pseudo-label folder is emptied before each run;
* **training**: ``--epochs`` epochs of the tiny (or full, ``--full``) TransBTS on the same
  clinician + pseudo datalist with the same *global* batch ``--global-batch``; each rank's
  ``batch_size`` is ``global / N`` (the engine's ``batch_size`` is per rank), so every run
  takes the same number of optimiser steps on the same number of crops.  No validation.

Ranks are local processes started by :func:`robustlabel.engine.distributed.launch_local`
(``torch.multiprocessing``, gloo on CPU, NCCL with one GPU per rank on CUDA).  The timed span
is measured by rank 0 between two barriers around the work, so process start-up and imports
(tens of seconds on a busy 2-core CPU) are excluded; the job's wall time including start-up is
reported too.  On CPU the cores are split between the ranks (``torch.set_num_threads(cores // N)``,
at least 1), so the 1-rank run uses every core and N ranks share them: the CPU numbers measure
what sharding adds or costs on one machine, not the speed-up of N machines.

    speed-up S_N = T_1 / T_N,    parallel efficiency E_N = S_N / N

Output in ``--out``: ``bench_scale.{csv,json,md}`` (``write_report``: the machine, the
settings) and ``bench_scale.png`` (time per rank count).

Usage::

    python scripts/bench_scale.py                       # CPU: 1 vs 2 ranks, tiny network
    python scripts/bench_scale.py --nproc 4 --full      # 4 GPUs: 1 vs 4 ranks, full TransBTS
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "lib") not in sys.path:
    sys.path.insert(0, str(REPO / "lib"))

from robustlabel.engine.distributed import barrier, init_distributed, launch_local  # noqa: E402

RESULT_NAME = "rank0_result.json"
TASKS = ("pool pseudo-labelling", "training")


def _threads(nproc: int, device: str) -> None:
    if device == "cpu" or not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))


def pool_worker(studies: str, checkpoint: str, device: str, nproc: int, result: str) -> None:
    """One rank of the pool job: label the pool, rank 0 records the seconds between barriers."""
    from robustlabel.data.studies import unlabeled_datalist
    from robustlabel.engine.pool_shards import label_pool
    from robustlabel.engine.pseudo_label import PseudoLabeller, StudiesSink

    _threads(nproc, device)
    ctx = init_distributed(device)
    labeller = PseudoLabeller(checkpoint, device=device, batch_size=1, num_workers=0)
    pool = unlabeled_datalist(studies)
    sink = StudiesSink(studies)
    barrier()
    start = time.perf_counter()
    results = label_pool(labeller, pool, sink, progress=False)
    barrier()
    seconds = time.perf_counter() - start
    if ctx.is_main:
        Path(result).write_text(json.dumps({"seconds": seconds, "cases": len(results),
                                            "written": sum(r.status == "written" for r in results)}))


def train_worker(items_json: str, out: str, config_json: str, device: str, nproc: int, result: str) -> None:
    """One rank of the training job: ``train()`` on the datalist, rank 0 records the seconds."""
    from robustlabel.engine.config import TrainConfig
    from robustlabel.engine.trainer import train

    _threads(nproc, device)
    ctx = init_distributed(device)
    items = json.loads(Path(items_json).read_text())
    config = TrainConfig.from_dict(json.loads(config_json))
    barrier()
    start = time.perf_counter()
    run = train(items, [], out, config, resume=False, progress=False)
    barrier()
    seconds = time.perf_counter() - start
    if ctx.is_main:
        Path(result).write_text(json.dumps({"seconds": seconds, "epochs": run.epochs,
                                            "iterations": sum(h["iterations"] for h in run.history),
                                            "loss": [h["loss"] for h in run.history]}))


def _job(fn, nproc: int, args: tuple, result: Path) -> dict:
    result.unlink(missing_ok=True)
    start = time.perf_counter()
    launch_local(fn, nproc, args + (str(result),), env={"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc))})
    out = json.loads(result.read_text())
    out["job_seconds"] = time.perf_counter() - start
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    default_n = torch.cuda.device_count() if torch.cuda.device_count() > 1 else 2
    parser.add_argument("--nproc", type=int, default=default_n, help=f"ranks N to compare with 1 (default {default_n})")
    parser.add_argument("--cases", type=int, default=16, help="pool volumes (default 16)")
    parser.add_argument("--shape", type=int, nargs=3, default=(48, 48, 48), help="volume shape (default 48 48 48)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    parser.add_argument("--global-batch", type=int, default=4, help="crops per optimiser step over all ranks (default 4)")
    parser.add_argument("--full", action="store_true", help="full TransBTS (128³ crops) instead of the tiny one")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    parser.add_argument("--out", type=Path, default=Path("results/bench_scale"), help="output folder")
    args = parser.parse_args(argv)

    from robustlabel.data.studies import import_brats, studies_datalist, unlabeled_datalist
    from robustlabel.data.synthetic import write_synthetic_brats
    from robustlabel.engine.config import TrainConfig
    from robustlabel.machine import resolve_device
    from robustlabel.networks import TINY_TRANSBTS
    from robustlabel.experiments.figures import PlotPanel, plot_panels
    from robustlabel.experiments.tables import Measurement, write_report
    from robustlabel.machine import environment_info
    from robustlabel.markdown import markdown_table

    if args.nproc < 2:
        raise SystemExit("bench_scale: --nproc must be >= 2")
    if args.global_batch % args.nproc:
        raise SystemExit(f"bench_scale: --global-batch {args.global_batch} is not divisible by --nproc {args.nproc}")
    device = str(resolve_device(args.device).type)
    if device == "cuda" and torch.cuda.device_count() < args.nproc:
        raise SystemExit(f"bench_scale: {args.nproc} ranks need {args.nproc} GPUs (one each), "
                         f"{torch.cuda.device_count()} visible; pass --nproc or --device cpu")
    out = args.out
    data = out / "data"
    shutil.rmtree(data, ignore_errors=True)
    write_synthetic_brats(data / "syn", cases=args.cases + 4, shape=tuple(args.shape), seed=0, progress=False)
    studies = data / "studies"
    import_brats(data / "syn", studies, labeled_fraction=4 / (args.cases + 4), seed=0, progress=False)
    final = studies_datalist(studies, sources=("final",))
    network = {} if args.full else dict(TINY_TRANSBTS)
    base = TrainConfig(network=network, batch_size=args.global_batch, epochs=1, num_workers=0, device=device,
                       val_interval=1, seed=0, pseudo_loss="ce", pseudo_params={})
    print(f"bench_scale: teacher (1 epoch, untimed) on {len(final)} clinician cases ...", flush=True)
    from robustlabel.engine.trainer import train

    teacher = train(final, [], data / "teacher", base, resume=False, progress=False).last_checkpoint

    results: dict[tuple[str, int], dict] = {}
    ranks = (1, args.nproc)
    for n in ranks:
        shutil.rmtree(studies / "labels" / "pseudo", ignore_errors=True)
        print(f"bench_scale: pool pseudo-labelling, {n} rank(s) ...", flush=True)
        results[TASKS[0], n] = _job(pool_worker, n, (str(studies), str(teacher), device, n), data / RESULT_NAME)
    pseudo_dir = studies / "labels" / "pseudo"
    pseudo_items = [{"image": item["image"], "label": str(pseudo_dir / f"{item['case']}.nii.gz"), "source": "pseudo",
                     "case": item["case"]} for item in unlabeled_datalist(studies)]
    items_json = data / "train_items.json"
    items_json.write_text(json.dumps(final + pseudo_items))  # the student's data: clinician + pseudo-labels
    for n in ranks:
        config = base.replace(batch_size=args.global_batch // n, epochs=args.epochs, pseudo_loss="gce", pseudo_params=None)
        print(f"bench_scale: training, {n} rank(s), batch {args.global_batch // n} per rank ...", flush=True)
        results[TASKS[1], n] = _job(train_worker, n, (str(items_json), str(data / f"train_{n}"),
                                                      json.dumps(config.to_dict()), device, n), data / RESULT_NAME)

    measurements, rows = [], []
    cols = ["1 rank (s)", f"{args.nproc} ranks (s)", "speed-up", "efficiency", f"job incl. start-up, 1 / {args.nproc} (s)"]
    for task in TASKS:
        t1, tn = results[task, 1]["seconds"], results[task, args.nproc]["seconds"]
        speedup = t1 / tn
        values = [t1, tn, speedup, speedup / args.nproc]
        measurements += [Measurement(task, c, v) for c, v in zip(cols[:4], values)]
        rows.append((task, t1, tn, speedup, speedup / args.nproc,
                     results[task, 1]["job_seconds"], results[task, args.nproc]["job_seconds"]))
    env = environment_info(device)
    print(f"\nbench_scale on {env['accelerator']} (torch {env['torch']}), {args.cases} pool cases of "
          f"{'x'.join(map(str, args.shape))}, {'full' if args.full else 'tiny'} TransBTS, global batch {args.global_batch}")
    print(markdown_table(
        ["work", "1 rank (s)", f"{args.nproc} ranks (s)", "speed-up", "efficiency", f"job incl. start-up 1 / {args.nproc} (s)"],
        [[task, f"{t1:.2f}", f"{tn:.2f}", f"{s:.2f}", f"{e:.2f}", f"{j1:.1f} / {jn:.1f}"] for task, t1, tn, s, e, j1, jn in rows]))
    notes = [
        f"Work: {args.cases} pool volumes of {'x'.join(map(str, args.shape))} (batch size 1); training "
        f"{args.epochs} epochs, global batch {args.global_batch} = {args.global_batch // args.nproc} per rank x {args.nproc} ranks.",
        "Timed by rank 0 between barriers (process start-up excluded); speed-up = T_1 / T_N, efficiency = speed-up / N.",
        f"CPU ranks share the machine's {os.cpu_count()} cores (threads per rank = cores // N).",
        "Job wall time incl. start-up (s): " + "; ".join(f"{t}: {j1:.1f} (1 rank) / {jn:.1f} ({args.nproc} ranks)"
                                                      for t, _, _, _, _, j1, jn in rows),
    ]
    files = write_report(out, "bench_scale", title="Scaling out: 1 vs N ranks", measurements=measurements,
                         rows=list(TASKS), columns=cols[:4], environment=env, row_header="Work", notes=notes,
                         extra={f"{t}|{n}": r for (t, n), r in results.items()})
    plot_panels(out / "bench_scale.png", [PlotPanel(
        title=f"time on {env['accelerator'][:40]}", categories=list(TASKS),
        series={f"{n} rank(s)": [results[t, n]["seconds"] for t in TASKS] for n in ranks}, ylabel="seconds")])
    print(f"\nreport: {files.markdown} (.csv, .json), figure: {out / 'bench_scale.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
