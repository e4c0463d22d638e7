"""A local OpenID Connect issuer for the auth tests: a real HTTP server on 127.0.0.1.

It serves what MONAI Label 0.8.5 reads from a Keycloak-style realm (``monailabel/endpoints/user/auth.py``):

* ``GET <realm>`` → ``{"realm", "public_key"}`` (base64 SubjectPublicKeyInfo, as Keycloak sends it);
* ``GET <realm>/.well-known/openid-configuration`` → ``issuer``, ``token_endpoint``, ``jwks_uri``;
* ``GET <realm>/protocol/openid-connect/certs`` → the JWK set;
* ``POST <realm>/protocol/openid-connect/token`` (password grant) → an RS256 access token with the
  user's roles under ``realm_access.roles``, signed with joserfc (the Authlib project's JOSE library,
  which ``authlib.jose`` now delegates to).

Users are given as ``{username: (password, [roles])}``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

REALM_PATH = "/realms/monailabel"
TOKEN_LIFETIME_S = 600


class OidcIssuer:
    """Start with :meth:`start`, stop with :meth:`stop`; :attr:`realm_uri` is ``MONAI_LABEL_AUTH_REALM_URI``."""

    def __init__(self, users: dict[str, tuple[str, list[str]]]) -> None:
        self.users = dict(users)
        self.key = RSAKey.generate_key(2048)
        self.other_key = RSAKey.generate_key(2048)  # signs forged tokens in the tests
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-issuer", daemon=True)

    @property
    def realm_uri(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{REALM_PATH}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.realm_uri}/protocol/openid-connect/token"

    def public_key_body(self) -> str:
        """The public key as Keycloak's realm JSON has it: PEM body without header lines."""
        pem = self.key.as_pem(private=False).decode()
        return "".join(line for line in pem.splitlines() if "-----" not in line)

    def sign(self, username: str, roles: list[str], key: RSAKey | None = None, lifetime_s: int = TOKEN_LIFETIME_S) -> str:
        """An RS256 access token for ``username`` with ``roles`` (signed by ``key``, default the realm's)."""
        now = int(time.time())
        claims = {
            "iss": self.realm_uri, "sub": username, "aud": "account", "azp": "monailabel-app",
            "iat": now, "exp": now + lifetime_s, "preferred_username": username,
            "email": f"{username}@example.org", "name": username.title(),
            "realm_access": {"roles": list(roles)},
        }
        signer = key or self.key
        return jwt.encode({"alg": "RS256", "kid": signer.thumbprint()}, claims, signer)

    def start(self) -> OidcIssuer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0].rstrip("/")
                if path == REALM_PATH:
                    self._json(200, {"realm": "monailabel", "public_key": issuer.public_key_body(),
                                     "token-service": f"{issuer.realm_uri}/protocol/openid-connect"})
                elif path == f"{REALM_PATH}/.well-known/openid-configuration":
                    self._json(200, {"issuer": issuer.realm_uri, "token_endpoint": issuer.token_endpoint,
                                     "jwks_uri": f"{issuer.realm_uri}/protocol/openid-connect/certs",
                                     "grant_types_supported": ["password"],
                                     "id_token_signing_alg_values_supported": ["RS256"]})
                elif path == f"{REALM_PATH}/protocol/openid-connect/certs":
                    self._json(200, KeySet([issuer.key]).as_dict(private=False))
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:  # noqa: N802
                if self.path.split("?")[0] != f"{REALM_PATH}/protocol/openid-connect/token":
                    self._json(404, {"error": "not_found"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                user = issuer.users.get(form.get("username", ""))
                if form.get("grant_type") != "password" or user is None or user[0] != form.get("password"):
                    self._json(401, {"error": "invalid_grant"})
                    return
                token = issuer.sign(form["username"], user[1])
                self._json(200, {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S})

        return Handler
