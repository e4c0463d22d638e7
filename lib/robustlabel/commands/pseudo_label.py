"""Pseudo-label every case of a studies folder that has no clinician (``final``) label.

Usage::

    robustlabel pseudo-label --studies STUDIES --checkpoint CKPT [--pseudo-dir DIR] [--batch-size 2]
                             [--save-confidence] [--device auto] [--no-amp] [--num-workers 4]

``CKPT`` is a ``best.pt``/``last.pt`` written by the engine (e.g. by ``robustlabel teacher-student``).
Labels go to ``STUDIES/labels/pseudo/<case>.nii.gz`` (BraTS values, the input's shape and affine)
with a provenance sidecar ``<case>.json`` (teacher SHA-256, time, confidence and entropy inside the
predicted tumour and the brain, voxel counts, the case ``uncertainty``).  Labels keep the source
image's qform/sform codes and units.  Cases with a ``labels/final`` file are never touched; cases
already labelled by the same checkpoint are skipped, so a rerun resumes.  The most uncertain cases
are listed at the end: ``uncertainty`` is the normalised mean entropy of the teacher's softmax over
the predicted tumour, and 1 (maximally uncertain) when the teacher predicts no tumour at all, so
its complete misses come first.

The network runs under autocast on CUDA and, on a CPU with native bf16 (AVX512-BF16 or AMX), in
bf16 (:mod:`robustlabel.engine.inference` has the measurements); ``--no-amp`` runs float32
everywhere.  The sidecar's ``inference.amp_dtype`` (``fp32``, ``bf16`` or ``fp16``) says which ran.

Example (the teacher of a ``robustlabel teacher-student --out ts-gce`` run)::

    robustlabel pseudo-label --studies studies --checkpoint ts-gce/round_0_teacher/best.pt --save-confidence

Several GPUs (or CPU processes) share the pool under torchrun: each rank loads the teacher once
and labels its shard (MONAI ``DistributedSampler(even_divisible=False, shuffle=False)`` of the
cases still to do), rank 0 prints the summary.  NCCL on CUDA, gloo on CPU::

    torchrun --nproc-per-node 4 -m robustlabel.cli pseudo-label --studies studies --checkpoint best.pt
"""

from __future__ import annotations

import argparse
from collections import Counter

HELP = "pseudo-label the unlabelled cases of a studies folder with a teacher checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--studies", required=True, help="studies folder (from `robustlabel import-brats`)")
    parser.add_argument("--checkpoint", required=True, help="teacher checkpoint written by the engine")
    parser.add_argument("--pseudo-dir", help="output folder (default STUDIES/labels/pseudo)")
    parser.add_argument("--batch-size", type=int, default=2, help="volumes of equal shape per forward pass (default 2)")
    parser.add_argument("--save-confidence", action="store_true", help="also write voxel-confidence maps")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i] (default auto)")
    parser.add_argument("--no-amp", action="store_true", help="float32 everywhere (no autocast on CUDA, no bf16 on the CPU)")
    parser.add_argument("--num-workers", type=int, default=4, help="data-loader workers (default 4)")
    parser.add_argument("--top", type=int, default=10, help="list this many most uncertain cases (default 10)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from robustlabel.engine.distributed import run_as_rank

    return run_as_rank(_label, args, args.device)


def _label(args: argparse.Namespace, report: bool) -> int:
    """Label the pool (this rank's shard in a job); print the summary when ``report`` (rank 0)."""
    from robustlabel.engine.pseudo_label import StudiesSink, pseudo_label_studies
    from robustlabel.metrics.uncertainty import rank_by_uncertainty

    try:
        sink = StudiesSink(args.studies, label_dir=args.pseudo_dir)
        results = pseudo_label_studies(
            args.studies, args.checkpoint, sink=sink, progress=not args.no_progress, device=args.device,
            batch_size=args.batch_size, num_workers=args.num_workers, amp=not args.no_amp,
            save_confidence=args.save_confidence,
        )
    except (ValueError, PermissionError) as exc:
        raise SystemExit(f"pseudo-label: {exc}") from exc
    if not report:
        return 0
    counts = Counter(r.status for r in results)
    print(f"pseudo-label: {len(results)} pool case(s) in {args.studies}: "
          + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + f"; labels in {sink.label_dir}")
    ranked = rank_by_uncertainty(sink.all_info())[: max(args.top, 0)]
    if ranked:
        print("\nmost uncertain (normalised mean entropy in the predicted tumour; 1 = no tumour predicted):")
        for case, value in ranked:
            print(f"  {value:.4f}  {case}")
    return 0
