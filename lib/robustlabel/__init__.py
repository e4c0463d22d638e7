"""robustlabel: TransBTS brain-tumour segmentation from a few clinician labels and many
pseudo-labels, trained with noise-robust losses, served through MONAI Label."""

__version__ = "0.1.0"
