"""Interactive TransBTS inference on one study: the ``transbts`` model of ``POST /infer/transbts``.

Request → result:

1. the request names the 3-D FLAIR the datastore lists (``STUDIES/<case>.nii.gz``); TransBTS needs
   all four modalities, read from ``STUDIES/modalities/<case>.nii.gz``
   (:func:`robustlabel.data.studies.modalities_path`);
2. ``robustlabel.data.transforms.infer_transforms``: load, channel-first, z-score per modality
   over the brain; no resampling, so the prediction lies on the image's own voxel grid;
3. sliding-window softmax ``p = softmax(z)`` with the engine's inferer
   (:func:`robustlabel.engine.inference.predict_probabilities`, autocast on CUDA, and bf16 on
   CPUs with native bf16), run on the brain's bounding box only (background outside it) with the
   measured ``/infer`` defaults :data:`robustlabel.engine.inference.INFER_WINDOWS`; a request may
   override ``sw_batch_size``, ``sw_overlap``, ``sw_blend``, ``crop_margin`` (``none``: no crop),
   ``crop_align`` and ``cpu_bf16``, and ``sw_stock: true`` restores today's settings (no crop,
   overlap 0.5, Gaussian blending; on the CPU float32 and the contiguous layout)
   (:func:`lib.conf.parse_sliding_window`; the settings
   used are in the result JSON, with the network's dtype under ``network_dtype``);
4. :func:`robustlabel.metrics.uncertainty.summarise_prediction`: ``ŷ = argmax p`` in BraTS values
   {0, 1, 2, 4} plus the case statistics the pool pseudo-labeller stores (voxel counts, mean
   max-probability and entropy, normalised ``uncertainty``), so both paths share one definition;
5. the label map is written with the FLAIR's affine (nibabel), so its shape and affine equal the
   image's, and the result JSON carries ``label_names`` (name → BraTS value), ``label_colors``
   and the statistics.

Which network: the checkpoint published in ``model_dir`` (``transbts.pt``; ``transbts_tiny.pt``
with ``--conf tiny true``) is rebuilt from its own training configuration and reloaded whenever
the file's modification time changes (training publishes with ``os.replace``).  Until a model
has been trained, a MONAI Label app serves its untrained network (the radiology sample app does
the same without pretrained weights): the result is computed by a seeded, randomly initialised
TransBTS, logged as a warning and flagged with ``"model_state": "untrained"`` and a ``warning``
in the result JSON.  Train first: ``POST /train/transbts``.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.inferers import Inferer
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask
from robustlabel.data.labels import BRATS_LABELS
from robustlabel.data.nifti import header_fields, write_nifti_atomic
from robustlabel.data.studies import modalities_path
from robustlabel.data.transforms import infer_transforms
from robustlabel.engine.checkpoint import network_from_checkpoint, read_checkpoint, sha256_file
from robustlabel.engine.config import amp_dtype_for, precision_name
from robustlabel.engine.inference import INFER_WINDOWS, predict_probabilities, prepare_network
from robustlabel.metrics.uncertainty import summarise_prediction
from robustlabel.networks import build_network

from ..conf import AppConf, parse_sliding_window
from ..errors import AppRequestError
from ..label_names import LABEL_COLORS, LABEL_NAMES

logger = logging.getLogger(__name__)

#: request key naming the folder the result file is written to (set by the app, never by a client)
RESULT_DIR_KEY = "robustlabel_result_dir"
#: result-JSON key of the sliding-window settings a request ran with
WINDOWS_KEY = "sliding_window"
#: result-JSON key: the precision the network ran in (``fp32``, ``bf16`` or ``fp16``; the ``--precision`` names)
AMP_KEY = "network_dtype"


class StudyLayoutError(AppRequestError):
    """The image has no usable 4-D modalities file next to it (HTTP 422)."""

    status_code_default = 422


def resolve_modalities(image_path: str) -> str:
    """The 4-D modalities file of the datastore image ``image_path``, checked against its geometry."""
    four_d = modalities_path(image_path)
    if not four_d.is_file():
        raise StudyLayoutError(
            f"{image_path} has no modalities file {four_d}: TransBTS needs flair, t1ce, t1 and t2; "
            f"build the studies folder with `robustlabel import-brats` (an uploaded single image cannot be segmented)"
        )
    image_shape = tuple(nib.load(image_path).shape[:3])
    four_d_shape = tuple(nib.load(str(four_d)).shape)
    if four_d_shape != (*image_shape, 4):
        raise StudyLayoutError(f"{four_d} has shape {four_d_shape}; expected {(*image_shape, 4)} for {image_path}")
    return str(four_d)


class TransBTSInfer(BasicInferTask):
    """MONAI Label infer task serving the published TransBTS checkpoint (see the module docstring).

    Args:
        path: the published checkpoint file (need not exist yet).
        network_config: :func:`robustlabel.networks.build_network` config of the untrained
            fallback network (the app conf's TransBTS).
        conf: the app options (device, roi size, seed).
    """

    def __init__(self, path: str, network_config: dict[str, Any], conf: AppConf, **kwargs: Any) -> None:
        with torch.random.fork_rng():
            torch.manual_seed(conf.seed)
            untrained = build_network(network_config)
        super().__init__(
            path=path,
            network=untrained,
            type=InferType.SEGMENTATION,
            labels=dict(LABEL_NAMES),
            dimension=3,
            description="TransBTS brain-tumour segmentation (BraTS labels 1 necrosis, 2 edema, 4 enhancing tumor)",
            roi_size=conf.roi_size,
            # only the switch: a default merged into every request would hide what a client left
            # out (``sw_stock`` keeps today's one window per forward unless ``sw_batch_size`` is sent)
            config={"sw_stock": False},
            **kwargs,
        )
        self.conf = conf
        if conf.device != "auto":
            self._config["device"] = [conf.device]
        self._served: dict[str, Any] = {}

    # ------------------------------------------------------------------ request
    def __call__(self, request: dict[str, Any], callbacks: Any = None) -> tuple[str | None, dict[str, Any]]:
        image = request.get("image")
        if not isinstance(image, str):
            raise AppRequestError("transbts needs an image id or the path of a studies image; arrays are not supported")
        parse_sliding_window(request, INFER_WINDOWS)  # a bad option fails before any work
        request = dict(request)
        request["flair"] = image
        request["image"] = resolve_modalities(image)
        request["device"] = self.conf.resolved_device(request.get("device"))
        return super().__call__(request, callbacks)

    def pre_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        return infer_transforms(keys=("image",)).transforms

    def inferer(self, data: dict[str, Any] | None = None) -> Inferer:
        roi = self._served.get("roi_size", self.conf.roi_size)
        return parse_sliding_window(data or {}, INFER_WINDOWS).inferer(roi)

    def post_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        return []  # argmax and label conversion happen in summarise_prediction (see writer)

    # ------------------------------------------------------------------ model
    def _get_network(self, device: str, data: Any, channels_last: bool = False) -> torch.nn.Module:
        """The published checkpoint rebuilt from its own config, cached per device and memory
        layout and reloaded when the file's mtime changes; the untrained network while none is
        published.  ``channels_last``: weights in ``channels_last_3d`` (oneDNN's fast conv3d
        layout on the CPU, :func:`robustlabel.engine.inference.prepare_network`); off, today's
        contiguous layout (the stock switch).  MONAI Label's own cache holds one network per
        device, so this override keys it by ``(device, channels_last)``."""
        key = (device, bool(channels_last))
        path = self.get_path(validate=True)
        mtime = os.stat(path).st_mtime if path else 0.0
        cached = self._networks.get(key)
        if cached is not None and cached[1] == mtime:
            return cached[0]
        if path is None:
            logger.warning(f"No trained model at {self.path[0]}: serving an UNTRAINED TransBTS; train first")
            network = copy.deepcopy(self.network).to(torch.device(device)).eval()
            self._served = {"model_state": "untrained", "roi_size": self.conf.roi_size}
        else:
            logger.info(f"Loading trained model {path} (mtime {mtime}) on {device}")
            try:
                network, config = network_from_checkpoint(read_checkpoint(path, device), device)
            except (ValueError, RuntimeError) as exc:
                raise AppRequestError(f"cannot serve {path}: {exc}", status_code=500) from exc
            self._served = {
                "model_state": "trained",
                "roi_size": config.resolved_roi_size,
                "checkpoint": path,
                "checkpoint_sha256": sha256_file(path),
            }
        network = prepare_network(network, channels_last)
        self._networks[key] = (network, mtime)
        return network

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda") -> dict[str, Any]:
        torch_device = torch.device(device)
        windows = parse_sliding_window(data, INFER_WINDOWS)
        network = self._get_network(device, data, channels_last=windows.channels_last_on(torch_device))
        images = data[self.input_key].unsqueeze(0).to(torch_device)
        amp_dtype = windows.autocast_dtype(torch_device, amp_dtype_for(torch_device))
        probs = predict_probabilities(network, images, self.inferer(data), amp_dtype,
                                      crop_margin=windows.crop_margin, crop_align=windows.crop_align)
        data[self.output_label_key] = probs[0]
        data[WINDOWS_KEY] = windows.describe()
        data[AMP_KEY] = precision_name(amp_dtype)
        return data

    # ------------------------------------------------------------------ output
    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[str, dict[str, Any]]:
        """Write ``argmax p`` in BraTS values with the FLAIR's affine; return (file, result JSON)."""
        probs = data[self.output_label_key]
        image = data[self.input_key].as_tensor().to(probs.device)
        label, _, stats = summarise_prediction(probs, image)
        flair = nib.load(data["flair"])
        expected = tuple(int(s) for s in flair.shape[:3])
        if tuple(label.shape) != expected:
            raise AppRequestError(f"prediction shape {label.shape} != image shape {expected}", status_code=500)
        # in the server, a folder the request removes when it ends, also when saving the label
        # fails (MONAI Label removes the file only after a successful response; main.py)
        result_dir = data.get(RESULT_DIR_KEY)
        fd, path = tempfile.mkstemp(suffix=".nii.gz", prefix="transbts_", dir=result_dir if result_dir else None)
        os.close(fd)
        write_nifti_atomic(path, label.astype(np.uint8), np.asarray(flair.affine, dtype=np.float64),
                           header=header_fields(flair.header))
        result: dict[str, Any] = {
            **{k: v for k, v in self._served.items() if k != "roi_size"},
            "label_colors": {name: list(rgb) for name, rgb in LABEL_COLORS.items()},
            "label_values": list(BRATS_LABELS),
            **{k: stats[k] for k in ("voxel_counts", "confidence", "uncertainty")},
            WINDOWS_KEY: data.get(WINDOWS_KEY),
            AMP_KEY: data.get(AMP_KEY),
        }
        if self._served.get("model_state") == "untrained":
            result["warning"] = (
                f"no trained model in {os.path.dirname(self.path[0])}: this label comes from an untrained "
                f"network; train first (POST /train/transbts)"
            )
        return path, result
