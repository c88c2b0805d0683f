"""The audit feed's index: one small row per event (position, tenant, task, version, type, time).

``GET /events`` filters by tenant, type and time on this table and then reads
only the events it names from the log, so a tenant's page costs the same
however many other tenants' events sit between. Kept like the list view: rows
and tracking in one transaction, exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Notification, Tracking

from adapters.view_tables import ADVANCE as ADVANCE_TRACKING
from adapters.view_tables import ADVANCE_FROM, CREATE_TRACKING, SELECT_POSITION
from adapters.sql import SqlStore
from domain.ids import public_id
from domain.task import TaskEvent
from projections.runner import PositionMovedError

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS event_index (
    position BIGINT PRIMARY KEY,
    tenant TEXT NOT NULL,
    task_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    timestamp TEXT NOT NULL
)"""
CREATE_INDEXES = (
    "CREATE INDEX IF NOT EXISTS event_index_tenant ON event_index (tenant, position)",
    "CREATE INDEX IF NOT EXISTS event_index_type ON event_index (tenant, type, position)",
    "CREATE INDEX IF NOT EXISTS event_index_time ON event_index (tenant, timestamp)",
)
INSERT = ("INSERT INTO event_index (position, tenant, task_id, version, type, timestamp) "
          "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (position) DO NOTHING")
# The event store's own table: SQLite's rowid and PostgreSQL's notification_id are log positions.
SELECT_EVENTS = {
    "sqlite": "SELECT rowid AS position, originator_id, originator_version, topic, state "
              "FROM stored_events WHERE rowid IN ({marks})",
    "postgresql": "SELECT notification_id AS position, originator_id, originator_version, topic, state "
                  "FROM tasks_events WHERE notification_id IN ({marks})",
}


def stamp(moment: datetime) -> str:
    """Fixed-width UTC text, so that times compare as strings on both databases."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    if moment.year < 1000:  # strftime's %Y does not pad (glibc): keep what is stored
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # The same text as the strftime above (YYYY-MM-DDTHH:MM:SS.ffffff+00:00, cut), at a third of its cost.
    return moment.isoformat(timespec="microseconds")[:26] + "Z"


class EventIndex:
    """Which events each tenant has, by position, type and time."""

    def __init__(self, store: SqlStore, name: str = "event_index", *, events: SqlStore | None = None) -> None:
        self.store = store  # the index and its tracking: the views' store
        self.events = events or store  # where the event store's table is (on SQLite, not the views' file)
        self.name = name
        self._sql = store.dialect.sql

    def create_table(self) -> None:
        self.store.create_tables(CREATE_TRACKING, CREATE_TABLE, *CREATE_INDEXES)

    def apply_batch(self, batch: Sequence[tuple[int, TaskEvent]], tracking: Tracking,
                    after: int | None = None) -> None:
        ids: dict[UUID, str] = {}  # a task's events come together: name each task once
        rows = []
        for position, event in batch:
            task = event.originator_id
            if (task_id := ids.get(task)) is None:
                task_id = ids[task] = public_id(task)  # type: ignore[arg-type]
            rows.append((position, event.tenant, task_id, event.originator_version,
                         type(event).__name__, stamp(event.timestamp)))
        with self.store.transaction(commit=True) as cursor:
            # Tracking first: a write takes SQLite's write lock at once; ``after`` makes it a compare-and-set.
            if after is None:
                cursor.execute(self._sql(ADVANCE_TRACKING), (tracking.application_name, tracking.notification_id))
            else:
                cursor.execute(self._sql(ADVANCE_FROM), (tracking.application_name, tracking.notification_id, after))
            if cursor.fetchone() is None:
                if after is not None:
                    raise PositionMovedError(f"{self.name} is no longer at {after}")
                raise IntegrityError(f"{self.name} is already at or past {tracking.notification_id}")
            if rows:
                cursor.executemany(self._sql(INSERT), rows)

    def position(self) -> int:
        with self.store.transaction(commit=False) as cursor:
            cursor.execute(self._sql(SELECT_POSITION), (self.name,))
            found = cursor.fetchone()
            return 0 if found is None else int(found["position"])

    def positions(self, tenant: str, after: int, limit: int, types: Sequence[str] = (),
                  start: datetime | None = None, end: datetime | None = None) -> list[int]:
        """Up to ``limit`` positions of the tenant's matching events after ``after``, in log order."""
        clauses, params = ["tenant = ?", "position > ?"], [tenant, after]
        if types:
            clauses.append(f"type IN ({', '.join('?' for _ in types)})")
            params.extend(types)
        if start is not None:
            clauses.append("timestamp >= ?")
            params.append(stamp(start))
        if end is not None:
            clauses.append("timestamp <= ?")
            params.append(stamp(end))
        sql = f"SELECT position FROM event_index WHERE {' AND '.join(clauses)} ORDER BY position LIMIT ?"
        with self.store.transaction(commit=False) as cursor:
            cursor.execute(self._sql(sql), [*params, limit])
            return [int(row["position"]) for row in cursor.fetchall()]

    def notifications(self, positions: Sequence[int]) -> list[Notification]:
        """The stored events at these positions, in log order."""
        if not positions:
            return []
        sql = SELECT_EVENTS[self.events.dialect.name].format(marks=", ".join("?" for _ in positions))
        with self.events.transaction(commit=False) as cursor:
            cursor.execute(self._sql(sql), list(positions))
            rows: list[Any] = cursor.fetchall()
        found = [Notification(id=int(row["position"]), originator_id=_uuid(row["originator_id"]),
                              originator_version=int(row["originator_version"]), topic=row["topic"],
                              state=bytes(row["state"])) for row in rows]
        return sorted(found, key=lambda n: n.id)


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def open_event_index(store: SqlStore, events: SqlStore) -> EventIndex:
    """The index in the views' ``store``, its table created if missing (what app.build_services
    adds to its views), reading events from the database of ``events``."""
    index = EventIndex(store, events=events)
    index.create_table()
    return index
