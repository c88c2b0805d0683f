"""What every request goes through, in one pure-ASGI layer: its id, its key, its rate,
its metrics and its access-log line.

A write whose only effect goes through the group-commit writer (``writes``: create, update,
the lifecycle commands), sent without an Idempotency-Key, may skip reading its key where the
reads remember it (PostgreSQL: ``HotReads.remembered``). Its job then asks the commit to
confirm the key in the same transaction (``Job.check_key``), and any answer the commit did not
confirm — a refusal before the writer, a domain error — waits for a read of the key before it
is sent, and becomes 401 if the key was revoked meanwhile (all but a 503, which says only that
the database is away). So a revoked key still gets nothing but 401, and no write of it is
saved, from the next request on.

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
from adapters.http.middleware import GOOD_REQUEST_ID, PUBLIC_PATHS, UNCONFIRMED_KEY, KeyUser
from adapters.http.observability import Metrics, access_log, request_id_var
from adapters.keys import Principal
from adapters.http.ratelimit import TokenBucket

_NO_AUTH = (AuthCredentials(), UnauthenticatedUser())
_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="tasks"'}


class RequestPipeline:
    """Request id → timing and access log → bearer key → rate limit → the endpoint (``dispatcher``),
    or Starlette's router for what the dispatcher does not serve."""

    def __init__(self, app: ASGIApp, metrics: Metrics, rate: float = 0.0, burst: int = 0,
                 dispatcher: Dispatcher | None = None,
                 writes: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.app = app
        self.dispatcher = dispatcher
        self.writes = writes  # (route path, method) of the writes that may take their key from memory
        self.metrics = metrics
        self.bucket = TokenBucket(rate, burst or max(1, math.ceil(rate * 2))) if rate > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = authorization = b""
        keyed = False
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value
            elif name == b"authorization":
                authorization = value
            elif name == b"idempotency-key":
                keyed = True
        request_id = incoming.decode("latin-1")
        if not GOOD_REQUEST_ID.match(request_id):
            # unique, not secret: a 64-bit draw is enough and costs no system call
            request_id = f"req_{random.getrandbits(64):016x}"
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        status = 500
        replaced = False

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append(id_header)
            await send(message)

        async def send_confirmed(message: Message) -> None:
            """The answer, once a key taken from memory is confirmed; else the refusal instead."""
            nonlocal replaced
            if replaced:
                return  # the rest of the answer the refusal replaced
            starts = message["type"] == "http.response.start"
            # 503 says only that the database is away: no key needed, and no read could confirm one
            if starts and UNCONFIRMED_KEY in state and message["status"] != 503:
                _, refusal = await _read_key(scope, state["services"].reads, state.pop(UNCONFIRMED_KEY))
                if refusal is not None:
                    replaced = True
                    await refusal(scope, receive, send_with_id)
                    return
            await send_with_id(message)

        started = time.perf_counter()
        token = request_id_var.set(request_id)
        try:
            found = self.dispatcher.find(scope) if self.dispatcher is not None else None
            deferrable = (not keyed and found is not None and (found[0].path, scope["method"]) in self.writes)
            refusal = await self._admit(scope, state, authorization, deferrable)
            sender = send_confirmed if UNCONFIRMED_KEY in state else send_with_id  # the key from memory
            if refusal is not None:
                await refusal(scope, receive, sender)  # 429 to a key from memory: confirmed first
            elif found is not None:
                assert self.dispatcher is not None
                await self.dispatcher(*found, scope, receive, sender)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.request(route, method, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):  # building the record is the cost
                access_log.info("%s %s %s", method, scope["path"], status,
                                extra={"method": method, "path": scope["path"], "route": route,
                                       "status": status, "durationMs": round(elapsed * 1000, 2)})
            request_id_var.reset(token)

    async def _admit(self, scope: Scope, state: dict[str, Any], authorization: bytes,
                     deferrable: bool) -> Any:
        """None to go on with the request, else the response that refuses it. ``deferrable``: the
        key may come from memory, unconfirmed (see the module)."""
        if scope["path"] in PUBLIC_PATHS:
            scope["auth"], scope["user"] = _NO_AUTH
            return None
        scheme, _, secret = authorization.decode("latin-1").partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            return _refuse(scope, 401, "unauthorized", "missing bearer key: send Authorization: Bearer <key>",
                           headers=_UNAUTHORIZED_HEADERS)
        reads = state["services"].reads
        principal = reads.remembered(secret) if deferrable else None
        if principal is not None:
            state[UNCONFIRMED_KEY] = secret
        else:
            principal, refusal = await _read_key(scope, reads, secret)
            if refusal is not None:
                return refusal
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


async def _read_key(scope: Scope, reads: Any, secret: str) -> tuple[Principal | None, Any]:
    """(the key's principal, read now, None), or (None, the response that refuses the request)."""
    try:
        principal = await reads.principal(secret)
    except PersistenceError as error:
        return None, _refuse(scope, 503, "unavailable",
                             f"the database is unavailable: {type(error).__name__}", headers={"Retry-After": "1"})
    if principal is None:
        return None, _refuse(scope, 401, "unauthorized", "unknown or revoked key",
                             headers=_UNAUTHORIZED_HEADERS)
    return principal, None


def _refuse(scope: Scope, status: int, code: str, message: str, details: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> Any:
    connection = HTTPConnection(scope)
    return error_response(connection, status, code, message, details, headers)  # type: ignore[arg-type]
