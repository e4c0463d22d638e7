"""Guards the app installs on MONAI Label's FastAPI server (0.8.5) when it starts in server mode.

Each one fixes something that cannot be fixed in the datastore or the app's task methods, because
it happens in MONAI Label's FastAPI layer before or after them:

1. **Cross-origin requests** (:class:`SafetyMiddleware`).  MONAI Label's CORS middleware allows
   ``*`` with credentials when ``MONAI_LABEL_CORS_ORIGINS`` is unset.  CORS only decides what a
   browser may *read*: a "simple" cross-site ``POST`` (``/infer``, ``/batch/infer``, form uploads)
   is sent without a preflight and runs anyway.  So a web page open in the clinician's browser
   could drive a server on 127.0.0.1.  Any request whose ``Origin`` header is neither the
   server's own origin nor listed in ``MONAI_LABEL_CORS_ORIGINS`` is answered 403 before it
   reaches an endpoint (``--conf cors_origins`` adds origins, see :func:`install`).  3D Slicer and scripts send no ``Origin`` and are unaffected.  The
   server's own origin counts only when the ``Host`` header names the server's address or a
   loopback name, so a DNS-rebinding page cannot pass as same-origin.
2. **Uploads** (:class:`SafetyMiddleware` + :mod:`lib.uploads`): a request to an upload path
   whose ``Content-Length`` exceeds ``max_upload_bytes`` is refused (413) before its body is
   read, and every temporary file a request made is removed when it ends, on success and on
   every error.
3. **Token validation** (:func:`current_user`, a FastAPI dependency override of MONAI Label's
   ``get_current_user``).  MONAI Label's ``from_token`` calls ``jwt.decode(token, key,
   options=...)`` without ``algorithms=``; the pinned PyJWT refuses that, so with
   ``MONAI_LABEL_AUTH_ENABLE=true`` every valid RS256 token was answered 401.  The override
   verifies the signature with ``algorithms=["RS256"]`` (and expiry) against the realm's public
   key, fetched by MONAI Label's own cached ``get_public_key``.
4. **Role fixes** (:data:`STRICTER_ROLES`, checked in the same dependency).  ``PUT`` and
   ``DELETE /model/{model}`` say "admin" in their summaries but depend on the annotator role;
   here they need admin, as does the full-dataset download.  All other roles are MONAI Label's.
5. **Background requests** (:func:`guard_async_tasks`).  ``/train`` and ``/batch/infer`` merge
   the request's ``params`` and start a subprocess; an invalid request used to fail there, out of
   sight.  ``AsyncTask.run`` is wrapped so that the merged request is validated by the app in
   the server first, and a bad name is a 4xx naming the field.

The guards are installed from :meth:`BratsApp.server_mode` (the app is created inside the
server's lifespan, after its middleware stack was built, so the middleware wraps that stack).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import jwt
from fastapi import Depends, HTTPException, Request, status
from monailabel.config import settings
from monailabel.endpoints.user.auth import User, get_public_key, oauth2_scheme
from starlette.types import ASGIApp, Receive, Scope, Send

from . import uploads
from .errors import AppRequestError

logger = logging.getLogger(__name__)

#: (method, path prefix) -> role, where the app is stricter than MONAI Label 0.8.5 (see 4. above)
STRICTER_ROLES: tuple[tuple[str, str, str], ...] = (
    ("PUT", "/model/", settings.MONAI_LABEL_AUTH_ROLE_ADMIN),
    ("DELETE", "/model/", settings.MONAI_LABEL_AUTH_ROLE_ADMIN),
    ("GET", "/datastore/dataset", settings.MONAI_LABEL_AUTH_ROLE_ADMIN),
)
LOOPBACK_NAMES: frozenset[str] = frozenset({"localhost", "127.0.0.1", "::1"})


#: origins allowed by the app's ``--conf cors_origins`` (set by :func:`install`)
_conf_origins: set[str] = set()


def allowed_origins() -> set[str]:
    """``MONAI_LABEL_CORS_ORIGINS`` and ``--conf cors_origins``, normalised (scheme://host[:port])."""
    return {normalise_origin(str(o)) for o in settings.MONAI_LABEL_CORS_ORIGINS} | _conf_origins


def normalise_origin(origin: str) -> str:
    parts = urlsplit(origin.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def own_origin(scope: Scope) -> str | None:
    """``scheme://Host`` when the ``Host`` header names this server (its address or loopback)."""
    headers = dict(scope.get("headers") or [])
    host_header = headers.get(b"host", b"").decode("latin-1").strip().lower()
    if not host_header:
        return None
    hostname = urlsplit(f"//{host_header}").hostname or ""
    server = scope.get("server") or ("", None)
    if hostname != str(server[0]).lower() and not _is_loopback(hostname):
        return None
    return f"{scope.get('scheme', 'http')}://{host_header}"


def origin_allowed(scope: Scope) -> tuple[bool, str | None]:
    """``(allowed, origin)`` for an HTTP request: no ``Origin`` header, the server's own, or a listed one."""
    headers = dict(scope.get("headers") or [])
    raw = headers.get(b"origin")
    if raw is None:
        return True, None
    origin = raw.decode("latin-1")
    if origin.lower() == "null":
        return False, origin
    normalised = normalise_origin(origin)
    return normalised in allowed_origins() or normalised == own_origin(scope), origin


#: path prefixes whose request bodies are image/label uploads, capped by ``max_upload_bytes``
UPLOAD_PATHS: tuple[str, ...] = ("/datastore", "/infer", "/session")
#: room for the multipart framing and form fields around the uploaded file
MULTIPART_MARGIN_BYTES = 1 << 20


class SafetyMiddleware:
    """ASGI middleware: refuse foreign ``Origin`` (403) and oversized uploads (413, from
    ``Content-Length``, before the body is read); remove every temporary upload afterwards."""

    def __init__(self, app: ASGIApp, max_upload_bytes: int | None = None) -> None:
        self.app = app
        self.max_body = None if max_upload_bytes is None else int(max_upload_bytes) + MULTIPART_MARGIN_BYTES

    async def _refuse(self, send: Send, status_code: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status_code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _too_large(self, scope: Scope) -> int | None:
        """The declared body size when it exceeds the upload cap on an upload path."""
        if self.max_body is None or not scope.get("path", "").startswith(UPLOAD_PATHS):
            return None
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        return int(length) if length.isdigit() and int(length) > self.max_body else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        allowed, origin = origin_allowed(scope)
        if not allowed:
            detail = (f"cross-origin request from {origin!r} refused; allowed: the server's own origin and "
                      f"{sorted(allowed_origins())} (--conf cors_origins)")
            logger.warning(f"{scope.get('method')} {scope.get('path')}: {detail}")
            await self._refuse(send, 403, detail)
            return
        size = self._too_large(scope)
        if size is not None:
            await self._refuse(send, 413, f"request body of {size} bytes is over the upload cap of "
                                          f"{self.max_body - MULTIPART_MARGIN_BYTES} bytes (--conf max_upload_bytes)")
            return
        with uploads.tracked_uploads():
            await self.app(scope, receive, send)


def required_role(method: str, path: str) -> str | None:
    """The role :data:`STRICTER_ROLES` requires for ``method path`` (``None``: MONAI Label's own)."""
    api = settings.MONAI_LABEL_API_STR.rstrip("/")
    if api and path.startswith(api):
        path = path[len(api):]
    for m, prefix, role in STRICTER_ROLES:
        if method == m and path.startswith(prefix):
            return role
    return None


def token_roles(payload: dict[str, Any]) -> list[str]:
    """Roles at ``MONAI_LABEL_AUTH_TOKEN_ROLES`` (``a#b`` is ``payload["a"]["b"]``)."""
    node: Any = payload
    for key in settings.MONAI_LABEL_AUTH_TOKEN_ROLES.split("#"):
        node = node.get(key) if isinstance(node, dict) else None
    return [str(r) for r in node] if isinstance(node, list) else []


def decode_token(token: str) -> User:
    """Verify an RS256 access token against the realm's public key; the user it names.

    Raises:
        jwt.InvalidTokenError: bad signature, expired, malformed, or another algorithm.
    """
    key = get_public_key(settings.MONAI_LABEL_AUTH_REALM_URI)
    payload = jwt.decode(token, key, algorithms=["RS256"], options={"verify_aud": False, "verify_exp": True,
                                                                     "require": ["exp"]})
    return User(
        username=str(payload.get(settings.MONAI_LABEL_AUTH_TOKEN_USERNAME) or ""),
        email=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_EMAIL),
        name=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_NAME),
        roles=token_roles(payload),
    )


async def current_user(request: Request, token: str = Depends(oauth2_scheme)) -> User:
    """Override of MONAI Label's ``get_current_user`` (see 3. and 4. in the module docstring)."""
    try:
        user = decode_token(token)
    except jwt.InvalidTokenError as exc:
        logger.warning(f"{request.method} {request.url.path}: token refused ({exc})")
        raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail=f"Could not validate credentials: {exc}",
                            headers={"WWW-Authenticate": "Bearer"}) from None
    role = required_role(request.method, request.url.path)
    if role is not None and role not in user.roles:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN,
                            detail=f'Role "{role}" is required to perform this action')
    return user


def guard_async_tasks(validate: Callable[[str, dict[str, Any]], None]) -> None:
    """Wrap ``AsyncTask.run`` so that ``validate(method, merged request)`` runs in the server first."""
    from monailabel.utils.async_tasks.task import AsyncTask

    original = AsyncTask.run
    if getattr(original, "_robustlabel_guarded", False):
        return

    def run(method: str, request: dict | None = None, params: dict | None = None, force_sync: bool = False,
            enqueue: bool = False) -> Any:
        from monailabel.interfaces.utils.app import app_instance

        # the same merge as AsyncTask.run: request, then the app's config for the method, then params
        config = app_instance().info().get("config", {}).get(method, {})
        if params is not None and not isinstance(params, dict):
            raise AppRequestError(f"params: expected a JSON object, got {type(params).__name__}", status_code=422)
        validate(method, {**(request or {}), **config, **(params or {})})
        return original(method, request=request, params=params, force_sync=force_sync, enqueue=enqueue)

    run._robustlabel_guarded = True  # type: ignore[attr-defined]
    AsyncTask.run = staticmethod(run)  # type: ignore[method-assign]


_installed = False


def install(validate_task: Callable[[str, dict[str, Any]], None], cors_origins: tuple[str, ...] = (),
            max_upload_bytes: int | None = None) -> None:
    """Install every guard of the module docstring on the running server (once per process).

    ``cors_origins``: browser origins allowed besides the server's own (``--conf cors_origins``).
    MONAI Label's ``MONAI_LABEL_CORS_ORIGINS`` is honoured too, but 0.8.5's ``start_server`` crashes
    when it is set (it ``json.dumps`` the parsed ``AnyHttpUrl`` list while logging its settings), so
    the app's own key is the way to add an origin with ``monailabel start_server``.
    """
    global _installed
    _conf_origins.update(normalise_origin(o) for o in cors_origins)
    if _installed:
        return
    import monailabel.app as server
    from monailabel.endpoints.user.auth import get_current_user

    fastapi_app = server.app
    if settings.MONAI_LABEL_AUTH_ENABLE:
        fastapi_app.dependency_overrides[get_current_user] = current_user
        logger.info(f"Auth: tokens verified by the app (RS256) against {settings.MONAI_LABEL_AUTH_REALM_URI}")
    uploads.install_upload_tracking(sys.modules)
    guard_async_tasks(validate_task)
    if fastapi_app.middleware_stack is None:
        fastapi_app.add_middleware(SafetyMiddleware, max_upload_bytes=max_upload_bytes)
    else:  # created in the lifespan: the stack is built already, so wrap it (outermost)
        fastapi_app.middleware_stack = SafetyMiddleware(fastapi_app.middleware_stack, max_upload_bytes)
    _installed = True
    logger.info(f"Safety guards installed; CORS origins allowed: own origin + {sorted(allowed_origins())}")
