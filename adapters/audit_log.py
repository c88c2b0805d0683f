"""Reading the event log for auditors: from the event store, or from an NDJSON export.

Both give the same ``domain.audit.Entry`` values (every field of each event as
JSON builtins), so a chain checked on the database and one checked on an
export taken from it are checked byte for byte alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import msgspec
from eventsourcing.persistence import Notification

from domain.application import TaskApplication
from domain.audit import Entry
from domain.ids import parse_id, public_id
from domain.task import TaskEvent

# The fields every event carries; the rest of an event's fields are its ``data``.
HEADER = ("originator_id", "originator_version", "timestamp", "actor", "request_id", "tenant", "prev_hash", "hash")
TOPIC_PREFIX = "domain.task:"


class EventRecord(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    """One event as auditors see it: in the per-task history, the global feed and NDJSON exports."""

    position: int | None = None
    task_id: str
    version: int
    type: str
    timestamp: datetime
    actor: str
    request_id: str
    tenant: str
    data: dict[str, Any]
    prev_hash: str
    hash: str


def event_types() -> list[str]:
    """The names of every task event class (the values a ``type`` filter accepts)."""
    found: list[str] = []
    pending: list[type] = [TaskEvent]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub.__module__ == "domain.task" and sub.__name__ not in found:
                found.append(sub.__name__)
                pending.append(sub)
    return sorted(found)


def record(event: TaskEvent, position: int | None = None) -> EventRecord:
    fields = msgspec.to_builtins(vars(event))
    return EventRecord(
        position=position,
        task_id=public_id(event.originator_id),  # type: ignore[arg-type]
        version=event.originator_version,
        type=type(event).__name__,
        timestamp=event.timestamp,
        actor=event.actor,
        request_id=event.request_id,
        tenant=event.tenant,
        data={name: value for name, value in fields.items() if name not in HEADER},
        prev_hash=event.prev_hash,
        hash=event.hash,
    )


def entry_of(event: TaskEvent, position: int) -> Entry:
    return Entry(position=position, task_id=public_id(event.originator_id),  # type: ignore[arg-type]
                 version=event.originator_version, type=type(event).__name__, tenant=event.tenant,
                 fields=msgspec.to_builtins(vars(event)))


def entry_of_record(line: EventRecord) -> Entry:
    """An exported event back into the fields its hash was computed over."""
    fields = {
        **line.data,
        "originator_id": str(parse_id(line.task_id)),
        "originator_version": line.version,
        "timestamp": msgspec.to_builtins(line.timestamp),
        "actor": line.actor,
        "request_id": line.request_id,
        "tenant": line.tenant,
        "prev_hash": line.prev_hash,
        "hash": line.hash,
    }
    return Entry(position=line.position or 0, task_id=line.task_id, version=line.version, type=line.type,
                 tenant=line.tenant, fields=fields)


def unreadable(notification: Notification) -> Entry:
    """A stored event the mapper cannot decode any more (its bytes were changed)."""
    tenant = None
    try:
        tenant = msgspec.json.decode(notification.state).get("tenant")
    except (msgspec.DecodeError, AttributeError):
        pass
    return Entry(position=notification.id, task_id=public_id(notification.originator_id),  # type: ignore[arg-type]
                 version=notification.originator_version, type=notification.topic.rpartition(":")[2],
                 tenant=tenant, fields=None)


def read_log(app: TaskApplication, after: int = 0, until: int | None = None, types: Sequence[str] = (),
             batch: int = 500) -> Iterator[tuple[Notification, TaskEvent | None]]:
    """Every stored event after a position (and up to ``until``), in log order, with its decoded event
    (``None`` when it cannot be decoded). Positions may have gaps, so pages go on from the last one seen."""
    topics = [TOPIC_PREFIX + name for name in types]
    while True:
        page = app.recorder.select_notifications(after, batch, stop=until, topics=topics, inclusive_of_start=False)
        for notification in page:
            try:
                event = app.mapper.to_domain_event(notification)
            except Exception:  # noqa: BLE001 - a stored event changed beyond reading is a finding, not a crash
                event = None
            yield notification, event  # type: ignore[misc]
        if len(page) < batch:
            return
        after = page[-1].id


def database_entries(app: TaskApplication, until: int | None = None) -> list[Entry]:
    return [entry_of(event, n.id) if event is not None else unreadable(n) for n, event in read_log(app, until=until)]


def export_entries(lines: Iterable[bytes | str]) -> list[Entry]:
    """Entries from an NDJSON export (``GET /events`` with ``Accept: application/x-ndjson``)."""
    decoder = msgspec.json.Decoder(EventRecord)
    return [entry_of_record(decoder.decode(line)) for line in lines if line.strip()]
