"""Idempotency-Key: a repeated POST gets the first answer again and appends nothing.

A key is scoped to the caller's API key. The first request claims it in its own
transaction before its command runs, so a concurrent repeat finds the claim: it
waits (bounded) for the first answer and replays it, or gets 409 if the first is
still running. The recorded answers are a cache of responses, not domain state:
the event log stays the only source of truth about tasks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from adapters.http.errors import CLIENT_CLOSED, EXCEPTION_HANDLERS, ApiError
from adapters.http.wire import header
from adapters.sql import SqlStore

HEADER = "idempotency-key"
_HEADER_NAME = HEADER.encode()  # as ASGI servers send header names: lower case, bytes
REPLAYED = "Idempotent-Replayed"
KEPT_HEADERS = ("etag", "location", "content-type")
STALE_CLAIM = 300.0  # a claim older than this, never answered, was left by a crashed process
_GOOD_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER,
    headers TEXT,
    body TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (key_id, idempotency_key)
)"""
DELETE_DEAD = (
    "DELETE FROM idempotency_keys WHERE key_id = ? AND idempotency_key = ? "
    "AND (created_at < ? OR (status IS NULL AND created_at < ?))"
)
CLAIM = (
    "INSERT INTO idempotency_keys (key_id, idempotency_key, request_hash, created_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (key_id, idempotency_key) DO NOTHING RETURNING key_id"
)
SELECT = (
    "SELECT request_hash, status, headers, body FROM idempotency_keys WHERE key_id = ? AND idempotency_key = ?"
)
RECORD = "UPDATE idempotency_keys SET status = ?, headers = ?, body = ? WHERE key_id = ? AND idempotency_key = ?"
RELEASE = "DELETE FROM idempotency_keys WHERE key_id = ? AND idempotency_key = ? AND status IS NULL"
PURGE = "DELETE FROM idempotency_keys WHERE created_at < ?"


@dataclass(frozen=True)
class Stored:
    """What a key holds: the fingerprint of its first request and, once answered, the answer."""

    request_hash: str
    status: int | None
    headers: dict[str, str]
    body: str | None


class IdempotencyStore:
    """Claims and recorded answers in the service's database (SQLite or PostgreSQL)."""

    def __init__(self, store: SqlStore, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self._sql = store.dialect.sql
        self._last_purge = 0.0

    def create_table(self) -> None:
        self.store.create_tables(CREATE_TABLE)

    def claim(self, key_id: str, key: str, request_hash: str) -> bool:
        """Take the key for this request; False when another request holds it already."""
        now = time.time()
        self._purge(now)
        with self.store.transaction(commit=True) as cursor:
            cursor.execute(self._sql(DELETE_DEAD), (key_id, key, now - self.ttl, now - STALE_CLAIM))
            cursor.execute(self._sql(CLAIM), (key_id, key, request_hash, now))
            return cursor.fetchone() is not None

    def lookup(self, key_id: str, key: str) -> Stored | None:
        with self.store.transaction(commit=False) as cursor:
            cursor.execute(self._sql(SELECT), (key_id, key))
            row = cursor.fetchone()
        if row is None:
            return None
        return Stored(row["request_hash"], row["status"], json.loads(row["headers"] or "{}"), row["body"])

    def record(self, key_id: str, key: str, response: Response) -> None:
        headers = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
        with self.store.transaction(commit=True) as cursor:
            cursor.execute(self._sql(RECORD), (response.status_code, json.dumps(headers),
                                               bytes(response.body).decode(), key_id, key))

    def release(self, key_id: str, key: str) -> None:
        """Forget an unanswered claim (its request failed), so that a retry runs the command."""
        with self.store.transaction(commit=True) as cursor:
            cursor.execute(self._sql(RELEASE), (key_id, key))

    def _purge(self, now: float) -> None:
        """Drop expired keys, at most once a minute per process."""
        if now - self._last_purge < 60:
            return
        self._last_purge = now
        with self.store.transaction(commit=True) as cursor:
            cursor.execute(self._sql(PURGE), (now - self.ttl,))


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key, checked; None when it has none."""
    value = header(request.scope, _HEADER_NAME)
    if value is None:
        return None
    if not _GOOD_KEY.match(value):
        raise ApiError(400, "invalid_header", "Idempotency-Key must be 1-255 visible ASCII characters",
                       {"field": "Idempotency-Key", "in": "header"})
    return value


def fingerprint(method: str, path: str, body: bytes) -> str:
    """The request's identity: method, path and body (JSON compared by value, so key order does not matter)."""
    try:
        canonical = msgspec.json.encode(msgspec.json.decode(body or b"{}"), order="sorted")
    except (msgspec.DecodeError, RecursionError):
        canonical = body
    return hashlib.sha256(f"{method} {path}\n".encode() + canonical).hexdigest()


async def run_once(request: Request, store: IdempotencyStore, key_id: str, key: str, request_hash: str,
                   wait: float, endpoint: Callable[[], Awaitable[Response]]) -> Response:
    """Run the endpoint once per (caller, key); repeats get the recorded answer."""
    deadline = time.monotonic() + wait
    while not await run_in_threadpool(store.claim, key_id, key, request_hash):
        stored = await run_in_threadpool(store.lookup, key_id, key)
        if stored is None:  # the first request failed and let go: try to claim again
            continue
        if stored.request_hash != request_hash:
            raise ApiError(422, "idempotency_key_reused",
                           "this Idempotency-Key was used with another request; use a new key for a new request",
                           {"field": "Idempotency-Key", "in": "header"})
        if stored.status is not None:
            return _replay(stored)
        if time.monotonic() >= deadline:
            raise ApiError(409, "idempotency_in_progress",
                           "a request with this Idempotency-Key is still running; try again shortly",
                           {"field": "Idempotency-Key", "in": "header"}, {"Retry-After": "1"})
        await asyncio.sleep(0.02)
    try:
        response = await endpoint()
    except Exception as error:
        response = _answer_for(request, error)
        if response is None:
            await run_in_threadpool(store.release, key_id, key)
            raise
    if response.status_code >= 500:
        await run_in_threadpool(store.release, key_id, key)
    else:
        await run_in_threadpool(store.record, key_id, key, response)
    return response


def _answer_for(request: Request, error: Exception) -> Response | None:
    """The error's 4xx answer, as the exception handlers would give it; None for a failure (5xx)
    and for a client that hung up before its body arrived (499): it never got an answer, and its
    retry with the same key must run the command."""
    for kind in type(error).__mro__:
        handler = EXCEPTION_HANDLERS.get(kind)
        if handler is not None and kind is not Exception:
            response: Response = handler(request, error)
            return response if response.status_code < CLIENT_CLOSED else None
    return None


def _replay(stored: Stored) -> Response:
    headers = {**stored.headers, REPLAYED: "true"}
    media_type = headers.pop("content-type", "application/json")
    return Response(stored.body or "", stored.status or 200, headers=headers, media_type=media_type)
