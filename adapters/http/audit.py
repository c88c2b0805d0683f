"""Audit endpoints: a task's whole history, the tenant's global feed and export, and checkpoints."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from adapters import audit_log as log
from adapters.event_index import EventIndex
from adapters.http import api
from adapters.http.errors import ApiError, validation_details
from domain import audit

logger = logging.getLogger(__name__)
AUDITORS = frozenset({"admin", "auditor"})
NDJSON = "application/x-ndjson"
_encoder = msgspec.json.Encoder()

Limit = Annotated[int, msgspec.Meta(ge=1, le=1000)]


class TaskEventsQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    type: str | None = None  # one event type, or several separated by commas
    since: Annotated[int, msgspec.Meta(ge=0)] = 0  # only versions after this one
    limit: Limit = 100


class FeedQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    after: Annotated[int, msgspec.Meta(ge=0)] = 0  # only positions after this one
    limit: Limit = 100
    type: str | None = None
    from_: datetime | None = msgspec.field(default=None, name="from")  # events at or after this time
    to: datetime | None = None  # events at or before this time


class CheckpointQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    position: Annotated[int, msgspec.Meta(ge=0)] | None = None  # default: the log's head
    heads: bool = False  # include each task's version and hash at the position


class TaskEvents(msgspec.Struct, rename="camel"):
    task_id: str
    events: list[log.EventRecord]
    has_more: bool
    next_since: int


class EventFeed(msgspec.Struct, rename="camel"):
    events: list[log.EventRecord]
    has_more: bool
    next_after: int


def _query(request: Request, shape: type[Any]) -> Any:
    try:
        query = msgspec.convert(dict(request.query_params), shape, strict=False)
    except msgspec.ValidationError as error:
        message, details = validation_details(error, "query")
        raise ApiError(422, "validation_error", message, details) from None
    return query


def _types(text: str | None) -> list[str]:
    if text is None:
        return []
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = log.event_types()
    for name in names:
        if name not in known:
            raise ApiError(422, "validation_error", f"query is invalid at $.type: unknown event type {name!r}",
                           {"field": "$.type", "in": "query", "reason": f"unknown event type {name!r}",
                            "allowed": known})
    return names


def _utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


# --- a task's history ---------------------------------------------------------------------


async def task_events(request: Request) -> Response:
    query: TaskEventsQuery = _query(request, TaskEventsQuery)
    types = set(_types(query.type))
    task_id = request.path_params["task_id"]
    history = await run_in_threadpool(api.services(request).app.history, task_id, api.principal(request).tenant)
    chosen = [e for e in history if e.originator_version > query.since and (not types or type(e).__name__ in types)]
    page = chosen[: query.limit]
    next_since = page[-1].originator_version if page else query.since
    return api.envelope(request, TaskEvents(task_id, [log.record(e) for e in page], len(chosen) > len(page),
                                            next_since))


# --- the tenant's feed -----------------------------------------------------------------------


def _index(request: Request) -> EventIndex:
    return next(view for view in api.services(request).views if isinstance(view, EventIndex))  # kept here or by a worker


def _matching(request: Request, query: FeedQuery, upto: int, batch: int = 1000) -> Iterator[list[log.EventRecord]]:
    """The tenant's matching events after ``query.after`` and up to ``upto``, in log order, a batch at a time."""
    index, app = _index(request), api.services(request).app
    tenant, types, start, end = api.principal(request).tenant, _types(query.type), _utc(query.from_), _utc(query.to)
    after = query.after
    while True:
        positions = [p for p in index.positions(tenant, after, batch, types, start, end) if p <= upto]
        records = []
        for notification in index.notifications(positions):
            try:
                event = app.mapper.to_domain_event(notification)
            except Exception:  # noqa: BLE001 - an event changed beyond reading: `tasks audit verify` names it
                logger.warning("event at position %s cannot be read; left out of the feed", notification.id)
                continue
            records.append(log.record(event, notification.id))  # type: ignore[arg-type]
        yield records
        if len(positions) < batch:
            return
        after = positions[-1]


def _page(request: Request, query: FeedQuery) -> tuple[EventFeed, int]:
    upto = _index(request).position()  # what the index reflects; events after it are on the next page
    records: list[log.EventRecord] = []
    has_more = False
    for batch in _matching(request, query, upto, query.limit + 1):
        records.extend(batch)
        if len(records) > query.limit:
            has_more, records = True, records[: query.limit]
            break
    next_after = records[-1].position or 0 if has_more else max(query.after, upto)
    return EventFeed(records, has_more, next_after), upto


async def feed(request: Request) -> Response:
    query: FeedQuery = _query(request, FeedQuery)
    _types(query.type)  # a bad type is a 422 before any streaming starts
    if NDJSON in request.headers.get("accept", ""):
        upto = await run_in_threadpool(lambda: _index(request).position())

        def lines() -> Iterator[bytes]:
            for batch in _matching(request, query, upto):
                yield b"".join(_encoder.encode(item) + b"\n" for item in batch)

        return StreamingResponse(lines(), media_type=NDJSON, headers={"X-Log-Position": str(upto)})
    page, upto = await run_in_threadpool(_page, request, query)
    return api.envelope(request, page, headers={"X-Log-Position": str(upto)})


# --- checkpoints ------------------------------------------------------------------------------


def _checkpoint(request: Request, query: CheckpointQuery) -> audit.Checkpoint:
    svc = api.services(request)
    head = svc.app.recorder.max_notification_id() or 0
    position = head if query.position is None else query.position
    if position > head:
        raise ApiError(422, "validation_error", f"query is invalid at $.position: the log ends at {head}",
                       {"field": "$.position", "in": "query", "reason": f"beyond the log's head {head}", "head": head})
    tenant = api.principal(request).tenant
    entries = [e for e in log.database_entries(svc.app, until=position) if e.tenant == tenant]
    if damaged := audit.verify_chains(entries):  # a checkpoint must not bless a log that is already broken
        raise ApiError(409, "log_does_not_verify", f"the log does not verify ({len(damaged)} findings), "
                       "so no checkpoint was taken; run `tasks audit verify`",
                       {"findings": [msgspec.to_builtins(f) for f in damaged[:20]]})
    key = svc.settings.audit_key.encode() if svc.settings.audit_key else None
    return audit.make_checkpoint(entries, position, tenant=tenant,
                                 created_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                                 with_heads=query.heads, key=key)


async def checkpoint(request: Request) -> Response:
    query: CheckpointQuery = _query(request, CheckpointQuery)
    return api.envelope(request, await run_in_threadpool(_checkpoint, request, query))


def operations() -> list[api.Operation]:
    return [
        api.Operation("GET", "/agents/tasks/{task_id}/events", "task_events",
                      "A task's whole history, oldest first", task_events, api.s.Envelope[TaskEvents],
                      query=TaskEventsQuery, tag="audit", roles=api.TASK_READERS),
        api.Operation("GET", "/events", "event_feed",
                      "The tenant's events in log order (NDJSON export with Accept: application/x-ndjson)",
                      feed, api.s.Envelope[EventFeed], query=FeedQuery, tag="audit", roles=AUDITORS),
        api.Operation("GET", "/audit/checkpoint", "audit_checkpoint",
                      "A digest of the tenant's log up to a position", checkpoint,
                      api.s.Envelope[audit.Checkpoint], query=CheckpointQuery, tag="audit", roles=AUDITORS),
    ]
