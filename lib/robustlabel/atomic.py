"""Atomic file writes: the one place where robustlabel puts a file on disk all at once.

Every writer stages its bytes in a hidden temporary file in the *target's* folder
(``.<name>.<random>.tmp``: never ending in ``.nii``/``.nii.gz``/``.json``, so a MONAI Label
datastore or a results reader scanning the folder never sees it), flushes and ``fsync``\\ s it,
then renames it onto the target with :func:`os.replace`.  ``os.replace`` is atomic on POSIX and
Windows within one file system, so a process killed at any moment leaves either the previous
file or the complete new one, never a truncated file; a failed write removes its temporary file.

* :func:`atomic_path` - a context manager for writers that need a path (``torch.save``,
  ``shutil.copyfile``): yields the temporary path, renames it on success.
* :func:`write_files_atomic` - several files as one unit (all staged, then renamed in order).
* :func:`write_bytes_atomic`, :func:`write_text_atomic`, :func:`write_json_atomic` - one file.
* :func:`json_default` - the JSON encoder hook for NumPy scalars/arrays and paths.

This module sits at the bottom of the package (standard library and NumPy only): ``data``,
``engine``, ``experiments`` and the scripts all use it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "json_default",
    "write_bytes_atomic",
    "write_files_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def _stage(path: Path, data: bytes) -> Path:
    """Write ``data`` to a hidden ``.tmp`` file next to ``path`` (flushed and fsynced); return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(tmp)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary path next to ``path``; when the body succeeds, rename it onto
    ``path`` with :func:`os.replace`.  The temporary file is removed when the body raises.

    The body writes the temporary file itself and should ``fsync`` it before leaving (as
    :func:`robustlabel.engine.checkpoint.atomic_torch_save` does).
    """
    path = Path(path)
    tmp = _stage(path, b"")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_files_atomic(files: Sequence[tuple[str | os.PathLike, bytes]]) -> list[Path]:
    """Write several files as one unit: all go to temporary files first, then each is
    renamed into place with :func:`os.replace`, **in the given order**.

    If any write fails, no target is touched and every temporary file is removed.  (The
    renames themselves are atomic one by one; put the file whose appearance "publishes"
    the set last.)

    Raises:
        OSError: a folder cannot be created or a file cannot be written.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files:
            path = Path(path)
            staged.append((_stage(path, data), path))
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return [path for _, path in staged]


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same directory + ``os.replace``)."""
    return write_files_atomic([(path, data)])[0]


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, UTF-8 encoded."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def json_default(obj: Any) -> Any:
    """:func:`json.dumps` hook: NumPy scalars → Python numbers, arrays → lists, paths → strings.

    Raises:
        TypeError: any other object (as :func:`json.dumps` itself would).
    """
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json_atomic(
    path: str | os.PathLike, obj: Any, default: Callable[[Any], Any] | None = json_default
) -> Path:
    """Write ``obj`` as pretty-printed JSON (indent 2, trailing newline) to ``path`` atomically.

    Args:
        path: the target file.
        obj: anything :func:`json.dumps` can encode with ``default``.
        default: :func:`json.dumps`' hook for objects JSON cannot encode; by default
            :func:`json_default` (NumPy values and paths).

    Raises:
        TypeError: ``obj`` holds something ``default`` cannot encode (nothing is written).
    """
    return write_bytes_atomic(path, (json.dumps(obj, indent=2, default=default) + "\n").encode("utf-8"))
