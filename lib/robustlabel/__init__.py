"""robustlabel: TransBTS brain-tumour segmentation from a few clinician labels and many
pseudo-labels, trained with noise-robust losses, served through MONAI Label."""

from ._warnings import silence_upstream_warnings

# Before any submodule imports MONAI: hides MONAI 1.4 / torch deprecation noise (see _warnings).
silence_upstream_warnings()

__version__ = "0.1.0"
