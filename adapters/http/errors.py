"""Every error the API answers, mapped to a status and a stable code in one place."""

from __future__ import annotations

import logging
import re
import sqlite3
from datetime import datetime, timezone
from typing import Any

import msgspec
from eventsourcing.persistence import InterfaceError, OperationalError, PersistenceError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from adapters.http import schemas as s
from domain import errors as d

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
_PATH = re.compile(r" - at `(\$[^`]*)`$")
_NAMED = re.compile(r"^Object (?:contains unknown|missing required) field `([^`]+)`")


class ApiError(Exception):
    """An error with its HTTP status, code and details, raised by the HTTP layer."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def error_response(request: Request, status: int, code: str, message: str,
                   details: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Response:
    body = s.ErrorEnvelope(
        success=False,
        error=s.ErrorDetail(code=code, message=message, details=details or {}),
        metadata=s.Metadata(request_id=request_id(request), timestamp=datetime.now(timezone.utc)),
    )
    return Response(_encoder.encode(body), status, headers=headers, media_type="application/json")


def request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id") or ""


def validation_details(error: msgspec.ValidationError, where: str = "body") -> tuple[str, dict[str, Any]]:
    """msgspec's message and the JSON path of the offending field ('$.priority')."""
    text = str(error)
    match = _PATH.search(text)
    field = match.group(1) if match else "$"
    reason = _PATH.sub("", text)
    if named := _NAMED.match(reason):  # point at the field itself, not at its parent object
        field = f"{field}.{named.group(1)}"
    return f"{where} is invalid at {field}: {reason}", {"field": field, "in": where, "reason": reason}


def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(request, exc.status, exc.code, exc.message, exc.details, exc.headers)


def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, msgspec.ValidationError)
    message, details = validation_details(exc)
    return error_response(request, 422, "validation_error", message, details)


def _decode(request: Request, exc: Exception) -> Response:
    return error_response(request, 400, "invalid_json", f"request body is not valid JSON: {exc}")


def _domain(request: Request, exc: Exception) -> Response:
    match exc:
        case d.TaskNotFoundError():
            return error_response(request, 404, "not_found", str(exc), {"taskId": exc.task_id})
        case d.InvalidTransitionError():
            return error_response(request, 409, "invalid_transition", str(exc),
                                  {"status": exc.status, "allowedStatuses": exc.allowed, "command": exc.command})
        case d.VersionConflictError():
            return error_response(request, 412, "version_conflict", str(exc),
                                  {"expectedVersion": exc.expected, "currentVersion": exc.current},
                                  {"ETag": f'"{exc.current}"'})
        case d.RuleViolationError():
            field = exc.field if exc.field.startswith("$") else f"$.{exc.field}"
            return error_response(request, 422, "validation_error", str(exc), {"field": field})
        case d.ConcurrencyError():
            return error_response(request, 409, "conflict", str(exc))
        case d.RevokedKeyError():
            return error_response(request, 401, "unauthorized", str(exc),
                                  headers={"WWW-Authenticate": 'Bearer realm="tasks"'})
    return _unexpected(request, exc)


def _unavailable(exc: Exception) -> bool:
    """Whether a store error means "away for now" (retry) rather than a fault of ours."""
    cause = exc.__cause__
    if isinstance(cause, sqlite3.Error):  # busy or locked: transient; "no such table": a fault
        name = getattr(cause, "sqlite_errorname", "")
        return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR"))
    return isinstance(exc, (OperationalError, InterfaceError))  # psycopg: connection-level trouble


def _store(request: Request, exc: Exception) -> Response:
    if _unavailable(exc):
        log.warning("database unavailable in request %s: %s", request_id(request), exc)
        return error_response(request, 503, "unavailable",
                              "the database is unavailable; retry shortly", headers={"Retry-After": "1"})
    return _unexpected(request, exc)


def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    message = {404: "no such endpoint", 405: "method not allowed on this endpoint"}.get(exc.status_code, str(exc.detail))
    return error_response(request, exc.status_code, codes.get(exc.status_code, "http_error"), message,
                          headers=exc.headers)


CLIENT_CLOSED = 499  # nginx's "client closed request": no one is left to answer


def _gone(request: Request, exc: Exception) -> Response:
    """The client closed its connection before its body arrived: nothing failed here and no one
    is left to answer. 499 ("client closed request", as nginx logs it) is what the access log
    and the request counters show; the server sends nothing to a closed connection."""
    log.info("client closed the connection during request %s", request_id(request))
    return Response(status_code=CLIENT_CLOSED)


def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error in request %s", request_id(request), exc_info=exc)
    return error_response(request, 500, "internal_error",
                          "the service failed to handle this request; quote the requestId when reporting it")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: _api_error,
    msgspec.ValidationError: _validation,
    msgspec.DecodeError: _decode,
    d.DomainError: _domain,
    PersistenceError: _store,
    HTTPException: _http,
    ClientDisconnect: _gone,
    Exception: _unexpected,
}
