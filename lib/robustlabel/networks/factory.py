"""``build_network(config, **overrides)``: the public way to build a network from a config dict."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from .transbts import TransBTS

NETWORKS: dict[str, type[nn.Module]] = {"transbts": TransBTS}

#: Keyword arguments of a tiny TransBTS for tests: forward + backward on 1×4×32³ takes well under
#: a second on CPU.  ``base_channels`` is 8, the smallest width ``GroupNorm(8)`` allows.
#: Copy it before changing it: ``{**TINY_TRANSBTS, "num_layers": 2}``.
TINY_TRANSBTS: dict[str, Any] = {
    "base_channels": 8,
    "embedding_dim": 32,
    "num_layers": 1,
    "num_heads": 2,
    "mlp_dim": 64,
    "img_size": 32,
}


def build_network(config: Mapping[str, Any] | None = None, **overrides: Any) -> nn.Module:
    """Build the network named ``config["name"]`` (default ``"transbts"``).

    The other keys of ``config``, then ``overrides``, are the constructor's keyword arguments,
    e.g. ``build_network({"name": "transbts", "img_size": 96}, gradient_checkpointing=True)``.
    ``config`` is not modified.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or an unknown argument
            (the message lists the accepted ones).
    """
    params = {**(config or {}), **overrides}
    name = str(params.pop("name", "transbts")).lower()
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; valid names: {', '.join(sorted(NETWORKS))}")
    cls = NETWORKS[name]
    accepted = sorted(set(inspect.signature(cls.__init__).parameters) - {"self"})
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown} for network {name!r}; accepted: {', '.join(accepted)}")
    return cls(**params)
