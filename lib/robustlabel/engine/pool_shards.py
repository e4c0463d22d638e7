"""Pool pseudo-labelling sharded over the ranks of a ``torch.distributed`` job: :func:`label_pool`.

With ``N`` ranks (:mod:`robustlabel.engine.distributed`):

1. rank 0 sweeps temporaries left by a killed writer (hidden ``.<name>.<random>.tmp`` files of the
   atomic writes, :func:`sweep_temporaries`) and decides, per pool case, whether it is skipped
   (a ``final`` label, or a pseudo-label of the same teacher SHA-256) or still to do; the list
   is broadcast, so every rank shards the *same* list even while others start writing;
2. the cases still to do are split with MONAI ``DistributedSampler(even_divisible=False,
   shuffle=False)`` (:func:`~robustlabel.engine.distributed.shard`): rank ``r`` takes
   ``r, r + N, …`` of them, so no case is done twice and none is missed;
3. each rank runs :meth:`PseudoLabeller.label` on its shard with the teacher it loaded once.
   Every guarantee of the single-process labeller holds on every rank because it *is* the
   single-process labeller: the ``final`` label is re-checked right before each write, each
   file is written atomically (temporary file + ``os.replace``), the sidecar names the teacher's
   SHA-256, and a case already labelled by the same teacher is skipped;
4. the per-case results are gathered (``all_gather_object``) into pool order on every rank;
   rank 0 reports them.

A rank that dies leaves, at worst, a hidden temporary file (never a label, a sidecar or a map at
its final name, and never a label without its sidecar: the stale sidecar is removed before the
label is replaced and the new one is written last).  Rerunning the same command skips what was
finished and labels only the rest.  In a single process :func:`label_pool` is exactly
:meth:`PseudoLabeller.label` (after the sweep).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .datalist import check_datalist
from .distributed import DistContext, all_gather_objects, broadcast_object, current, shard
from .pseudo_label import (
    SKIPPED_CLINICIAN,
    SKIPPED_SAME_TEACHER,
    PseudoLabeller,
    PseudoLabelResult,
    PseudoLabelSink,
    StudiesSink,
)

logger = logging.getLogger(__name__)

#: the hidden temporary files of :func:`robustlabel.atomic.atomic_path` (``mkstemp`` names)
TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


def sweep_temporaries(folder: str | Path) -> list[Path]:
    """Remove the hidden temporary files a killed atomic write left in ``folder``; return them.

    Only names of the atomic writer's pattern ``.<target>.<random>.tmp`` are touched.  Call it
    only while no writer of this job runs (rank 0, before the shards start).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.is_file() and TEMPORARY.match(p.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        logger.info("removed %d temporary file(s) of an interrupted run in %s", len(stale), folder)
    return stale


def _pre_status(labeller: PseudoLabeller, items: list[dict[str, Any]], sink: PseudoLabelSink) -> list[str | None]:
    """Per item: :data:`SKIPPED_CLINICIAN`, :data:`SKIPPED_SAME_TEACHER` or ``None`` (to do)."""
    out: list[str | None] = []
    for item in items:
        if sink.has_clinician_label(item["case"]):
            out.append(SKIPPED_CLINICIAN)
        elif sink.existing_teacher(item["case"]) == labeller.teacher_sha256:
            out.append(SKIPPED_SAME_TEACHER)
        else:
            out.append(None)
    return out


def label_pool(
    labeller: PseudoLabeller,
    items: Iterable[Mapping[str, Any]],
    sink: PseudoLabelSink,
    *,
    progress: bool = True,
    callback: Callable[[PseudoLabelResult], None] | None = None,
    ctx: DistContext | None = None,
) -> list[PseudoLabelResult]:
    """Pseudo-label ``items`` into ``sink``, sharded over the ranks of the current job (module docstring).

    Args:
        labeller: this rank's labeller (teacher loaded once per rank, on this rank's device).
        items: the pool ``{"image", "case"}``, in the same order on every rank.
        sink: where labels go; a :class:`StudiesSink`'s folders are swept of stale temporaries.
        progress: a tqdm bar (rank 0 only, over its own shard).
        callback: sees each of *this rank's* results as soon as it is known.
        ctx: the job (default: :func:`~robustlabel.engine.distributed.current`).

    Returns:
        One :class:`PseudoLabelResult` per item, in input order, on every rank.
    """
    ctx = ctx or current()
    if ctx.is_main and isinstance(sink, StudiesSink):
        for folder in {sink.label_dir, sink.confidence_dir}:
            sweep_temporaries(folder)
    if not ctx.distributed:
        return labeller.label(items, sink, progress=progress, callback=callback)
    items = check_datalist(items, "pseudo-label pool", need_label=False)
    status = broadcast_object(_pre_status(labeller, items, sink) if ctx.is_main else None)
    todo = [i for i, s in enumerate(status) if s is None]
    mine = [todo[j] for j in shard(todo, ctx)]
    logger.info("rank %d/%d: %d of %d pool case(s) to label", ctx.rank, ctx.world_size, len(mine), len(todo))
    done = labeller.label([items[i] for i in mine], sink, progress=progress and ctx.is_main, callback=callback)
    results: dict[int, PseudoLabelResult] = {
        i: PseudoLabelResult(items[i]["case"], s) for i, s in enumerate(status) if s is not None
    }
    for part in all_gather_objects(list(zip(mine, done))):
        for index, result in part:
            if index in results:
                raise RuntimeError(f"pool case {result.case!r} was labelled by two ranks")
            results[index] = result
    missing = [items[i]["case"] for i in range(len(items)) if i not in results]
    if missing:
        raise RuntimeError(f"pool cases {missing} were labelled by no rank")
    return [results[i] for i in range(len(items))]
