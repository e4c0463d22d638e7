"""BraTS data layer: label conventions, NIfTI I/O, readers of the public layouts, the MONAI
Label studies folder, MONAI transforms and synthetic phantoms.

Import the sub-modules directly (``robustlabel.data.transforms``, ``robustlabel.data.brats``,
``robustlabel.data.studies``, ``robustlabel.data.synthetic``; for the CIFAR tables
``robustlabel.data.cifar``, ``robustlabel.data.cifar_transforms`` and ``robustlabel.data.splits``,
the labelled / unlabelled / validation split); the label conventions are re-exported here.
"""

from .labels import (
    BRATS_LABELS,
    MODALITIES,
    REGIONS,
    BratsToTrainLabelsd,
    LabelValueError,
    TrainToBratsLabelsd,
    brats_regions,
    brats_to_train,
    train_to_brats,
)

__all__ = [
    "BRATS_LABELS",
    "MODALITIES",
    "REGIONS",
    "BratsToTrainLabelsd",
    "LabelValueError",
    "TrainToBratsLabelsd",
    "brats_regions",
    "brats_to_train",
    "train_to_brats",
]
