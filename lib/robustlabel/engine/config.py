"""Training configuration of the teacher–student engine (:class:`TrainConfig`) and the
device / mixed-precision choices derived from it.

Defaults follow the TransBTS recipe of the seed paper (Cui et al., Sec. 3.2: Adam, initial
learning rate 2e-4, batch size 4, 1000 epochs) and of the official TransBTS code
(Wenxuan-1119/TransBTS, ``train.py``: weight decay 1e-5, ``amsgrad=True`` and the poly
learning-rate decay ``lr_e = lr_0 · (1 − e/E)^0.9`` applied once per epoch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..losses.hparams import paper_params
from ..losses.source_aware import SOURCE_MODES

AMP_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: ``--precision`` choices: float32 everywhere (the seed paper), or autocast to bf16 / fp16 on CUDA
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
#: ``--select`` choices: which checkpoint of a run is scored, the last epoch (the seed paper) or
#: the best validation Dice
SELECTIONS: tuple[str, ...] = ("last", "best")
#: ``--init`` choices of a student: random initialisation (the paper) or the teacher's weights
INITS: tuple[str, ...] = ("scratch", "teacher")


def precision_settings(precision: str) -> dict[str, Any]:
    """``TrainConfig`` fields of a ``--precision`` choice: ``fp32`` → ``amp=False``; ``bf16`` /
    ``fp16`` → autocast to that dtype on CUDA (CPU training always runs in float32; the CPU's pool
    pseudo-labelling then runs in bf16 where the CPU has it natively,
    :func:`robustlabel.engine.pseudo_label.labelling_dtype`).

    Raises:
        ValueError: for a name outside :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return {"amp": False, "amp_dtype": "auto"} if precision == "fp32" else {"amp": True, "amp_dtype": precision}


def precision_used(amp: bool, amp_dtype: str, device: torch.device | str) -> str:
    """What actually runs: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast only exists on CUDA)."""
    return precision_name(amp_dtype_for(torch.device(device), amp, amp_dtype))


def precision_name(dtype: torch.dtype | None) -> str:
    """``"fp32"`` for ``None`` (no autocast), else the :data:`AMP_DTYPES` name of ``dtype``."""
    return "fp32" if dtype is None else next(name for name, d in AMP_DTYPES.items() if d == dtype)


@dataclass
class TrainConfig:
    """Everything :func:`robustlabel.engine.train` needs besides the data.

    Attributes:
        network: keyword arguments of :func:`robustlabel.networks.build_network`
            (``{}``: the full TransBTS; ``TINY_TRANSBTS`` for tests).
        roi_size: training crop and sliding-window size; ``None`` takes the network's
            ``img_size`` (128 for TransBTS).
        batch_size: training crops per step and rank (seed paper: 4, one GPU).
        epochs: total epochs ``E`` (seed paper: 1000); the poly decay runs over them.
        lr: initial learning rate ``lr_0`` of Adam (2e-4).
        weight_decay: Adam's L2 weight decay (1e-5).
        amsgrad: use the AMSGrad variant of Adam (official TransBTS: True).
        poly_power: exponent of the poly decay ``lr_e = lr_0 (1 − e/E)^p`` (0.9).
        pseudo_loss: :func:`robustlabel.losses.get_loss` name of the loss on pseudo-labels.
        pseudo_params: its hyper-parameters; ``None`` takes the seed paper's BraTS values
            (:func:`robustlabel.losses.hparams.paper_params`), e.g. ``q = 0.7`` for GCE.
        pseudo_weight: weight ``w`` of the pseudo-label term of
            :class:`~robustlabel.losses.SourceAwareLoss`.
        val_interval: validate every this many epochs (and always after the last one).
        sw_batch_size: windows per forward pass of the sliding-window inference.
        sw_overlap: overlap of neighbouring windows (0.5).
        num_workers: data-loader worker processes (decompression runs in parallel to compute).
        seed: seeds the network initialisation, the shuffling and the random augmentations.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:i]"``.
        amp: mixed precision on CUDA (CPU always runs in float32).
        amp_dtype: ``"auto"`` (bf16 where supported, else fp16), ``"bf16"`` or ``"fp16"``.
        mode: how the clinician and pseudo-label terms are weighted: ``"union"`` (one mean over
            all voxels of the shuffled batch), ``"robust_all"`` (the robust loss on every
            sample, the seed's ``train_cv.py``) or ``"per_source"`` (1:1 batches from
            :class:`~robustlabel.engine.sampler.SourceBalancedSampler`, the two per-source means
            added, the seed's ``train_2losses.py``); see :class:`~robustlabel.losses.SourceAwareLoss`.
        init_checkpoint: an engine checkpoint whose network weights a fresh run starts from
            (e.g. a student initialised from its teacher); ``None`` (default): random
            initialisation from ``seed``, as in the seed paper.
        augment: the random flips and intensity changes of the training pipeline (the official
            TransBTS augmentation); ``False`` keeps only the pad and the (random) crop, e.g. to
            compare runs exactly.
        freeze_batchnorm: keep every BatchNorm layer in eval mode while training (its running
            statistics, not the batch's, normalise and are not updated).  With several ranks
            BatchNorm otherwise normalises with each rank's own batch; on CUDA the engine
            converts it to ``SyncBatchNorm`` (statistics of the global batch), which does not
            exist on CPU, so there this flag is the way to make N ranks compute exactly what one
            process computes over the same global batch.

    Under ``torch.distributed`` (:mod:`robustlabel.engine.distributed`) ``batch_size`` is per
    rank: a step of ``N`` ranks sees ``N · batch_size`` crops (the global batch).
    """

    network: dict[str, Any] = field(default_factory=dict)
    roi_size: tuple[int, int, int] | None = None
    batch_size: int = 4
    epochs: int = 1000
    lr: float = 2e-4
    weight_decay: float = 1e-5
    amsgrad: bool = True
    poly_power: float = 0.9
    pseudo_loss: str = "gce"
    pseudo_params: dict[str, float] | None = None
    pseudo_weight: float = 1.0
    val_interval: int = 10
    sw_batch_size: int = 4
    sw_overlap: float = 0.5
    num_workers: int = 4
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    amp_dtype: str = "auto"
    mode: str = "union"
    init_checkpoint: str | None = None
    augment: bool = True
    freeze_batchnorm: bool = False

    def __post_init__(self) -> None:
        self.network = dict(self.network or {})
        if self.roi_size is not None:
            roi = tuple(int(r) for r in (self.roi_size if isinstance(self.roi_size, Sequence) else [self.roi_size] * 3))
            if len(roi) != 3 or min(roi) < 1:
                raise ValueError(f"roi_size must be three positive ints, got {self.roi_size!r}")
            self.roi_size = roi  # type: ignore[assignment]
        for name in ("batch_size", "epochs", "val_interval", "sw_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {self.num_workers!r}")
        if not float(self.lr) > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not float(self.weight_decay) >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not float(self.poly_power) >= 0:
            raise ValueError(f"poly_power must be >= 0, got {self.poly_power!r}")
        if not 0 <= float(self.sw_overlap) < 1:
            raise ValueError(f"sw_overlap must lie in [0, 1), got {self.sw_overlap!r}")
        if not float(self.pseudo_weight) >= 0:
            raise ValueError(f"pseudo_weight must be >= 0, got {self.pseudo_weight!r}")
        if self.amp_dtype not in ("auto", *AMP_DTYPES):
            raise ValueError(f"amp_dtype must be 'auto', 'bf16' or 'fp16', got {self.amp_dtype!r}")
        if str(self.device) != "auto":
            try:  # syntax only: a checkpoint trained on CUDA must still load on a CPU machine
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {self.device!r}") from None
        if self.pseudo_params is not None:
            self.pseudo_params = dict(self.pseudo_params)
        if self.mode not in SOURCE_MODES:
            raise ValueError(f"mode must be one of {SOURCE_MODES}, got {self.mode!r}")
        if self.init_checkpoint is not None:
            self.init_checkpoint = str(self.init_checkpoint)
        for name in ("augment", "freeze_batchnorm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")

    # ------------------------------------------------------------------ derived values
    @property
    def resolved_pseudo_params(self) -> dict[str, float]:
        """``pseudo_params``, or the seed paper's BraTS values for ``pseudo_loss`` (``{}`` for a
        loss the paper did not tune, e.g. CE)."""
        if self.pseudo_params is not None:
            return dict(self.pseudo_params)
        return paper_params(self.pseudo_loss)

    @property
    def resolved_roi_size(self) -> tuple[int, int, int]:
        """``roi_size``, else the network's ``img_size`` (default 128)."""
        if self.roi_size is not None:
            return self.roi_size
        img = self.network.get("img_size", 128)
        return tuple(int(s) for s in (img if isinstance(img, Sequence) else [img] * 3))  # type: ignore[return-value]

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists); :meth:`from_dict` inverts it."""
        out = dataclasses.asdict(self)
        if out["roi_size"] is not None:
            out["roi_size"] = list(out["roi_size"])
        out["network"] = _json_safe(out["network"])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from :meth:`to_dict` output; unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid fields: {sorted(known)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated like a new config)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def resolve_amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype of ``config`` on ``device`` (see :func:`amp_dtype_for`)."""
    return amp_dtype_for(device, config.amp, config.amp_dtype)


def amp_dtype_for(device: torch.device, amp: bool = True, amp_dtype: str = "auto") -> torch.dtype | None:
    """Autocast dtype: ``None`` (float32) on CPU or with ``amp=False``; on CUDA ``amp_dtype``,
    where ``"auto"`` is bf16 when the GPU supports it (no loss scaling needed), else fp16."""
    if amp_dtype not in ("auto", *AMP_DTYPES):
        raise ValueError(f"amp_dtype must be 'auto', 'bf16' or 'fp16', got {amp_dtype!r}")
    if not amp or device.type != "cuda":
        return None
    if amp_dtype != "auto":
        return AMP_DTYPES[amp_dtype]
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
