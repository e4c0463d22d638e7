"""The app's options: ``monailabel start_server ... --conf key value`` and per-request overrides.

========================  ===============================  ==========================================
key                       values (default)                 meaning
========================  ===============================  ==========================================
``models``                ``transbts`` | ``all``           models to serve (only TransBTS exists)
``tiny``                  ``true`` | ``false`` (false)     tiny TransBTS (``TINY_TRANSBTS``) for tests/demo
``roi_size``              ``128`` or ``[128,128,128]``     crop = sliding window = network ``img_size``
                                                           (default 128³, tiny 32³); multiples of 8
``pseudo_loss``           ``gce|bce|sce|ce`` (gce)         loss on ``pseudo`` labels (``final``: CE)
``q``                     (0, 1] (0.7)                     GCE exponent
``beta``                  > 0 (0.001)                      β-CE exponent
``alpha``, ``gamma``      > 0 (0.01, 1.0)                  SCE weights of CE and RCE
``use_pseudo``            ``true|false`` (false)           false: teacher (``final`` only);
                                                           true: student (``final`` + ``pseudo``)
``device``                ``auto|cpu|cuda`` (auto)         auto: CUDA when present, else CPU
``max_epochs``            int ≥ 1 (50, tiny 4)             training epochs per train request
``val_split``             [0, 1) (0.2)                     share of ``final`` cases held out for validation;
                                                           a case's side is fixed by SHA-256(seed, id), so
                                                           new labels never move an earlier case
``model_dir``             path (``<app>/model``)           where the served checkpoint lives
``seed``                  int (0)                          seed of splits, initialisation, training
``mode``                  ``union|robust_all|per_source``  how ``final`` (CE) and ``pseudo`` (robust loss)
                          (union)                          terms are weighted: one mean over the batch;
                                                           the robust loss on every item (seed's
                                                           train_cv.py); 1:1 batches, per-source means
                                                           added (seed's train_2losses.py)
``auto_update_scoring``   ``true|false`` (false)           MONAI Label's re-scoring after every train
                                                           and next-sample request (see ``main.py``)
``allow_final_delete``    ``true|false`` (false)           let admins delete ``final`` labels (moved to
                                                           ``labels/final_deleted/``, never unlinked)
``max_upload_voxels``     int ≥ 1 (4·256³ = 67 108 864)    cap on an uploaded image's voxels (header)
``max_upload_bytes``      int ≥ 1 (512 MiB)                cap on an upload's file size and on its
                                                           decompressed voxel data (header)
``cors_origins``          origins, comma-separated ("")    browser origins allowed besides the server's
                                                           own (MONAI Label 0.8.5's start_server crashes
                                                           when MONAI_LABEL_CORS_ORIGINS is set; see
                                                           lib/server_guards.py)
``allowed_hosts``         names, comma-separated ("")      ``Host`` names the server answers besides its
                                                           own address and loopback (``name`` or
                                                           ``name:port``; e.g. a reverse proxy's name)
``sessions``              ``true|false`` (false)           serve MONAI Label's ``/session`` uploads
                                                           (capped, in the temp folder: lib/sessions.py)
========================  ===============================  ==========================================

q, β, α, γ default to the seed paper's BraTS values (``robustlabel.losses.PAPER_HPARAMS``); their
domains are the loss library's (each value is checked by building its loss).

Every request the app serves is parsed here, once:

* a **train** request (:func:`parse_train_request`) may override ``pseudo_loss``, ``q``, ``beta``,
  ``alpha``, ``gamma``, ``use_pseudo``, ``max_epochs``, ``val_split``, ``seed`` and ``mode``
  (:data:`TRAIN_OVERRIDES`), and sets the run options ``train_batch_size``, ``learning_rate``,
  ``val_interval``, ``num_workers`` (:func:`train_defaults`), ``device`` and
  ``multi_gpu``/``gpus``/``ranks`` (:func:`plan_ranks`);
* a **pool** request (``/batch/infer``, :func:`parse_pool_request`): ``model``, ``images``,
  ``label_tag`` (always ``pseudo``), ``batch_size``, ``num_workers``, ``max_batch_size``,
  ``cpu_bf16`` (true/false), ``device`` and the rank options;
* an **infer** request's sliding window (:func:`parse_sliding_window`).

The app validates train and pool requests in the server before MONAI Label starts their
subprocess, so a bad value is answered at once: **422** naming the field for a value of the wrong
kind (not a number, not true/false, not one of the choices: :class:`~lib.errors.InvalidOptionError`),
**400** naming the field for a value of the right kind outside its range.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import torch
from robustlabel.engine.config import TrainConfig
from robustlabel.engine.inference import BLEND_MODES, POOL_WINDOWS, WindowSettings
from robustlabel.losses import PAPER_HPARAMS, get_loss
from robustlabel.losses.source_aware import SOURCE_MODES
from robustlabel.machine import resolve_device

from .datastore import PSEUDO, check_label_tag
from .errors import AppRequestError, InvalidOptionError
from .names import check_image_id, check_model_name

logger = logging.getLogger(__name__)

#: models this app can serve
AVAILABLE_MODELS: tuple[str, ...] = ("transbts",)
#: robust losses a pseudo-label may be trained with, and the hyper-parameters each one takes
PSEUDO_LOSSES: dict[str, tuple[str, ...]] = {**{loss: tuple(params) for loss, params in PAPER_HPARAMS["brats"].items()}, "ce": ()}
#: hyper-parameter -> the loss that takes it (its domain is that loss's)
LOSS_OF_PARAM: dict[str, str] = {param: loss for loss, params in PSEUDO_LOSSES.items() for param in params}
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
#: keys a train request may override
TRAIN_OVERRIDES: tuple[str, ...] = (
    "pseudo_loss", "q", "beta", "alpha", "gamma", "use_pseudo", "max_epochs", "val_split", "seed", "mode",
)
#: the ``images`` values of a batch-infer request (MONAI Label's ``BatchInferImageType``)
IMAGE_SELECTIONS: tuple[str, ...] = ("all", "labeled", "unlabeled")

_BRATS = PAPER_HPARAMS["brats"]
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def parse_bool(key: str, value: Any) -> bool:
    """``true/false/1/0/yes/no/on/off`` (any case) or a bool.

    Raises:
        InvalidOptionError: (422) anything else, naming ``key``.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidOptionError(f"{key}: expected true or false, got {value!r}")


def parse_number(key: str, value: Any, kind: type = float, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False) -> Any:
    """``kind(value)`` checked against ``[lo, hi]`` (``lo_open``/``hi_open`` exclude the ends).

    Raises:
        InvalidOptionError: (422) not an integer / not a number (NaN included, and a bool).
        AppRequestError: (400) outside the range.
    """
    try:
        if isinstance(value, bool):
            raise TypeError("a bool is not a number")
        number = kind(str(value).strip()) if kind is int else kind(value)
    except (TypeError, ValueError):
        raise InvalidOptionError(f"{key}: expected {'an integer' if kind is int else 'a number'}, got {value!r}") from None
    if number != number:  # NaN
        raise InvalidOptionError(f"{key}: expected a number, got {value!r}")
    too_low = lo is not None and (number < lo or (lo_open and number == lo))
    too_high = hi is not None and (number > hi or (hi_open and number == hi))
    if too_low or too_high:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise AppRequestError(f"{key}: {number} is outside {left}{lo if lo is not None else '-inf'}, "
                              f"{hi if hi is not None else 'inf'}{right}")
    return number


def parse_roi_size(value: Any) -> tuple[int, int, int]:
    """``128``, ``"128"``, ``"[128, 128, 96]"``, ``"128,128,96"`` or a sequence → 3 multiples of 8."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text if text.startswith("[") else f"[{text}]")
        except json.JSONDecodeError:
            raise InvalidOptionError(f"roi_size: expected 1 or 3 integers, got {text!r}") from None
    sizes = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(sizes) == 1:
        sizes = sizes * 3
    if len(sizes) != 3:
        raise InvalidOptionError(f"roi_size: expected 1 or 3 integers, got {value!r}")
    roi = tuple(parse_number("roi_size", s, int, lo=8) for s in sizes)
    if any(s % 8 for s in roi):
        raise AppRequestError(f"roi_size: every size must be a multiple of 8 (TransBTS downsamples ×8), got {roi}")
    return roi  # type: ignore[return-value]


def parse_choice(key: str, value: Any, choices: Any) -> str:
    """``value`` (stripped, lower case) if it is one of ``choices``; :class:`InvalidOptionError` (422) otherwise."""
    choice = str(value).strip().lower()
    if choice not in choices:
        raise InvalidOptionError(f"{key}: expected one of {list(choices)}, got {value!r}")
    return choice


def parse_loss_param(key: str, value: Any) -> float:
    """A robust-loss hyper-parameter (``q``, ``beta``, ``alpha``, ``gamma``): a number in the domain of
    the loss that takes it, which the loss library checks (:func:`robustlabel.losses.get_loss`).

    Raises:
        InvalidOptionError: (422) not a number.
        AppRequestError: (400) outside the loss's domain, e.g. ``q`` outside (0, 1].
    """
    number = float(parse_number(key, value))
    try:
        get_loss(LOSS_OF_PARAM[key], **{key: number})
    except ValueError as exc:
        raise AppRequestError(f"{key}: {exc}") from None
    return number


def parse_origins(value: Any) -> tuple[str, ...]:
    """``"http://a:1,https://b"``, a JSON list or a sequence → normalised ``scheme://host[:port]`` origins."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
        except json.JSONDecodeError:
            raise AppRequestError(f"cors_origins: expected comma-separated origins or a JSON list, got {text!r}") from None
    origins = []
    for origin in value or ():
        parts = urlsplit(str(origin).strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") or parts.query:
            raise AppRequestError(f"cors_origins: {origin!r} is not an origin such as http://127.0.0.1:8000")
        origins.append(f"{parts.scheme}://{parts.netloc.lower()}")
    return tuple(origins)


def parse_hosts(value: Any) -> tuple[str, ...]:
    """``"a.example,b.example:8000"`` or a sequence → lower-case ``Host`` names (``name`` or ``name:port``)."""
    names = [v for v in value.split(",")] if isinstance(value, str) else list(value or ())
    hosts = []
    for name in (str(n).strip().lower() for n in names):
        if not name:
            continue
        try:
            parts = urlsplit(f"//{name}")
            valid = bool(parts.hostname) and not parts.path and not parts.query and parts.username is None
            port = parts.port
        except ValueError:
            valid, port = False, None
        if not valid or "*" in name:
            raise AppRequestError(f"allowed_hosts: {name!r} is not a host name such as labelling.example or "
                                  f"labelling.example:8000")
        hosts.append(f"{parts.hostname}:{port}" if port is not None else str(parts.hostname))
    return tuple(hosts)


def parse_device(value: Any) -> str:
    """``auto`` | ``cpu`` | ``cuda``; ``cuda`` without a CUDA device is an error."""
    device = parse_choice("device", value, DEVICES)
    try:
        resolve_device(device)
    except ValueError as exc:
        raise AppRequestError(f"device: {exc}") from None
    return device


@dataclass(frozen=True)
class LossSettings:
    """How pseudo-labels are trained: ``pseudo_loss`` and its hyper-parameters."""

    pseudo_loss: str = "gce"
    q: float = _BRATS["gce"]["q"]
    beta: float = _BRATS["bce"]["beta"]
    alpha: float = _BRATS["sce"]["alpha"]
    gamma: float = _BRATS["sce"]["gamma"]

    def loss_params(self) -> dict[str, float]:
        """The hyper-parameters of :attr:`pseudo_loss` only, e.g. ``{"q": 0.7}`` for GCE."""
        return {name: getattr(self, name) for name in PSEUDO_LOSSES[self.pseudo_loss]}


@dataclass(frozen=True)
class AppConf(LossSettings):
    """Parsed and validated app options (see the module docstring)."""

    models: tuple[str, ...] = AVAILABLE_MODELS
    tiny: bool = False
    roi_size: tuple[int, int, int] = (128, 128, 128)
    use_pseudo: bool = False
    device: str = "auto"
    max_epochs: int = 50
    val_split: float = 0.2
    model_dir: str = ""
    seed: int = 0
    auto_update_scoring: bool = False
    mode: str = "union"
    allow_final_delete: bool = False
    #: caps on an uploaded image (lib/uploads.py): a BraTS case is 4 x 240 x 240 x 155 = 35.7 M voxels
    max_upload_voxels: int = 4 * 256**3
    max_upload_bytes: int = 512 * 2**20
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    sessions: bool = False

    def resolved_device(self, requested: str | None = None) -> str:
        """The torch device to run on: the conf's unless it is ``auto``, then the request's
        (MONAI Label sends a device name or ``cuda``/``cpu``), then CUDA if present, else CPU."""
        if self.device != "auto":
            return self.device
        if requested and str(requested).startswith("cuda") and torch.cuda.is_available():
            return str(requested)
        if requested == "cpu":
            return "cpu"
        return str(resolve_device("auto"))

    def with_overrides(self, request: Mapping[str, Any]) -> AppConf:
        """A copy with the train-request overrides in ``request`` applied and validated."""
        overrides = {k: request[k] for k in TRAIN_OVERRIDES if given(request, k, None) is not None}
        return parse_conf({**self.as_conf(), **overrides}, default_model_dir=self.model_dir)

    def as_conf(self) -> dict[str, Any]:
        """The options as a ``--conf`` style dict (round-trips through :func:`parse_conf`)."""
        out = dataclasses.asdict(self)
        out["models"] = ",".join(self.models)
        out["roi_size"] = list(self.roi_size)
        return out


#: every key parse_conf reads (one per AppConf field)
KNOWN_KEYS: frozenset[str] = frozenset(f.name for f in dataclasses.fields(AppConf))


def parse_conf(conf: Mapping[str, Any], default_model_dir: str) -> AppConf:
    """Validate the ``--conf`` dict; raise :class:`AppRequestError` (a ``ValueError``) naming the key.

    ``default_model_dir`` is used when ``conf`` has no ``model_dir`` (MONAI Label: ``<app>/model``).
    Keys that are not options (:data:`KNOWN_KEYS`) are logged and ignored.
    """
    unknown_keys = sorted(set(conf) - KNOWN_KEYS)
    if unknown_keys:
        logger.warning(f"Ignoring unknown --conf key(s) {unknown_keys}; known keys: {sorted(KNOWN_KEYS)}")
    tiny = parse_bool("tiny", conf.get("tiny", False))
    models_text = str(conf.get("models", "transbts"))
    models = tuple(m.strip().lower() for m in models_text.split(",") if m.strip())
    if "all" in models:
        models = AVAILABLE_MODELS
    unknown = [m for m in models if m not in AVAILABLE_MODELS]
    if unknown or not models:
        raise InvalidOptionError(f"models: unknown model(s) {unknown or models_text!r}; available: {list(AVAILABLE_MODELS)}")
    default_roi = 32 if tiny else 128
    model_dir = str(conf.get("model_dir") or default_model_dir)
    parsed = AppConf(
        pseudo_loss=parse_choice("pseudo_loss", conf.get("pseudo_loss", LossSettings.pseudo_loss), PSEUDO_LOSSES),
        **{key: parse_loss_param(key, conf.get(key, getattr(LossSettings, key))) for key in LOSS_OF_PARAM},
        models=models,
        tiny=tiny,
        roi_size=parse_roi_size(conf.get("roi_size", default_roi)),
        use_pseudo=parse_bool("use_pseudo", conf.get("use_pseudo", False)),
        device=parse_device(conf.get("device", "auto")),
        max_epochs=parse_number("max_epochs", conf.get("max_epochs", 4 if tiny else 50), int, lo=1),
        val_split=parse_number("val_split", conf.get("val_split", 0.2), lo=0, hi=1, hi_open=True),
        model_dir=os.path.abspath(model_dir),
        seed=parse_number("seed", conf.get("seed", 0), int, lo=0),
        auto_update_scoring=parse_bool("auto_update_scoring", conf.get("auto_update_scoring", False)),
        allow_final_delete=parse_bool("allow_final_delete", conf.get("allow_final_delete", False)),
        max_upload_voxels=parse_number("max_upload_voxels", conf.get("max_upload_voxels", AppConf.max_upload_voxels), int, lo=1),
        max_upload_bytes=parse_number("max_upload_bytes", conf.get("max_upload_bytes", AppConf.max_upload_bytes), int, lo=1),
        cors_origins=parse_origins(conf.get("cors_origins", "")),
        allowed_hosts=parse_hosts(conf.get("allowed_hosts", "")),
        sessions=parse_bool("sessions", conf.get("sessions", False)),
        mode=parse_choice("mode", conf.get("mode", SOURCE_MODES[0]), SOURCE_MODES),
    )
    return parsed


def given(request: Mapping[str, Any], key: str, default: Any) -> Any:
    """``request[key]``, or ``default`` when the request leaves it out (missing, ``None`` or ``""``)."""
    value = request.get(key)
    return default if value is None or value == "" else value


def train_defaults(conf: AppConf) -> dict[str, Any]:
    """The run options of a train request when it leaves them out (also shown by ``/info``)."""
    return {
        "train_batch_size": 2 if conf.tiny else TrainConfig.batch_size,
        "learning_rate": TrainConfig.lr,
        "val_interval": 1 if conf.max_epochs <= 20 else 10,
        "num_workers": 0 if conf.tiny else 4,
    }


@dataclass(frozen=True)
class TrainRequest:
    """A validated train request: the app options with the request's overrides, and the run's own options."""

    conf: AppConf
    batch_size: int
    learning_rate: float
    val_interval: int
    num_workers: int
    device: str
    ranks: int = 1
    gpus: tuple[int, ...] | None = None


def parse_train_request(conf: AppConf, request: Mapping[str, Any]) -> TrainRequest:
    """Parse a (merged) train request against the app options ``conf`` (module docstring).

    Raises:
        InvalidOptionError: (422) a value of the wrong kind, naming the field.
        AppRequestError: (400) a value outside its range, naming the field.
    """
    conf = conf.with_overrides(request)
    defaults = train_defaults(conf)
    device = conf.resolved_device(request.get("device"))
    ranks, gpus = plan_ranks(request, device)
    return TrainRequest(
        conf=conf,
        batch_size=parse_number("train_batch_size", given(request, "train_batch_size", defaults["train_batch_size"]),
                                int, lo=1),
        learning_rate=parse_number("learning_rate", given(request, "learning_rate", defaults["learning_rate"]),
                                   lo=0, lo_open=True),
        val_interval=parse_number("val_interval", given(request, "val_interval", defaults["val_interval"]), int, lo=1),
        num_workers=parse_number("num_workers", given(request, "num_workers", defaults["num_workers"]), int, lo=0),
        device=device,
        ranks=ranks,
        gpus=None if gpus is None else tuple(gpus),
    )


@dataclass(frozen=True)
class PoolRequest:
    """A validated ``/batch/infer`` request (pool pseudo-labelling)."""

    model: str
    device: str
    batch_size: int = 2
    #: ``None``: the engine's default (loader workers with CUDA, none on CPU)
    num_workers: int | None = None
    #: label at most this many pool images (0: all)
    max_batch_size: int = 0
    ranks: int = 1
    gpus: tuple[int, ...] | None = None
    #: bf16 on a CPU with native bf16 (the pool's default, :data:`robustlabel.engine.inference.POOL_WINDOWS`)
    cpu_bf16: bool = POOL_WINDOWS.cpu_bf16

    def labeller_options(self) -> dict[str, Any]:
        """The :class:`~robustlabel.engine.pseudo_label.PseudoLabeller` options of this request."""
        return {"batch_size": self.batch_size, "num_workers": self.num_workers,
                "windows": POOL_WINDOWS.replace(cpu_bf16=self.cpu_bf16)}


def parse_pool_request(conf: AppConf, request: Mapping[str, Any], models: list[str]) -> PoolRequest:
    """Parse a (merged) ``/batch/infer`` request: ``model`` one of ``models``; ``images`` one of
    :data:`IMAGE_SELECTIONS` or a list of image ids; ``label_tag`` a plain tag, and ``pseudo``;
    the run options as in the module docstring.

    Raises:
        AppRequestError: 404 for an unknown model, 422 for a bad name or a value of the wrong kind,
            400 for a value outside its range, each naming the field.
    """
    model = check_model_name(request.get("model"), models)
    images = request.get("images", "all")
    images = getattr(images, "value", images)
    if isinstance(images, (list, tuple)):
        for i, image_id in enumerate(images):
            check_image_id(image_id, f"images[{i}]")
    elif images not in IMAGE_SELECTIONS:
        raise InvalidOptionError(f"images: expected one of {list(IMAGE_SELECTIONS)} or a list of image ids, got {images!r}")
    tag = check_label_tag(request.get("label_tag") or PSEUDO, "label_tag")
    if tag != PSEUDO:
        raise InvalidOptionError(f"label_tag: pool pseudo-labels are stored under tag {PSEUDO!r}, not {tag!r}")
    device = conf.resolved_device(request.get("device"))
    ranks, gpus = plan_ranks(request, device)
    workers = request.get("num_workers")
    return PoolRequest(
        model=model,
        device=device,
        batch_size=parse_number("batch_size", given(request, "batch_size", PoolRequest.batch_size), int, lo=1),
        num_workers=None if workers is None else parse_number("num_workers", workers, int, lo=0),
        max_batch_size=parse_number("max_batch_size", given(request, "max_batch_size", 0), int, lo=0),
        ranks=ranks,
        gpus=None if gpus is None else tuple(gpus),
        cpu_bf16=parse_bool("cpu_bf16", given(request, "cpu_bf16", PoolRequest.cpu_bf16)),
    )


#: ``crop_margin`` values of an infer request that switch the crop off
NO_CROP: frozenset[str] = frozenset({"none", "null", "off", "false", "no"})


def parse_sliding_window(request: Mapping[str, Any], defaults: WindowSettings) -> WindowSettings:
    """The sliding window of an infer request (:class:`~robustlabel.engine.inference.WindowSettings`).

    ``sw_stock: true`` gives today's settings whatever the other (still validated) keys say
    (:meth:`WindowSettings.stock`: no crop, overlap 0.5, Gaussian blending, on the CPU float32 and
    the contiguous layout, one window per forward unless the request gives ``sw_batch_size``; the
    benchmarks' fixed baseline).  Otherwise each of ``sw_overlap`` (a number in [0, 1)),
    ``sw_blend`` (``gaussian`` | ``constant``), ``crop_margin`` (an int ≥ 0, or ``none``/``off``/
    ``false``: no crop), ``crop_align`` and ``cpu_bf16`` (true/false: bf16 on CPUs with native bf16)
    overrides ``defaults`` where given.

    Raises:
        InvalidOptionError: (422) a value of the wrong kind, naming the field.
        AppRequestError: (400) a value outside its range, naming the field.
    """
    stock = parse_bool("sw_stock", given(request, "sw_stock", False))
    default_batch = WindowSettings.stock().sw_batch_size if stock else defaults.sw_batch_size
    sw_batch_size = parse_number("sw_batch_size", given(request, "sw_batch_size", default_batch), int, lo=1)
    # every option is checked, also under ``sw_stock`` (which then ignores them): a bad value is always a 4xx
    blend = parse_choice("sw_blend", given(request, "sw_blend", defaults.blend), BLEND_MODES)
    margin = given(request, "crop_margin", defaults.crop_margin)
    if margin is False or (isinstance(margin, str) and margin.strip().lower() in NO_CROP):
        margin = None
    elif margin is not None:
        margin = parse_number("crop_margin", margin, int, lo=0)
    windows = defaults.replace(  # fields a request cannot set (the layout) stay the defaults'
        sw_batch_size=sw_batch_size,
        overlap=parse_number("sw_overlap", given(request, "sw_overlap", defaults.overlap), lo=0, hi=1, hi_open=True),
        crop_margin=margin,
        crop_align=parse_bool("crop_align", given(request, "crop_align", defaults.crop_align)),
        blend=blend,
        cpu_bf16=parse_bool("cpu_bf16", given(request, "cpu_bf16", defaults.cpu_bf16)),
    )
    return WindowSettings.stock(sw_batch_size) if stock else windows


def plan_ranks(request: Mapping[str, Any], device: str) -> tuple[int, list[int] | None]:
    """``(ranks, GPU ids or None)`` of a train or ``/batch/infer`` request.

    ``ranks: N`` asks for ``N`` ranks (gloo on CPU; on CUDA one GPU each, GPUs ``0…N−1``);
    ``multi_gpu: true`` for one rank per visible GPU, or per GPU named by ``gpus`` (``"all"`` or
    ``"0,1"``); without CUDA ``multi_gpu`` means one process (logged).

    Raises:
        InvalidOptionError: (422) a malformed ``ranks``, ``multi_gpu`` or ``gpus``.
        AppRequestError: (400) ``ranks`` < 1, or GPUs asked for that are not visible.
    """
    cuda = str(device).startswith("cuda") and torch.cuda.is_available()
    count = torch.cuda.device_count() if cuda else 0
    if request.get("ranks") not in (None, ""):
        ranks = int(parse_number("ranks", request["ranks"], int, lo=1))
        if cuda and ranks > 1:
            if ranks > count:
                raise AppRequestError(f"ranks: {ranks} ranks on CUDA need {ranks} GPUs, {count} visible")
            return ranks, list(range(ranks))
        return ranks, None
    if not parse_bool("multi_gpu", given(request, "multi_gpu", False)):
        return 1, None
    if not cuda:
        logger.info("multi_gpu requested without CUDA: one process (ranks=N starts N gloo CPU ranks)")
        return 1, None
    gpus = str(request.get("gpus") or "all").strip()
    if gpus == "all":
        ids = list(range(count))
    else:
        try:
            ids = [int(g) for g in gpus.split(",") if g.strip()]
        except ValueError:
            raise InvalidOptionError(f"gpus: expected 'all' or GPU ids like '0,1', got {gpus!r}") from None
    bad = [g for g in ids if not 0 <= g < count]
    if not ids or bad or len(set(ids)) != len(ids):
        raise AppRequestError(f"gpus: {gpus!r} does not name distinct visible GPUs (0..{count - 1})")
    return len(ids), ids
