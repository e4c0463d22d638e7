"""Evaluation metrics: per-case BraTS Dice/HD95 for WT, TC, ET (MONAI) and their summary; the FCN
segmentation scores (pixel accuracy, mean recall, f.w. IU, mean IU) of a void-aware confusion matrix;
top-1 classification accuracy; a teacher's per-case uncertainty and the clinician's ranking
(:mod:`.uncertainty`)."""

from .brats import METRIC_KEYS, METRICS, brats_metrics, format_summary, spacing_from_affine
from .statistics import format_mean_std, mean_std, summarise
from .classification import accuracy
from .segmentation import SEGMENTATION_SCORES, confusion_matrix, segmentation_scores

__all__ = ["accuracy", "METRICS", "METRIC_KEYS", "SEGMENTATION_SCORES", "brats_metrics", "confusion_matrix", "segmentation_scores", "format_mean_std", "format_summary", "mean_std", "spacing_from_affine", "summarise"]
