"""Datalists with a per-item label source, and the data loaders built from them.

A datalist item (docs/CONTRACTS.md) is ``{"image": <4-D modalities NIfTI>, "label": <label
NIfTI>, "source": "final" | "pseudo", "case": <id>}``.  ``final`` labels come from a clinician
and are ground truth; ``pseudo`` labels come from a teacher network.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import DataLoader, Dataset

from ..data.nifti import NiftiReadError, read_nifti
from ..data.studies import FINAL, PSEUDO

SOURCES: tuple[str, ...] = (FINAL, PSEUDO)
#: keys of an item that name files
FILE_KEYS: tuple[str, ...] = ("image", "label")


class NoClinicianLabelsError(ValueError):
    """A training datalist holds no clinician (``final``) label."""


class UnreadableCaseError(ValueError):
    """A case of a datalist could not be loaded; the message names the case and the file.

    Constructed from one message string, so that PyTorch's data-loader workers re-raise it
    in the main process with its own type.
    """


def case_name(item: Mapping[str, Any]) -> str:
    """The item's ``case``, else the image file name without its NIfTI suffix."""
    if item.get("case"):
        return str(item["case"])
    name = Path(str(item.get("image", "?"))).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_datalist(items: Iterable[Mapping[str, Any]], role: str, *, need_label: bool = True) -> list[dict[str, Any]]:
    """Validate a datalist and return plain-dict copies with ``case`` filled in.

    Checks that every item names existing files for ``image`` (and ``label`` when
    ``need_label``) and, when it has a label, a ``source`` out of :data:`SOURCES`.

    Raises:
        ValueError: naming the item (``role`` says which datalist) and what is wrong.
    """
    checked = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"{role} datalist item {index} must be a dict, got {type(item).__name__}")
        item = dict(item)
        item["case"] = case_name(item)
        where = f"{role} datalist item {index} (case {item['case']!r})"
        keys = FILE_KEYS if need_label else FILE_KEYS[:1]
        for key in keys:
            if not item.get(key):
                raise ValueError(f"{where} has no {key!r} path")
            if not Path(item[key]).is_file():
                raise ValueError(f"{where}: {key} file {item[key]} does not exist")
        if need_label and item.get("source") not in SOURCES:
            raise ValueError(f"{where}: 'source' must be one of {SOURCES}, got {item.get('source')!r}")
        checked.append(item)
    return checked


def require_clinician_labels(items: Sequence[Mapping[str, Any]], role: str = "training") -> None:
    """Raise :class:`NoClinicianLabelsError` unless some item has ``source == "final"``."""
    if not any(item.get("source") == FINAL for item in items):
        sources = sorted({str(item.get("source")) for item in items})
        raise NoClinicianLabelsError(
            f"no clinician labels: the {role} datalist ({len(items)} item(s), sources {sources}) has no "
            f"item with source 'final'; a teacher and a student both need clinician-labelled cases"
        )


def pseudo_flags(sources: Sequence[str] | str, device: torch.device | str | None = None) -> torch.Tensor:
    """Collated per-item label sources → bool tensor ``(N,)``, ``True`` for ``pseudo``.

    Raises ``ValueError`` for a source outside :data:`SOURCES`.
    """
    if isinstance(sources, str):
        sources = [sources]
    unknown = sorted({s for s in sources if s not in SOURCES})
    if unknown:
        raise ValueError(f"unknown label source(s) {unknown} in batch; expected {SOURCES}")
    return torch.tensor([s == PSEUDO for s in sources], dtype=torch.bool, device=device)


def find_unreadable_file(item: Mapping[str, Any]) -> NiftiReadError | None:
    """Read every file of ``item`` eagerly and return the first read error (or ``None``)."""
    for key in FILE_KEYS:
        path = item.get(key)
        if path:
            try:
                read_nifti(path)
            except NiftiReadError as exc:
                return exc
    return None


class CaseDataset(Dataset):
    """MONAI :class:`~monai.data.Dataset` whose load errors name the case and the file.

    When a transform fails, every file of the item is read again with
    :func:`~robustlabel.data.nifti.read_nifti` (only on this error path) to tell which file is
    corrupt, and an :class:`UnreadableCaseError` is raised.
    """

    def _transform(self, index: int) -> Any:
        try:
            return super()._transform(index)
        except Exception as exc:
            item = self.data[index]
            culprit = find_unreadable_file(item)
            if culprit is not None:
                raise UnreadableCaseError(f"unreadable case {case_name(item)!r}: {culprit}") from exc
            raise UnreadableCaseError(
                f"cannot load case {case_name(item)!r} (image {item.get('image')}, label {item.get('label')}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def make_loader(
    items: Sequence[Mapping[str, Any]],
    transform: Callable,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    seed: int,
    **kwargs: Any,
) -> DataLoader:
    """MONAI :class:`~monai.data.DataLoader` over a :class:`CaseDataset`.

    Shuffling, worker seeds and the random transforms all derive from ``seed`` through a
    private ``torch.Generator`` (the global RNG is not touched).  Workers are not persistent:
    they are forked per epoch (cheap) and gone when the epoch ends, so no process outlives a run.
    """
    workers = min(int(num_workers), len(items), os.cpu_count() or 1)
    return DataLoader(
        CaseDataset(list(items), transform),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        generator=torch.Generator().manual_seed(int(seed)),
        pin_memory=torch.cuda.is_available(),
        **kwargs,
    )
