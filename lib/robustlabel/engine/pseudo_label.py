"""Pool pseudo-labelling: a teacher checkpoint labels every case without a clinician label.

Per case ``x`` the teacher's sliding-window softmax ``p_v = softmax(z_v)`` (float32) gives the
label ``ŷ_v = argmax_k p_{v,k}``, stored in BraTS values {0, 1, 2, 4} with the shape and affine of
the input volume (no resampling happens anywhere in the pipeline), the voxel confidence
``c_v = max_k p_{v,k}``, and the statistics in the sidecar: voxel counts, mean confidence and
entropy over the predicted tumour and the brain, and the case ``uncertainty`` ``u`` (the mean
normalised entropy over the predicted tumour, 1 when the teacher predicts none), by which the
MONAI Label app ranks cases for the clinician, largest first.  The maths is in
:mod:`robustlabel.metrics.uncertainty`.

Throughput (the per-image path of MONAI Label's stock ``BatchInferTask`` is the baseline, see
``scripts/bench_pseudo_label.py``):

* the teacher is loaded once; volumes of equal shape are stacked into batches, so the sliding
  window fills ``sw_batch_size`` with windows of several volumes;
* the sliding window runs on the brain's bounding box only (the batch's union of non-zero boxes
  plus a margin, :mod:`robustlabel.engine.crop`), with the pool's measured overlap and blending
  (:data:`~robustlabel.engine.inference.POOL_WINDOWS`); background everywhere else;
* a MONAI ``DataLoader`` with workers decompresses the next batch while the GPU runs the current
  one (default: ``min(4, cores)`` workers with CUDA, none on CPU, where the intra-op threads of
  the convolutions already use every core and worker processes only compete with them);
* inference runs under ``torch.inference_mode`` with autocast on CUDA (bf16 where supported) and,
  on CPU, with the network in ``channels_last_3d`` (oneDNN's fast conv3d layout) under bf16
  autocast where the CPU has native bf16 (see :mod:`robustlabel.engine.inference`);
* label, confidence and statistics come from one pass over the float32 probabilities
  (:func:`~robustlabel.metrics.uncertainty.summarise_prediction`), then a single background
  writer thread compresses and stores each case (NIfTI gzip + sidecar) while the next batch is
  computed; at most
  :data:`MAX_PENDING_BATCHES` batches wait for it, a failed write is raised in the caller, and
  the writer re-checks the clinician label right before it writes.

Output goes through a :class:`PseudoLabelSink`.  The default :class:`StudiesSink` writes
``STUDIES/labels/pseudo/<case>.nii.gz`` and the provenance sidecar ``<case>.json`` atomically;
the MONAI Label app plugs in its own sink that stores through the datastore API.  Two guards keep
clinician labels untouched: a case with a ``labels/final`` file is skipped (checked before
inference and again right before writing), and :func:`write_pseudo_label` refuses any path inside
a ``final`` labels folder.  A case whose sidecar already names the same teacher (SHA-256 of the
checkpoint file) is skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import nibabel as nib
import numpy as np
import torch
from monai.data import DataLoader, list_data_collate
from tqdm import tqdm

from ..atomic import write_bytes_atomic
from ..data.labels import BRATS_LABELS
from ..data.nifti import NiftiReadError, read_header_fields, write_nifti_atomic
from ..data.studies import FINAL, LABELS_DIR, PSEUDO, label_path, unlabeled_datalist
from ..data.transforms import infer_transforms
from ..machine import resolve_device
from ..metrics.uncertainty import summarise_prediction
from .checkpoint import network_from_checkpoint, read_checkpoint, sha256_file
from .config import amp_dtype_for, precision_name
from .datalist import CaseDataset, UnreadableCaseError, check_datalist
from .inference import POOL_WINDOWS, WindowSettings, predict_probabilities, prepare_network

#: the voxel-confidence map stores ``round(c_v · CONFIDENCE_SCALE)`` as uint8
CONFIDENCE_SCALE = 255
CONFIDENCE_DIR = "pseudo_confidence"
#: statuses of a :class:`PseudoLabelResult`
WRITTEN, SKIPPED_CLINICIAN, SKIPPED_SAME_TEACHER = "written", "skipped_clinician", "skipped_same_teacher"
#: batches whose outputs may wait for the background writer before inference pauses
MAX_PENDING_BATCHES = 2
#: sidecar key holding the source image's qform/sform codes and units (copied into the label file)
SOURCE_HEADER_KEY = "source_header"


class ProtectedLabelError(PermissionError):
    """An attempt to write a model output where clinician (``final``) labels live."""


# --------------------------------------------------------------------------- guard and writer
def is_clinician_label_path(path: str | os.PathLike) -> bool:
    """``True`` when ``path`` lies in a ``final`` labels folder: its (symlink-resolved) parent is
    named ``final`` or the path contains ``labels/final``."""
    resolved = Path(path).resolve()
    parts = resolved.parts
    in_labels_final = any(a == LABELS_DIR and b == FINAL for a, b in zip(parts, parts[1:]))
    return resolved.parent.name == FINAL or in_labels_final


def guard_not_clinician(path: str | os.PathLike) -> Path:
    """Return ``path``, or raise :class:`ProtectedLabelError` if it is inside a ``final`` folder."""
    if is_clinician_label_path(path):
        raise ProtectedLabelError(f"refusing to write a model output to {path}: it is inside a clinician 'final' labels folder")
    return Path(path)


def write_pseudo_label(
    path: str | os.PathLike, label: np.ndarray, affine: np.ndarray, header: Mapping[str, Any] | None = None
) -> Path:
    """Write a pseudo-label NIfTI atomically, never inside a ``final`` folder (see :func:`guard_not_clinician`);
    ``header`` (the source image's :func:`~robustlabel.data.nifti.header_fields`) keeps its codes and units."""
    return write_nifti_atomic(guard_not_clinician(path), label, affine, header)


# --------------------------------------------------------------------------- sinks
@runtime_checkable
class PseudoLabelSink(Protocol):
    """Where pseudo-labels go.  The MONAI Label app implements it on top of its datastore
    (``save_label_array(image_id, label, affine, "pseudo", info)``, which refuses a pseudo-label next
    to a clinician label under the datastore's lock)."""

    def has_clinician_label(self, case: str) -> bool:
        """Whether ``case`` has a clinician (``final``) label; such a case is never written."""

    def existing_teacher(self, case: str) -> str | None:
        """SHA-256 of the teacher that made the stored pseudo-label of ``case`` (``None``: none)."""

    def write(
        self, case: str, label: np.ndarray, affine: np.ndarray, info: dict[str, Any], confidence: np.ndarray | None
    ) -> str | None:
        """Store ``label`` (BraTS values, uint8) with ``affine`` and provenance ``info``;
        return where it went, or ``None`` when the case has a clinician label by now."""


class StudiesSink:
    """Default sink: ``label_dir/<case>.nii.gz`` + ``label_dir/<case>.json`` in a studies folder.

    Args:
        studies: the studies folder (its ``labels/final`` decides which cases are protected).
        label_dir: where pseudo-labels go (default ``STUDIES/labels/pseudo``); refused when it
            is a ``final`` folder.
        confidence_dir: where optional voxel-confidence maps go (default
            ``STUDIES/pseudo_confidence``, outside ``labels/`` so no datastore takes them for labels).
        protected: ``protected(case)`` tells whether ``case`` counts as clinician-labelled, i.e.
            is never pseudo-labelled (default: it has a ``labels/final`` file).  An experiment
            that hides the true labels of part of the cases passes the labelled subset here
            (``lambda case: case in labelled``).

    Labels and confidence maps keep the source image's qform/sform codes and units (the
    sidecar's ``source_header``).
    """

    def __init__(
        self, studies: str | os.PathLike, label_dir: str | os.PathLike | None = None,
        confidence_dir: str | os.PathLike | None = None, protected: Callable[[str], bool] | None = None,
    ) -> None:
        self.studies = Path(studies)
        self.protected = protected
        self.label_dir = Path(label_dir) if label_dir is not None else self.studies / LABELS_DIR / PSEUDO
        guard_not_clinician(self.label_dir / "probe.nii.gz")
        self.confidence_dir = Path(confidence_dir) if confidence_dir is not None else self.studies / CONFIDENCE_DIR
        guard_not_clinician(self.confidence_dir / "probe.nii.gz")

    def label_path(self, case: str) -> Path:
        return self.label_dir / f"{case}.nii.gz"

    def sidecar_path(self, case: str) -> Path:
        return self.label_dir / f"{case}.json"

    def confidence_path(self, case: str) -> Path:
        return self.confidence_dir / f"{case}.nii.gz"

    def has_clinician_label(self, case: str) -> bool:
        if self.protected is not None:
            return bool(self.protected(case))
        return label_path(self.studies, case, FINAL) is not None

    def read_info(self, case: str) -> dict[str, Any] | None:
        """The sidecar of ``case`` (``None`` when missing or unreadable)."""
        try:
            info = json.loads(self.sidecar_path(case).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return info if isinstance(info, dict) else None

    def existing_teacher(self, case: str) -> str | None:
        info = self.read_info(case)
        if info is None or not self.label_path(case).is_file():
            return None
        return info.get("teacher", {}).get("sha256")

    def all_info(self) -> dict[str, dict[str, Any]]:
        """``{case: sidecar}`` of every stored pseudo-label (e.g. to rank by ``uncertainty``)."""
        out = {}
        for sidecar in sorted(self.label_dir.glob("*.json")):
            case = sidecar.name[: -len(".json")]
            info = self.read_info(case)
            if info is not None and self.label_path(case).is_file():
                out[case] = info
        return out

    def write(
        self, case: str, label: np.ndarray, affine: np.ndarray, info: dict[str, Any], confidence: np.ndarray | None
    ) -> str | None:
        if self.has_clinician_label(case):
            return None
        # the stale sidecar goes first: a sidecar naming a teacher always describes the label beside it
        self.sidecar_path(case).unlink(missing_ok=True)
        header = info.get(SOURCE_HEADER_KEY)
        path = write_pseudo_label(self.label_path(case), label, affine, header)
        info = dict(info)
        if confidence is not None:
            conf_path = write_nifti_atomic(guard_not_clinician(self.confidence_path(case)), confidence, affine, header)
            info["confidence_map"] = {"path": str(conf_path), "scale": CONFIDENCE_SCALE,
                                      "meaning": "max softmax probability x scale, rounded, uint8"}
        write_bytes_atomic(guard_not_clinician(self.sidecar_path(case)), (json.dumps(info, indent=2) + "\n").encode())
        return str(path)


# --------------------------------------------------------------------------- batching
def default_num_workers(device: torch.device) -> int:
    """Loader workers: ``min(4, cores)`` with CUDA (decompression overlaps GPU work), 0 on CPU."""
    return min(4, os.cpu_count() or 1) if device.type == "cuda" else 0


def shape_batches(shapes: Sequence[tuple[int, ...]], batch_size: int) -> list[list[int]]:
    """Indices grouped by equal shape (first-appearance order), in chunks of ``batch_size``."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, shape in enumerate(shapes):
        groups.setdefault(tuple(shape), []).append(index)
    return [idx[i : i + batch_size] for idx in groups.values() for i in range(0, len(idx), batch_size)]


def read_geometry(path: str | os.PathLike) -> tuple[tuple[int, int, int], np.ndarray]:
    """Spatial shape ``(X, Y, Z)`` and 4×4 affine from a NIfTI header (no voxel data read)."""
    try:
        img = nib.load(str(path))
        shape, affine = tuple(int(s) for s in img.shape[:3]), np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:
        raise UnreadableCaseError(f"cannot read the header of {path}: {type(exc).__name__}: {exc}") from exc
    if len(shape) != 3:
        raise UnreadableCaseError(f"{path} is not a 3-D/4-D volume (shape {img.shape})")
    return shape, affine  # type: ignore[return-value]


def read_source_header(path: str | os.PathLike) -> dict[str, Any]:
    """The qform/sform codes and units of a NIfTI file (:func:`~robustlabel.data.nifti.read_header_fields`),
    raising :class:`UnreadableCaseError`."""
    try:
        return read_header_fields(path)
    except NiftiReadError as exc:
        raise UnreadableCaseError(str(exc)) from exc


# --------------------------------------------------------------------------- labeller
def labelling_dtype(device: torch.device | str, amp: bool = True, amp_dtype: str = "auto",
                    windows: WindowSettings | None = None) -> torch.dtype | None:
    """The autocast dtype the pool's network runs in (``None``: float32): with ``amp``, CUDA's
    :func:`~robustlabel.engine.config.amp_dtype_for` and the CPU's bf16 where ``windows`` (default
    :data:`~robustlabel.engine.inference.POOL_WINDOWS`, the :class:`PseudoLabeller`'s) allow it and
    the CPU has it natively (:meth:`~robustlabel.engine.inference.WindowSettings.autocast_dtype`);
    without ``amp``, float32 everywhere.

    Raises:
        ValueError: an ``amp_dtype`` other than ``"auto"``, ``"bf16"`` or ``"fp16"`` (also without ``amp``).
    """
    device = torch.device(device)
    cuda_dtype = amp_dtype_for(device, amp, amp_dtype)  # validates amp_dtype
    return (POOL_WINDOWS if windows is None else windows).autocast_dtype(device, cuda_dtype) if amp else None


@dataclass
class PseudoLabelResult:
    """Outcome for one case: ``status`` is ``written``, ``skipped_clinician`` or
    ``skipped_same_teacher``; ``info`` is the sidecar (``None`` when skipped)."""

    case: str
    status: str
    location: str | None = None
    info: dict[str, Any] | None = None

    @property
    def uncertainty(self) -> float | None:
        """Normalised mean entropy in the predicted tumour, 1 when it is empty
        (:mod:`robustlabel.metrics.uncertainty`)."""
        return None if self.info is None else self.info["uncertainty"]


class PseudoLabeller:
    """Label a pool of cases with one teacher checkpoint.

    Args:
        checkpoint: an engine checkpoint (``best.pt``/``last.pt``); its SHA-256 identifies the teacher.
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:i]"``.
        batch_size: volumes (of equal shape) per forward pass.
        windows: sliding-window settings (overlap, blending, ``sw_batch_size``, crop to the brain;
            default :data:`~robustlabel.engine.inference.POOL_WINDOWS`, chosen by measurement;
            :meth:`WindowSettings.stock() <robustlabel.engine.inference.WindowSettings.stock>`
            restores today's: no crop, overlap 0.5).
        sw_batch_size, overlap: override those two of ``windows``.
        num_workers: data-loader workers decompressing the next volumes (``None``:
            :func:`default_num_workers`).
        amp, amp_dtype: autocast on CUDA (bf16 where supported, else fp16); on the CPU bf16 where
            oneDNN has it natively and ``windows.cpu_bf16`` is set (the default,
            :meth:`~robustlabel.engine.inference.WindowSettings.autocast_dtype`); ``amp=False``:
            float32 everywhere.
        save_confidence: also store the voxel-confidence map ``c_v``.
        channels_last: network weights in ``channels_last_3d`` (``None``: as ``windows`` say, on
            CPU only, see :meth:`~robustlabel.engine.inference.WindowSettings.channels_last_on`;
            the stock settings keep the contiguous layout); ``False`` reproduces the
            contiguous-format outputs bit for bit.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        *,
        device: str = "auto",
        batch_size: int = 2,
        sw_batch_size: int | None = None,
        overlap: float | None = None,
        windows: WindowSettings | None = None,
        num_workers: int | None = None,
        amp: bool = True,
        amp_dtype: str = "auto",
        save_confidence: bool = False,
        channels_last: bool | None = None,
    ) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers is not None and int(num_workers) < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.checkpoint = Path(checkpoint)
        self.device = resolve_device(device)
        stored = read_checkpoint(self.checkpoint, self.device)
        network, self.config = network_from_checkpoint(stored, self.device)
        record = stored["record"]
        self.teacher = {
            "checkpoint": str(self.checkpoint.resolve()),
            "sha256": sha256_file(self.checkpoint),
            "epoch": int(record.get("best_epoch", 0)) or (record["history"][-1]["epoch"] if record.get("history") else 0),
            "pseudo_loss": self.config.pseudo_loss,
        }
        self.batch_size = int(batch_size)
        self.num_workers = default_num_workers(self.device) if num_workers is None else int(num_workers)
        self.save_confidence = bool(save_confidence)
        self.windows = (POOL_WINDOWS if windows is None else windows).replace(sw_batch_size=sw_batch_size, overlap=overlap)
        self.amp_dtype = labelling_dtype(self.device, amp, amp_dtype, self.windows)
        self.channels_last = self.windows.channels_last_on(self.device) if channels_last is None else bool(channels_last)
        self.network = prepare_network(network, self.channels_last)
        self.inferer = self.windows.inferer(self.config.resolved_roi_size)

    @property
    def teacher_sha256(self) -> str:
        return self.teacher["sha256"]

    def label(
        self,
        items: Iterable[Mapping[str, Any]],
        sink: PseudoLabelSink,
        *,
        progress: bool = True,
        callback: Callable[[PseudoLabelResult], None] | None = None,
    ) -> list[PseudoLabelResult]:
        """Pseudo-label ``items`` (``{"image": 4-D modalities path, "case": id}``) into ``sink``.

        Cases with a clinician label or already labelled by this teacher are skipped without
        being read.  Returns one result per item, in input order; ``callback`` sees each result
        as soon as it is known.
        """
        items = check_datalist(items, "pseudo-label pool", need_label=False)
        results: dict[int, PseudoLabelResult] = {}
        todo = []
        bar = tqdm(total=len(items), desc="pseudo-label", unit="case", disable=not progress)

        def report(index: int, result: PseudoLabelResult) -> None:
            results[index] = result
            bar.update(1)
            if callback is not None:
                callback(result)

        for index, item in enumerate(items):
            if sink.has_clinician_label(item["case"]):
                report(index, PseudoLabelResult(item["case"], SKIPPED_CLINICIAN))
            elif sink.existing_teacher(item["case"]) == self.teacher_sha256:
                report(index, PseudoLabelResult(item["case"], SKIPPED_SAME_TEACHER))
            else:
                todo.append(index)
        geometry = {i: read_geometry(items[i]["image"]) for i in todo}
        headers = {i: read_source_header(items[i]["image"]) for i in todo}
        batches = shape_batches([geometry[i][0] for i in todo], self.batch_size)
        pending = [items[i] for i in todo]
        # one writer thread: writes stay ordered and the sink is never called concurrently
        in_flight: deque[tuple[int, Future[PseudoLabelResult]]] = deque()
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pseudo-label-writer")

        def collect(keep: int) -> None:
            """Report finished writes (in order) until at most ``keep`` are in flight; re-raises a write error."""
            while len(in_flight) > keep:
                index, future = in_flight.popleft()
                report(index, future.result())

        try:
            if pending:
                loader = DataLoader(
                    CaseDataset(pending, infer_transforms()),
                    batch_sampler=batches,
                    num_workers=min(self.num_workers, len(batches), os.cpu_count() or 1),
                    collate_fn=list_data_collate,
                    pin_memory=self.device.type == "cuda",
                )
                for batch_indices, batch in zip(batches, loader):
                    images = batch["image"].to(self.device, non_blocking=True)
                    probs = predict_probabilities(self.network, images, self.inferer, self.amp_dtype,
                                                  crop_margin=self.windows.crop_margin, crop_align=self.windows.crop_align)
                    for b, local in enumerate(batch_indices):
                        index = todo[local]
                        label, info, confidence = self._summarise(items[index], probs[b], images[b], geometry[index])
                        info[SOURCE_HEADER_KEY] = headers[index]
                        future = writer.submit(self._store, sink, items[index]["case"], label, geometry[index][1], info, confidence)
                        in_flight.append((index, future))
                    del images, probs
                    collect(keep=MAX_PENDING_BATCHES * self.batch_size)
                collect(keep=0)
        finally:
            for _, future in in_flight:
                future.cancel()
            writer.shutdown(wait=True)
            bar.close()
        return [results[i] for i in range(len(items))]

    @staticmethod
    def _store(
        sink: PseudoLabelSink, case: str, label: np.ndarray, affine: np.ndarray, info: dict[str, Any],
        confidence: np.ndarray | None,
    ) -> PseudoLabelResult:
        """Writer thread: hand one case to ``sink`` (which re-checks the clinician label)."""
        location = sink.write(case, label, affine, info, confidence)
        if location is None:
            return PseudoLabelResult(case, SKIPPED_CLINICIAN)
        return PseudoLabelResult(case, WRITTEN, location, info)

    def _summarise(
        self,
        item: Mapping[str, Any],
        probs: torch.Tensor,
        image: torch.Tensor,
        geometry: tuple[tuple[int, int, int], np.ndarray],
    ) -> tuple[np.ndarray, dict[str, Any], np.ndarray | None]:
        """Label (BraTS values), sidecar and optional uint8 confidence map of one case."""
        shape, affine = geometry
        label, max_prob, stats = summarise_prediction(probs, image)
        if tuple(label.shape) != shape:  # the inference transforms never resample; guard anyway
            raise RuntimeError(f"case {item['case']}: prediction shape {label.shape} != source shape {shape}")
        info = {
            "case": item["case"],
            "image": str(item["image"]),
            "tag": PSEUDO,
            "teacher": dict(self.teacher),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "label_values": list(BRATS_LABELS),
            **stats,
            "shape": list(shape),
            "affine": np.asarray(affine).tolist(),
            "inference": {
                "roi_size": list(self.inferer.roi_size),
                "sw_overlap": float(self.inferer.overlap),
                "sw_batch_size": int(self.windows.sw_batch_size),
                "blend": self.windows.blend,
                "crop_margin": self.windows.crop_margin,
                "crop_align": bool(self.windows.crop_align),
                "cpu_bf16": bool(self.windows.cpu_bf16),
                "device": str(self.device),
                "amp_dtype": precision_name(self.amp_dtype),
            },
        }
        confidence = np.rint(max_prob * CONFIDENCE_SCALE).astype(np.uint8) if self.save_confidence else None
        return label, info, confidence


def student_items(
    pool: Sequence[Mapping[str, Any]],
    results: Sequence[PseudoLabelResult],
    sink: StudiesSink,
    *,
    strict: bool = False,
) -> list[dict[str, Any]]:
    """Turn a pool's pseudo-label results into the student's datalist items.

    Args:
        pool: the items given to :meth:`PseudoLabeller.label` (``{"image", "case"}``), in order.
        results: what :meth:`PseudoLabeller.label` returned for them (same order).
        sink: the sink the labels went to (its ``label_path(case)`` names the files).
        strict: raise when a pool case has no pseudo-label of this teacher (e.g. it was
            protected as clinician-labelled); by default such cases are left out.

    Returns:
        ``{"image", "label", "source": "pseudo", "case"}`` for every case written now or
        labelled earlier by the same teacher, in pool order.

    Raises:
        ValueError: ``pool`` and ``results`` differ in length or order.
        RuntimeError: with ``strict``, naming the cases left without a pseudo-label.
    """
    if len(pool) != len(results) or any(str(i["case"]) != r.case for i, r in zip(pool, results)):
        raise ValueError("pool and results must list the same cases in the same order")
    usable = (WRITTEN, SKIPPED_SAME_TEACHER)
    missing = [r.case for r in results if r.status not in usable]
    if strict and missing:
        raise RuntimeError(f"pool cases {missing} were not pseudo-labelled (statuses "
                           f"{sorted({r.status for r in results})}); expected none to be protected")
    return [
        {"image": str(item["image"]), "label": str(sink.label_path(r.case)), "source": PSEUDO, "case": r.case}
        for item, r in zip(pool, results)
        if r.status in usable
    ]


def pseudo_label_studies(
    studies: str | os.PathLike,
    checkpoint: str | os.PathLike,
    *,
    sink: PseudoLabelSink | None = None,
    progress: bool = True,
    callback: Callable[[PseudoLabelResult], None] | None = None,
    **labeller_options: Any,
) -> list[PseudoLabelResult]:
    """Pseudo-label every case of ``studies`` without a ``final`` label (default sink:
    :class:`StudiesSink`); ``labeller_options`` go to :class:`PseudoLabeller`.

    In a ``torch.distributed`` job every rank calls it and labels its shard of the pool
    (:func:`robustlabel.engine.pool_shards.label_pool`); every rank returns the whole pool's results."""
    from .pool_shards import label_pool  # it imports this module

    labeller = PseudoLabeller(checkpoint, **labeller_options)
    return label_pool(labeller, unlabeled_datalist(studies), sink or StudiesSink(studies), progress=progress,
                      callback=callback)
