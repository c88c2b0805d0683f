"""What every request goes through, in one pure-ASGI layer: its id, its key, its rate,
its metrics and its access-log line.

This replaces four stacked middlewares (request id, observability, Starlette's
authentication, rate limit): one layer wraps ``send`` once, reads the headers once,
and does per request only what must be done per request. The order of the steps is
the old order of the layers, so an answer of the layer itself (401, 403's sibling
503, 429) still carries the request id, is counted and is logged.
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Any

from eventsourcing.persistence import PersistenceError
from starlette.authentication import AuthCredentials, UnauthenticatedUser
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.http.dispatch import Dispatcher
from adapters.http.errors import error_response
from adapters.http.middleware import GOOD_REQUEST_ID, PUBLIC_PATHS, KeyUser
from adapters.http.observability import Metrics, access_log, request_id_var
from adapters.http.ratelimit import TokenBucket

_NO_AUTH = (AuthCredentials(), UnauthenticatedUser())
_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="tasks"'}


class RequestPipeline:
    """Request id → timing and access log → bearer key → rate limit → the endpoint (``dispatcher``),
    or Starlette's router for what the dispatcher does not serve."""

    def __init__(self, app: ASGIApp, metrics: Metrics, rate: float = 0.0, burst: int = 0,
                 dispatcher: Dispatcher | None = None) -> None:
        self.app = app
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.bucket = TokenBucket(rate, burst or max(1, math.ceil(rate * 2))) if rate > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = authorization = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value
            elif name == b"authorization":
                authorization = value
        request_id = incoming.decode("latin-1")
        if not GOOD_REQUEST_ID.match(request_id):
            # unique, not secret: a 64-bit draw is enough and costs no system call
            request_id = f"req_{random.getrandbits(64):016x}"
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append(id_header)
            await send(message)

        started = time.perf_counter()
        token = request_id_var.set(request_id)
        try:
            refusal = await self._admit(scope, state, authorization)
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
            elif self.dispatcher is not None and (found := self.dispatcher.find(scope)) is not None:
                await self.dispatcher(*found, scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            counted, timed = self.metrics.request(route, method, status)
            counted.inc()
            timed.observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):  # building the record is the cost
                access_log.info("%s %s %s", method, scope["path"], status,
                                extra={"method": method, "path": scope["path"], "route": route,
                                       "status": status, "durationMs": round(elapsed * 1000, 2)})
            request_id_var.reset(token)

    async def _admit(self, scope: Scope, state: dict[str, Any], authorization: bytes) -> Any:
        """None to go on with the request, else the response that refuses it."""
        if scope["path"] in PUBLIC_PATHS:
            scope["auth"], scope["user"] = _NO_AUTH
            return None
        scheme, _, secret = authorization.decode("latin-1").partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            return _refuse(scope, 401, "unauthorized", "missing bearer key: send Authorization: Bearer <key>",
                           headers=_UNAUTHORIZED_HEADERS)
        try:
            principal = await state["services"].reads.principal(secret)
        except PersistenceError as error:
            return _refuse(scope, 503, "unavailable", f"the database is unavailable: {type(error).__name__}",
                           headers={"Retry-After": "1"})
        if principal is None:
            return _refuse(scope, 401, "unauthorized", "unknown or revoked key",
                           headers=_UNAUTHORIZED_HEADERS)
        scope["auth"] = AuthCredentials(["authenticated", principal.role])
        scope["user"] = KeyUser(principal)
        if self.bucket is not None and (wait := self.bucket.take(principal.key_id)) > 0.0:
            retry_after = max(1, math.ceil(wait))
            return _refuse(
                scope, 429, "rate_limited",
                f"this key is over its limit of {self.bucket.rate:g} requests a second; "
                f"retry after {retry_after} s",
                {"limit": self.bucket.rate, "burst": self.bucket.burst, "retryAfter": retry_after},
                {"Retry-After": str(retry_after)},
            )
        return None


def _refuse(scope: Scope, status: int, code: str, message: str, details: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> Any:
    connection = HTTPConnection(scope)
    return error_response(connection, status, code, message, details, headers)  # type: ignore[arg-type]
