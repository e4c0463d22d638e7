"""One validator for every label tag, image id and path the app accepts or builds.

MONAI Label 0.8.5 turns request strings into paths unchecked: ``labels/<tag>/<id>.nii.gz`` for
a label, ``<studies>/<id><ext>`` for an image.  A tag such as ``../x`` or ``final/`` and an id
such as ``/etc/passwd`` or ``../x`` therefore reach files outside the studies folder, or name the
clinician tag ``final`` under another spelling.  Every name the app accepts goes through here:

* a **tag** is a plain name, :data:`TAG_PATTERN` (``^[A-Za-z0-9_-]+$``, matched with
  ``fullmatch``: ``$`` alone would accept a trailing newline): no ``/``, ``.``, or spaces, so
  ``final/``, ``./final`` and ``final/../x`` are refused rather than normalised;
* an **image id** is a datastore id, :data:`ID_PATTERN`: letters, digits, ``_``, ``-`` and
  inner dots (BraTS ids such as ``BraTS2021_00000``), never a path (no ``/``, ``\\``, no leading
  dot, so ``..`` is impossible);
* every path the app builds is resolved and checked against the folders it may write
  (:func:`require_inside`): the studies folder, the model folder, the app's logs and the
  system temp folder for uploads.

A bad name is an :class:`~lib.errors.InvalidNameError` (HTTP 422) naming the field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import InvalidNameError, PathOutsideError

#: a label tag: a plain name
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
#: an image id: a plain name with inner dots, never a path
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
#: longest accepted name (a file name must fit in 255 bytes with its extension)
MAX_NAME_LENGTH = 128


def check_tag(value: Any, field: str = "tag") -> str:
    """Return ``value`` if it is a plain tag name; :class:`InvalidNameError` naming ``field`` otherwise."""
    if not isinstance(value, str) or len(value) > MAX_NAME_LENGTH or not TAG_PATTERN.fullmatch(value):
        raise InvalidNameError(
            f"{field}: {value!r} is not a label tag; a tag is a plain name matching {TAG_PATTERN.pattern} "
            f"(for example 'final', 'pseudo', 'original')"
        )
    return value


def check_image_id(value: Any, field: str = "image") -> str:
    """Return ``value`` if it is a datastore id (not a path); :class:`InvalidNameError` otherwise."""
    if (not isinstance(value, str) or len(value) > MAX_NAME_LENGTH or not ID_PATTERN.fullmatch(value)
            or value.endswith(".")):
        raise InvalidNameError(
            f"{field}: {value!r} is not an image id; an id is a datastore name matching {ID_PATTERN.pattern} "
            f"(list them with GET /datastore/?output=all), never a path"
        )
    return value


def check_model_name(value: Any, known: Iterable[str], field: str = "model") -> str:
    """Return ``value`` if it is one of ``known`` model names."""
    names = sorted(known)
    if not isinstance(value, str) or value not in names:
        raise InvalidNameError(f"{field}: unknown {field} {value!r}; available: {names}", status_code=404)
    return value


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path`` resolves (symlinks followed) to ``root`` or below it."""
    resolved = Path(os.path.realpath(path))
    base = Path(os.path.realpath(root))
    return resolved == base or base in resolved.parents


def require_inside(path: str | os.PathLike, roots: Iterable[str | os.PathLike], what: str) -> Path:
    """Resolve ``path``; :class:`PathOutsideError` (HTTP 403) unless it lies inside one of ``roots``."""
    roots = list(roots)
    if not any(is_inside(path, r) for r in roots):
        raise PathOutsideError(
            f"{what}: refusing to touch {os.path.realpath(path)}, outside the folders this server may write "
            f"({[os.path.realpath(r) for r in roots]})"
        )
    return Path(os.path.realpath(path))
