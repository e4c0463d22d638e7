"""Segmentation networks: TransBTS (returns logits) and a config-driven :func:`build_network`."""

from .factory import NETWORKS, TINY_TRANSBTS, build_network
from .transbts import OFFICIAL_NUM_PARAMS, OFFICIAL_UNUSED_PARAMS, OFFICIAL_USED_PARAMS, TransBTS

__all__ = [
    "NETWORKS",
    "OFFICIAL_NUM_PARAMS",
    "OFFICIAL_UNUSED_PARAMS",
    "OFFICIAL_USED_PARAMS",
    "TINY_TRANSBTS",
    "TransBTS",
    "build_network",
]
