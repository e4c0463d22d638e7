"""Guards the app installs on MONAI Label's FastAPI server (0.8.5) when it starts in server mode.

Each one fixes something that cannot be fixed in the datastore or the app's task methods, because
it happens in MONAI Label's FastAPI layer before or after them:

1. **Foreign Host names** (:class:`SafetyMiddleware`, DNS rebinding).  A web page served from
   ``attacker.example`` whose name is then re-pointed to 127.0.0.1 talks to the server as
   *same-origin*: the browser sends ``Host: attacker.example:<port>`` and no ``Origin`` header on
   a GET, and may read the answer (the dataset ZIP, labels, the model, logs).  Every request whose
   ``Host`` is not the address the connection reached (``-i``), a loopback name (``127.0.0.1``,
   ``localhost``, ``[::1]``) on the server's port, or a name listed in ``--conf allowed_hosts``
   (a reverse proxy's public name) is answered 403 before it reaches an endpoint.  A request
   without a ``Host`` header (HTTP/1.0) passes: browsers always send one, so it cannot come from a
   rebinding page, and a script could send a matching one anyway.
2. **Cross-origin requests** (:class:`SafetyMiddleware`).  MONAI Label's CORS middleware allows
   ``*`` with credentials when ``MONAI_LABEL_CORS_ORIGINS`` is unset.  CORS only decides what a
   browser may *read*: a "simple" cross-site ``POST`` (``/infer``, ``/batch/infer``, form uploads)
   is sent without a preflight and runs anyway.  So a web page open in the clinician's browser
   could drive a server on 127.0.0.1.  Any request whose ``Origin`` header is neither the
   server's own origin nor listed in ``MONAI_LABEL_CORS_ORIGINS`` is answered 403 before it
   reaches an endpoint (``--conf cors_origins`` adds origins, see :func:`install`).  3D Slicer and
   scripts send no ``Origin`` and are unaffected.
3. **Uploads** (:class:`SafetyMiddleware` + :mod:`lib.uploads`): the body of a request to an
   upload path is capped by ``max_upload_bytes``: a declared ``Content-Length`` over the cap is
   refused (413) before the body is read, and the body is counted as it arrives (``receive`` is
   wrapped), so a chunked body without ``Content-Length`` is cut off with 413 as soon as it passes
   the cap instead of being spooled to disk whole.  Every temporary file a request made is removed
   when it ends, on success and on every error.
4. **Sessions** (:class:`SafetyMiddleware`, :mod:`lib.sessions`).  MONAI Label's ``/session``
   endpoints keep uploads in ``~/.cache/monailabel/sessions`` for an hour, uncapped, and
   ``uncompress=true`` inflates any ZIP.  The app serves datastore images, so sessions are off
   unless ``--conf sessions true``; while they are off, ``/session`` and ``/infer?session_id=``
   are answered 403 naming the key, before the body is read.  When on, :class:`lib.sessions.CappedSessions` keeps
   them in the system temp folder, capped (decompressed bytes counted).
5. **Malformed form fields** (:func:`guard_endpoint_inputs`).  The endpoints ``json.loads`` their
   ``params``/``info`` form field and build a temporary name from the upload's file-name suffixes,
   before any app code runs: text that is not a JSON object, or a 400-character suffix, was a bare
   500.  The endpoint functions are wrapped in their modules (the routes call them by module-global
   name) so that such a request is a 422 naming the field.
6. **Token validation** (:func:`current_user`, a FastAPI dependency override of MONAI Label's
   ``get_current_user``).  MONAI Label's ``from_token`` calls ``jwt.decode(token, key,
   options=...)`` without ``algorithms=``; the pinned PyJWT refuses that, so with
   ``MONAI_LABEL_AUTH_ENABLE=true`` every valid RS256 token was answered 401.  The override
   verifies the signature with ``algorithms=["RS256"]`` (and expiry) against the realm's public
   key, fetched by MONAI Label's own cached ``get_public_key``.
7. **Role fixes** (:data:`STRICTER_ROLES`, checked in the same dependency).  ``PUT`` and
   ``DELETE /model/{model}`` say "admin" in their summaries but depend on the annotator role;
   here they need admin, as does the full-dataset download.  All other roles are MONAI Label's.
   Roles do not stack, as in MONAI Label: ``RBAC(role)`` checks that the token lists that one
   role (its own default user, used when auth is off, carries all four), so an admin who also
   annotates needs both roles in the token (a Keycloak composite role does that).
8. **Background requests** (:func:`guard_async_tasks`).  ``/train`` and ``/batch/infer`` merge
   the request's ``params`` and start a subprocess; an invalid request used to fail there, out of
   sight.  ``AsyncTask.run`` is wrapped so that the merged request is validated by the app in
   the server first, and a bad name is a 4xx naming the field.

The guards are installed from :meth:`lib.app_guards.GuardedApp.server_mode` (the app is created
inside the server's lifespan, after its middleware stack was built, so the middleware wraps that
stack).
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
#: ``Host`` names (``name`` or ``name:port``) allowed by ``--conf allowed_hosts`` (set by :func:`install`)
_conf_hosts: set[str] = set()


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


def host_allowed(scope: Scope) -> tuple[bool, str | None]:
    """``(allowed, host)``: whether the ``Host`` header names this server (see 1. in the module docstring).

    Allowed: no ``Host`` header; a name in ``--conf allowed_hosts`` (``name`` for any port,
    ``name:port`` for one); the address the connection reached or a loopback name, on the
    server's port (a ``Host`` without a port means the scheme's default port).
    """
    raw = dict(scope.get("headers") or []).get(b"host")
    if raw is None:
        return True, None
    host = raw.decode("latin-1").strip().lower()
    try:
        parts = urlsplit(f"//{host}")
        hostname, port = parts.hostname or "", parts.port
    except ValueError:  # a port that is not a number, an unclosed "[", ...
        return False, host
    if not hostname or parts.path or parts.query or parts.username is not None:
        return False, host
    port = port if port is not None else (443 if scope.get("scheme") == "https" else 80)
    if hostname in _conf_hosts or f"{hostname}:{port}" in _conf_hosts:
        return True, host
    server_host, server_port = (scope.get("server") or ("", None))[:2]
    if server_port is not None and port != int(server_port):
        return False, host
    return hostname == str(server_host).lower() or _is_loopback(hostname), host


def route_path(scope: Scope) -> str:
    """The request path without MONAI Label's API prefix (``MONAI_LABEL_API_STR``)."""
    path = str(scope.get("path", ""))
    api = settings.MONAI_LABEL_API_STR.rstrip("/")
    return path[len(api):] if api and path.startswith(api) else path


def uses_sessions(scope: Scope) -> bool:
    """Whether a request uses MONAI Label's sessions: ``/session...`` or ``/infer...?session_id=...``."""
    path = route_path(scope)
    if path == "/session" or path.startswith("/session/"):
        return True
    if path.startswith("/infer"):
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        return any(v.strip() for v in query.get("session_id", []))
    return False


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


class BodyTooLarge(Exception):
    """Raised by the capped ``receive`` once an upload body passed the cap (its 413 is sent already)."""


class SafetyMiddleware:
    """ASGI middleware: refuse a foreign ``Host`` or ``Origin`` (403), sessions when they are off
    (403), and oversized uploads (413: from ``Content-Length`` before the body is read, and by
    counting the body as it arrives); remove every temporary upload afterwards."""

    def __init__(self, app: ASGIApp, max_upload_bytes: int | None = None, sessions: bool = False) -> None:
        self.app = app
        self.max_body = None if max_upload_bytes is None else int(max_upload_bytes) + MULTIPART_MARGIN_BYTES
        self.sessions = sessions

    async def _refuse(self, send: Send, status_code: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status_code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _capped(self, scope: Scope) -> bool:
        return self.max_body is not None and route_path(scope).startswith(UPLOAD_PATHS)

    def _too_large(self, scope: Scope) -> int | None:
        """The declared body size when it exceeds the upload cap on an upload path."""
        if not self._capped(scope):
            return None
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        return int(length) if length.isdigit() and int(length) > self.max_body else None

    def _cap_message(self, what: str) -> str:
        return (f"request body {what} is over the upload cap of {self.max_body - MULTIPART_MARGIN_BYTES} bytes "
                f"(--conf max_upload_bytes)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host_ok, host = host_allowed(scope)
        if not host_ok:
            detail = (f"Host {host!r} refused: this server answers to its own address, 127.0.0.1, localhost and "
                      f"[::1] on its port, and to {sorted(_conf_hosts)} (--conf allowed_hosts); a foreign Host "
                      f"is how a DNS-rebinding web page reaches a local server")
            logger.warning(f"{scope.get('method')} {scope.get('path')}: {detail}")
            await self._refuse(send, 403, detail)
            return
        allowed, origin = origin_allowed(scope)
        if not allowed:
            detail = (f"cross-origin request from {origin!r} refused; allowed: the server's own origin and "
                      f"{sorted(allowed_origins())} (--conf cors_origins)")
            logger.warning(f"{scope.get('method')} {scope.get('path')}: {detail}")
            await self._refuse(send, 403, detail)
            return
        if not self.sessions and uses_sessions(scope):
            await self._refuse(send, 403, "sessions are off in this app (it works on datastore images); start the "
                                          "server with --conf sessions true to allow /session and session_id")
            return
        size = self._too_large(scope)
        if size is not None:
            await self._refuse(send, 413, self._cap_message(f"of {size} bytes"))
            return
        if not self._capped(scope):
            with uploads.tracked_uploads():
                await self.app(scope, receive, send)
            return

        # count the body as it arrives (chunked bodies declare no Content-Length): past the cap,
        # answer 413 at once, stop reading, and drop whatever the app then tries to send
        received, refused = 0, False

        async def capped_receive() -> Any:
            nonlocal received, refused
            if refused:
                raise BodyTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    refused = True
                    logger.warning(f"{scope.get('method')} {scope.get('path')}: body cut off after {received} bytes")
                    await self._refuse(send, 413, self._cap_message(f"passed {received} bytes and"))
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Any) -> None:
            if not refused:
                await send(message)

        try:
            with uploads.tracked_uploads():
                await self.app(scope, capped_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not refused:
                raise
            logger.debug("error after an upload was cut off at the cap", exc_info=True)


def required_role(method: str, path: str) -> str | None:
    """The role :data:`STRICTER_ROLES` requires for ``method path`` (``None``: MONAI Label's own)."""
    path = route_path({"path": path})
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


#: endpoint functions whose form fields are checked (module -> function names); the routes call
#: them through their module's globals, so replacing the module attribute guards the route
GUARDED_ENDPOINTS: dict[str, tuple[str, ...]] = {
    "monailabel.endpoints.infer": ("run_inference",),
    "monailabel.endpoints.datastore": ("add_image", "save_label", "update_image_info", "update_label_info"),
    "monailabel.endpoints.session": ("create_session",),
    "monailabel.endpoints.model": ("update_model",),
    "monailabel.endpoints.wsi_infer": ("run_wsi_inference",),
}
#: form fields holding a JSON object
JSON_FIELDS: tuple[str, ...] = ("params", "info")
#: longest accepted upload file name, in bytes (the endpoints put its suffixes into a temporary
#: file name, which must fit in the 255 bytes of a file name with the server's prefix)
MAX_UPLOAD_NAME_BYTES = 200


def check_endpoint_inputs(arguments: dict[str, Any]) -> None:
    """422 naming the field: a ``params``/``info`` that is not a JSON object, or an upload whose
    file name is longer than :data:`MAX_UPLOAD_NAME_BYTES`."""
    for field in JSON_FIELDS:
        value = arguments.get(field)
        if not isinstance(value, str) or not value:
            continue
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise AppRequestError(f"{field}: not valid JSON ({exc})", status_code=422) from None
        if not isinstance(parsed, dict):
            raise AppRequestError(f"{field}: expected a JSON object, got {type(parsed).__name__}", status_code=422)
    for field, value in arguments.items():
        for upload in value if isinstance(value, list) else [value]:
            name = getattr(upload, "filename", None)
            if isinstance(name, str) and hasattr(upload, "file"):
                size = len(os.path.basename(name).encode("utf-8", "surrogateescape"))
                if size > MAX_UPLOAD_NAME_BYTES:
                    raise AppRequestError(f"{field}: the uploaded file's name is {size} bytes long; at most "
                                          f"{MAX_UPLOAD_NAME_BYTES} are accepted", status_code=422)


def guard_endpoint_inputs(modules: dict[str, Any]) -> None:
    """Wrap the loaded endpoint functions of :data:`GUARDED_ENDPOINTS` with :func:`check_endpoint_inputs`."""
    for module_name, names in GUARDED_ENDPOINTS.items():
        module = modules.get(module_name)
        for name in names:
            original = getattr(module, name, None) if module is not None else None
            if original is None or getattr(original, "_robustlabel_guarded", False):
                continue
            signature = inspect.signature(original)

            @functools.wraps(original)
            def guarded(*args: Any, __original: Callable[..., Any] = original,
                        __signature: inspect.Signature = signature, **kwargs: Any) -> Any:
                check_endpoint_inputs(dict(__signature.bind_partial(*args, **kwargs).arguments))
                return __original(*args, **kwargs)

            guarded._robustlabel_guarded = True  # type: ignore[attr-defined]
            setattr(module, name, guarded)


_installed = False


def install(validate_task: Callable[[str, dict[str, Any]], None], cors_origins: tuple[str, ...] = (),
            max_upload_bytes: int | None = None, allowed_hosts: tuple[str, ...] = (), sessions: bool = False) -> None:
    """Install every guard of the module docstring on the running server (once per process).

    ``allowed_hosts``: ``Host`` names accepted besides the server's own (``--conf allowed_hosts``);
    ``sessions``: whether MONAI Label's sessions are served (``--conf sessions``).
    ``cors_origins``: browser origins allowed besides the server's own (``--conf cors_origins``).
    MONAI Label's ``MONAI_LABEL_CORS_ORIGINS`` is honoured too, but 0.8.5's ``start_server`` crashes
    when it is set (it ``json.dumps`` the parsed ``AnyHttpUrl`` list while logging its settings), so
    the app's own key is the way to add an origin with ``monailabel start_server``.
    """
    global _installed
    _conf_origins.update(normalise_origin(o) for o in cors_origins)
    _conf_hosts.update(h.strip().lower() for h in allowed_hosts if h.strip())
    if _installed:
        return
    import monailabel.app as server
    from monailabel.endpoints.user.auth import get_current_user

    fastapi_app = server.app
    if settings.MONAI_LABEL_AUTH_ENABLE:
        fastapi_app.dependency_overrides[get_current_user] = current_user
        logger.info(f"Auth: tokens verified by the app (RS256) against {settings.MONAI_LABEL_AUTH_REALM_URI}")
    uploads.install_upload_tracking(sys.modules)
    guard_endpoint_inputs(sys.modules)
    guard_async_tasks(validate_task)
    if fastapi_app.middleware_stack is None:
        fastapi_app.add_middleware(SafetyMiddleware, max_upload_bytes=max_upload_bytes, sessions=sessions)
    else:  # created in the lifespan: the stack is built already, so wrap it (outermost)
        fastapi_app.middleware_stack = SafetyMiddleware(fastapi_app.middleware_stack, max_upload_bytes, sessions)
    _installed = True
    logger.info(f"Safety guards installed; CORS origins allowed: own origin + {sorted(allowed_origins())}; "
                f"Host names allowed: own address, loopback + {sorted(_conf_hosts)}; sessions {'on' if sessions else 'off'}")
