"""``GuardedApp``: the app's request checks, mixed into MONAI Label's ``MONAILabelApp`` (README "Safety and access").

``BratsApp`` (``main.py``) only wires its task configs; what keeps a request safe lives in four places,
each check once:

* **here**, the requests MONAI Label hands to the app, after it merged their ``params``:

  - ``/infer`` (:meth:`GuardedApp.validate_infer_request`, before any compute): ``model`` served;
    ``image`` a datastore id, or a file the server itself made for this request (an upload) or a
    session image; ``label`` only such an upload; ``label_tag`` a plain tag; ``save_label``
    true/false.  (The infer task parses its sliding-window options with
    :func:`lib.conf.parse_sliding_window` before it loads anything.)  A model output
    is never stored under ``final``: the datastore refuses it (409) when MONAI Label saves the
    result (``lib/datastore.py``, the one check of it);
  - ``/train``, ``/batch/infer``, ``/scoring`` (:meth:`GuardedApp.validate_task_request`), run in
    the server by ``lib/server_guards.py`` before MONAI Label starts the task's subprocess, so a
    bad value is a 4xx naming the field; the values themselves are parsed by ``lib/conf.py``,
    which the task calls again in its subprocess to get them;
  - ``/activelearning``: an unknown strategy is a 404 naming it (stock: a bare 500);
* ``lib/conf.py``: every option value, at start-up and per request;
* ``lib/datastore.py``: the datastore's own methods (names, paths, ``final`` write-once, atomic
  writes), which also serve MONAI Label's ``/datastore`` endpoints;
* ``lib/server_guards.py``: the FastAPI-level guards, installed by :meth:`GuardedApp.server_mode`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any

from monailabel.config import settings
from monailabel.interfaces.datastore import Datastore

from . import server_guards, uploads
from .conf import AppConf, parse_bool, parse_pool_request, parse_train_request
from .datastore import BratsDatastore, check_label_tag
from .errors import AppRequestError, InvalidNameError
from .infers.transbts import RESULT_DIR_KEY
from .lifeline import mark_server_process
from .names import check_model_name, is_inside
from .scoring.pseudo_confidence import PseudoConfidence
from .sessions import CappedSessions

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # a type checker sees the MONAILabelApp the mixin is combined with
    from monailabel.interfaces.app import MONAILabelApp as _AppBase
else:
    _AppBase = object


class GuardedApp(_AppBase):
    """The checks of the module docstring and the app's :class:`~lib.datastore.BratsDatastore`, as a
    mixin: ``class BratsApp(GuardedApp, MONAILabelApp)``.  (MONAI Label finds the app class in
    ``main.py`` as the class whose *direct* base is ``MONAILabelApp``, so this cannot be a subclass
    of it in between.)  The app sets :attr:`app_conf` before calling ``MONAILabelApp.__init__``."""

    app_conf: AppConf

    def init_datastore(self) -> Datastore:
        """The studies folder as a :class:`BratsDatastore`; a datastore rebuilt from the files on disk
        (its file was corrupt) gets the pool's scores back."""
        if self.studies.startswith(("http://", "https://")):
            raise AppRequestError(f"this app needs a local studies folder built by `robustlabel import-brats`, got {self.studies}")
        logger.info(f"Init BraTS datastore for: {self.studies}")
        datastore = BratsDatastore(
            self.studies,
            allow_final_delete=self.app_conf.allow_final_delete,
            max_upload_voxels=self.app_conf.max_upload_voxels,
            max_upload_bytes=self.app_conf.max_upload_bytes,
            extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )
        if datastore.recovered:
            PseudoConfidence()({"method": "pseudo_confidence"}, datastore)
        return datastore

    def server_mode(self, mode: bool) -> None:
        """MONAI Label calls this in the server once the app exists: install the server guards
        (lib/server_guards.py: origin check, upload clean-up, token and role fixes, validation of
        background requests) and export the server's pid so that its subprocesses die with it."""
        super().server_mode(mode)
        if mode:
            mark_server_process()
            conf = self.app_conf
            server_guards.install(self.validate_task_request, conf.cors_origins, conf.max_upload_bytes,
                                  conf.allowed_hosts, conf.sessions)

    def _load_sessions(self, load: bool = False) -> CappedSessions | None:
        """MONAI Label's sessions only with ``--conf sessions true``, then capped (lib/sessions.py)."""
        if not (load and self.app_conf.sessions):
            return None
        return CappedSessions.from_settings(self.app_conf.max_upload_bytes)

    # ------------------------------------------------------------------ request checks
    def validate_infer_request(self, request: dict[str, Any], datastore: Datastore | None = None) -> None:
        """Check an infer request after MONAI Label merged its ``params`` (HTTP 4xx naming the field)."""
        check_model_name(request.get("model"), self._infers)
        image = request.get("image")
        session_image = self._is_session_image(request)
        if session_image and not os.path.isfile(image):
            raise InvalidNameError(f"session_id: the session holds a folder, not one NIfTI image ({image})")
        if not (uploads.is_server_upload(image) or session_image):
            store = datastore or self.datastore()
            if not isinstance(store, BratsDatastore):
                raise AppRequestError("this app needs its local studies datastore")
            store.require_image(image, "image")
        label = request.get("label")
        if label not in (None, "") and not uploads.is_server_upload(label):
            raise InvalidNameError(f"label: {label!r} is not a file uploaded with this request")
        if request.get("label_tag") not in (None, ""):
            check_label_tag(request["label_tag"], "label_tag")

    def _is_session_image(self, request: dict[str, Any]) -> bool:
        sessions = self.sessions()
        image = request.get("image")
        return (bool(request.get("session")) and sessions is not None and isinstance(image, str)
                and is_inside(image, sessions.store_path))

    def validate_task_request(self, method: str, request: dict[str, Any]) -> None:
        """Validate a background request in the server before MONAI Label starts its subprocess."""
        if method == "train":
            check_model_name(request.get("model"), self._trainers)
            parse_train_request(self.app_conf, request)
        elif method == "batch_infer":
            parse_pool_request(self.app_conf, request, sorted(self._infers))
        elif method == "scoring":
            check_model_name(request.get("method"), self._scoring_methods, "method")

    # ------------------------------------------------------------------ entry points
    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """``MONAILabelApp.infer`` after :meth:`validate_infer_request`, with ``save_label`` parsed to a
        bool (422 unless true/false; the stock method takes any non-empty text, ``"false"`` too, for true)."""
        self.validate_infer_request(request, datastore)
        request = dict(request)
        request["save_label"] = parse_bool("save_label", request.get("save_label", False))
        request.pop(RESULT_DIR_KEY, None)
        if uploads.tracking():
            # the result file goes into a folder this request removes when it ends, on success or
            # error (MONAI Label runs the task in a thread pool, where the request's context -- and
            # so lib.uploads' record -- is not visible; the folder name travels in the request)
            result_dir = tempfile.mkdtemp(prefix="infer_")
            uploads.remove_after_request(result_dir)
            request[RESULT_DIR_KEY] = result_dir
        return super().infer(request, datastore)

    def next_sample(self, request: dict[str, Any]) -> dict[str, Any]:
        """``MONAILabelApp.next_sample`` with a 404 naming an unknown strategy (stock: a bare 500)."""
        check_model_name(request.get("strategy") or "random", self._strategies, "strategy")
        return super().next_sample(request)
