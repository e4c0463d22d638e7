"""Segmentation networks: TransBTS (returns logits) and a config-driven :func:`build_network`;
the thesis' 8-layer CIFAR CNN (:class:`ThesisCNN`); FCN-AlexNet (:class:`FCNAlexNet`); the CIFAR
ResNet-18 of Cui et al. Table 1 (:func:`cifar_resnet18`)."""

from .factory import NETWORKS, TINY_TRANSBTS, build_network
from .fcn import FCNAlexNet, load_alexnet_weights
from .resnet import cifar_resnet18
from .thesis_cnn import THESIS_NUM_PARAMS, ThesisCNN
from .transbts import OFFICIAL_NUM_PARAMS, OFFICIAL_UNUSED_PARAMS, OFFICIAL_USED_PARAMS, TransBTS

__all__ = [
    "FCNAlexNet",
    "NETWORKS",
    "OFFICIAL_NUM_PARAMS",
    "OFFICIAL_UNUSED_PARAMS",
    "OFFICIAL_USED_PARAMS",
    "THESIS_NUM_PARAMS",
    "TINY_TRANSBTS",
    "ThesisCNN",
    "TransBTS",
    "build_network",
    "cifar_resnet18",
    "load_alexnet_weights",
]
