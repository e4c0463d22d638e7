"""The teacher–student engine: the only place with training logic.

* :func:`train` / :class:`TrainConfig` / :class:`TrainResult` (:mod:`.trainer`, :mod:`.config`):
  train a segmentation network on clinician (CE) and pseudo-labels (robust loss), resumable;
* :class:`PseudoLabeller`, :class:`StudiesSink`, :class:`PseudoLabelSink`,
  :func:`pseudo_label_studies` (:mod:`.pseudo_label`): label the unannotated pool with a teacher;
* :func:`run_rounds` (:mod:`.teacher_student`): the one teacher → pseudo-labels → student
  orchestration over pluggable train / predict-pool / evaluate steps (:class:`TeacherStudentSteps`);
  :class:`SegmentationSteps` (:mod:`.segmentation_steps`): its BraTS steps;
* :func:`run_teacher_student` / :class:`RoundsConfig` (:mod:`.rounds`): teacher → pseudo-labels →
  student rounds on a studies folder with held-out evaluation (:func:`evaluate_checkpoint`, :mod:`.evaluate`);
* :func:`student_items` (:mod:`.pseudo_label`): a pool's pseudo-label results → the student's
  datalist items;
* :class:`SourceBalancedSampler` (:mod:`.sampler`): 1:1 clinician/pseudo batches of
  ``mode="per_source"`` (:class:`DistributedSourceBalancedSampler`: its share on one rank);
* ``torch.distributed`` (:mod:`.distributed`, :mod:`.pool_shards`, :mod:`.local_ranks`):
  :func:`init_distributed` joins a torchrun job, :func:`label_pool` shards the pool over the
  ranks, :func:`launch_local` / :func:`train_on_local_ranks` start ranks from Python.

Names are imported lazily, so ``import robustlabel.engine.<module>`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "TrainConfig": "config",
    "TrainResult": "trainer",
    "SourceAwareTrainer": "trainer",
    "train": "trainer",
    "TrainingRecord": "checkpoint",
    "load_network": "checkpoint",
    "sha256_file": "checkpoint",
    "NoClinicianLabelsError": "datalist",
    "UnreadableCaseError": "datalist",
    "PseudoLabeller": "pseudo_label",
    "PseudoLabelResult": "pseudo_label",
    "PseudoLabelSink": "pseudo_label",
    "StudiesSink": "pseudo_label",
    "ProtectedLabelError": "pseudo_label",
    "pseudo_label_studies": "pseudo_label",
    "student_items": "pseudo_label",
    "SourceBalancedSampler": "sampler",
    "DistributedSourceBalancedSampler": "sampler",
    "init_distributed": "distributed",
    "launch_local": "distributed",
    "label_pool": "pool_shards",
    "train_on_local_ranks": "local_ranks",
    "evaluate_checkpoint": "evaluate",
    "run_rounds": "teacher_student",
    "StudentSpec": "teacher_student",
    "TeacherStudentSteps": "teacher_student",
    "SegmentationSteps": "segmentation_steps",
    "RoundsConfig": "rounds",
    "RoundsResult": "rounds",
    "run_teacher_student": "rounds",
    "split_cases": "rounds",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
