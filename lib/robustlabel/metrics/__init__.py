"""Evaluation metrics: per-case BraTS Dice/HD95 for WT, TC, ET (MONAI) and their summary."""

from .brats import (
    METRIC_KEYS,
    METRICS,
    brats_metrics,
    format_mean_std,
    format_summary,
    spacing_from_affine,
    summarise,
)

__all__ = ["METRICS", "METRIC_KEYS", "brats_metrics", "format_mean_std", "format_summary", "spacing_from_affine", "summarise"]
