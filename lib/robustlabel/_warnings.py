"""Silence two known, harmless upstream warnings that would otherwise flood every run.

Both filters are targeted: exact message prefix, category *and* the upstream module that
raises them, so the same warning raised by our own code still shows.

* ``Using a non-tuple sequence for multidimensional indexing is deprecated …`` —
  MONAI 1.4's ``monai.inferers.utils.sliding_window_inference`` indexes tensors with a
  list of slices (``out[idx]`` with ``idx: list``); torch ≥ 2.6 warns once *per window
  call*, i.e. hundreds of lines per ``robustlabel teacher-student`` run.  The indexing is
  still correct with our pinned torch; the fix belongs to MONAI (``x[tuple(seq)]``).
* ```torch.jit.interface` is deprecated. Please use `torch.compile` instead.`` —
  ``import monai`` imports ``monai.networks.nets.dints``, whose ``@torch.jit.interface``
  class decorator makes ``torch.jit._script.interface`` warn at import time.  We never use
  DiNTS or TorchScript interfaces.

:mod:`robustlabel` calls :func:`silence_upstream_warnings` on import, before anything imports
MONAI, so the CLI, the scripts and the MONAI Label app all get it.  pytest resets warning
filters around each test, so ``tests/conftest.py`` feeds :data:`UPSTREAM_WARNINGS` to pytest's
``filterwarnings`` as well.
"""

from __future__ import annotations

import warnings

#: ``(message regex, category, module regex)`` of each silenced upstream warning
UPSTREAM_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    (r"Using a non-tuple sequence for multidimensional indexing is deprecated", UserWarning,
     r"monai\.inferers\.utils"),
    (r"`torch\.jit\.interface` is deprecated", FutureWarning, r"torch\.jit\._script"),
)


def silence_upstream_warnings() -> None:
    """Install an ``ignore`` filter for each entry of :data:`UPSTREAM_WARNINGS`."""
    for message, category, module in UPSTREAM_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def filterwarnings_lines() -> list[str]:
    """The same filters in pytest's ``filterwarnings`` ini syntax (``action:message:category:module``)."""
    return [f"ignore:{message}:{category.__name__}:{module}" for message, category, module in UPSTREAM_WARNINGS]
