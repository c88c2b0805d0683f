"""Request ids and bearer-key authentication, applied to every request."""

from __future__ import annotations

import re
import secrets

from eventsourcing.persistence import PersistenceError
from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, BaseUser
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.http.errors import error_response
from adapters.keys import Principal

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
_GOOD_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Give every request an id (the caller's X-Request-Id when sane) and echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _GOOD_REQUEST_ID.match(incoming) else "req_" + secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)


class KeyUser(BaseUser):
    """The caller behind a valid key."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.principal.key_id


class BearerKeyBackend(AuthenticationBackend):
    """Authorization: Bearer <key>, looked up by hash in the key store."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        if conn.url.path in PUBLIC_PATHS:
            return None
        scheme, _, secret = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthenticationError("missing bearer key: send Authorization: Bearer <key>")
        try:
            principal = conn.state.services.keys.authenticate(secret.strip())
        except PersistenceError as error:
            raise StoreUnavailableError(f"the database is unavailable: {type(error).__name__}") from None
        if principal is None:
            raise AuthenticationError("unknown or revoked key")
        return AuthCredentials(["authenticated", principal.role]), KeyUser(principal)


class StoreUnavailableError(AuthenticationError):
    """Raised when a key cannot be checked because the database is away."""


def on_auth_error(conn: HTTPConnection, exc: Exception) -> Response:
    if isinstance(exc, StoreUnavailableError):
        return error_response(conn, 503, "unavailable", str(exc), headers={"Retry-After": "1"})  # type: ignore[arg-type]
    return error_response(conn, 401, "unauthorized", str(exc),  # type: ignore[arg-type]
                          headers={"WWW-Authenticate": 'Bearer realm="tasks"'})
