"""Infer tasks: interactive TransBTS inference and the pool pseudo-labeller (``/batch/infer``)."""

from .pseudo_pool import DatastoreSink, PoolPseudoLabelTask
from .transbts import TransBTSInfer

__all__ = ["DatastoreSink", "PoolPseudoLabelTask", "TransBTSInfer"]
