"""Audit endpoints: a task's whole history, the tenant's global feed and export, and checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Annotated, Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from adapters import audit_log as log
from adapters.http import api
from adapters.http.errors import ApiError, validation_details
from domain import audit

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
        return moment.replace(tzinfo=timezone.utc)
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


def _feed(request: Request, query: FeedQuery, until: int | None) -> Iterator[tuple[int, log.EventRecord]]:
    """The tenant's events after a position in log order, filtered; yields (position scanned, record)."""
    app = api.services(request).app
    tenant = api.principal(request).tenant
    start, end = _utc(query.from_), _utc(query.to)
    for notification, event in log.read_log(app, query.after, until, _types(query.type)):
        if event is None or event.tenant != tenant:  # unreadable events are reported by `tasks audit verify`
            continue
        if (start is not None and event.timestamp < start) or (end is not None and event.timestamp > end):
            continue
        yield notification.id, log.record(event, notification.id)  # type: ignore[arg-type]


def _page(request: Request, query: FeedQuery) -> EventFeed:
    head = api.services(request).app.recorder.max_notification_id() or 0
    records: list[log.EventRecord] = []
    has_more = False
    for _, item in _feed(request, query, head):
        if len(records) == query.limit:
            has_more = True
            break
        records.append(item)
    next_after = records[-1].position if has_more else max(head, query.after)
    return EventFeed(records, has_more, next_after or 0)


async def feed(request: Request) -> Response:
    query: FeedQuery = _query(request, FeedQuery)
    _types(query.type)  # a bad type is a 422 before any streaming starts
    if NDJSON in request.headers.get("accept", ""):
        head = await run_in_threadpool(lambda: api.services(request).app.recorder.max_notification_id() or 0)

        def lines() -> Iterator[bytes]:
            for _, item in _feed(request, query, head):
                yield _encoder.encode(item) + b"\n"

        return StreamingResponse(lines(), media_type=NDJSON,
                                 headers={"X-Log-Position": str(head)})
    page = await run_in_threadpool(_page, request, query)
    return api.envelope(request, page)


# --- checkpoints ------------------------------------------------------------------------------


def _checkpoint(request: Request, query: CheckpointQuery) -> audit.Checkpoint:
    svc = api.services(request)
    head = svc.app.recorder.max_notification_id() or 0
    position = head if query.position is None else query.position
    if position > head:
        raise ApiError(422, "validation_error", f"query is invalid at $.position: the log ends at {head}",
                       {"field": "$.position", "in": "query", "reason": f"beyond the log's head {head}", "head": head})
    entries = log.database_entries(svc.app, until=position)
    key = svc.settings.audit_key.encode() if svc.settings.audit_key else None
    return audit.make_checkpoint(entries, position, tenant=api.principal(request).tenant,
                                 created_at=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
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
