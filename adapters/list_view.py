"""The list view's SQL store (SQLite or PostgreSQL): rows and tracking in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking

from adapters.sql import Cursor, SqlStore
from domain.ids import public_id
from domain.task import TaskEvent
from projections.queries import ListTasksQuery
from projections.task_list import COLUMNS, TaskRow, evolve

CREATE_TRACKING = """
CREATE TABLE IF NOT EXISTS projection_tracking (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
)"""
# Moves a view's position forward only: a batch already applied (or older) is
# refused, which rolls back the whole batch — exactly once, also after a crash.
ADVANCE_TRACKING = (
    "INSERT INTO projection_tracking (name, position) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET position = excluded.position "
    "WHERE projection_tracking.position < excluded.position RETURNING position"
)
SELECT_POSITION = "SELECT position FROM projection_tracking WHERE name = ?"

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    task_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    agent_id TEXT,
    team_id TEXT,
    priority TEXT NOT NULL,
    priority_rank INTEGER NOT NULL,
    progress INTEGER NOT NULL,
    phase TEXT,
    deadline TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    created_position BIGINT NOT NULL,
    position BIGINT NOT NULL
)"""
CREATE_INDEXES = (
    "CREATE INDEX IF NOT EXISTS {table}_created ON {table} (tenant, created_at DESC, created_position DESC)",
    "CREATE INDEX IF NOT EXISTS {table}_status ON {table} (tenant, status, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS {table}_agent ON {table} (tenant, agent_id, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS {table}_team ON {table} (tenant, team_id, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS {table}_priority ON {table} (tenant, priority, created_at DESC)",
)
UPSERT = "INSERT INTO {table} ({columns}) VALUES ({marks}) ON CONFLICT (task_id) DO UPDATE SET {updates}"
SELECT_ROWS = "SELECT {columns} FROM {table} WHERE task_id IN ({marks})"
ORDER = " ORDER BY created_at DESC, created_position DESC LIMIT ? OFFSET ?"

FILTERS: tuple[tuple[str, str], ...] = (
    ("status", "status = ?"),
    ("agent_id", "agent_id = ?"),
    ("team_id", "team_id = ?"),
    ("priority", "priority = ?"),
)


class TaskListView:
    """Rows of the list view, and the log position they reflect."""

    def __init__(self, store: SqlStore, name: str = "task_list") -> None:
        self.store = store
        self.name = name
        self.table = name
        self._sql = store.dialect.sql
        self._columns = ", ".join(COLUMNS)
        self._upsert = self._sql(UPSERT.format(
            table=self.table,
            columns=self._columns,
            marks=", ".join("?" for _ in COLUMNS),
            updates=", ".join(f"{col} = excluded.{col}" for col in COLUMNS if col != "task_id"),
        ))

    def create_table(self) -> None:
        with self.store.transaction(commit=True) as cursor:
            if self.store.dialect.is_postgres:  # concurrent starters wait for the first
                cursor.execute("SELECT pg_advisory_xact_lock(72631)")
            cursor.execute(CREATE_TRACKING)
            cursor.execute(CREATE_TABLE.format(table=self.table))
            for index in CREATE_INDEXES:
                cursor.execute(index.format(table=self.table))

    # --- write side: a batch of events and its tracking, exactly once ---------

    def apply_batch(self, batch: Sequence[tuple[int, TaskEvent]], tracking: Tracking) -> None:
        with self.store.transaction(commit=True) as cursor:
            # Tracking first: its write takes SQLite's write lock at once (waiting if need be),
            # where a read first would fail to upgrade if another writer committed meanwhile.
            self._advance(cursor, tracking)
            rows = self._load(cursor, {public_id(event.originator_id) for _, event in batch})
            for position, event in batch:
                key = public_id(event.originator_id)
                row = evolve(rows.get(key), event, position)
                if row is not None:
                    rows[key] = row
            if rows:
                cursor.executemany(self._upsert, [_values(row) for row in rows.values()])

    def _advance(self, cursor: Cursor, tracking: Tracking) -> None:
        cursor.execute(self._sql(ADVANCE_TRACKING), (tracking.application_name, tracking.notification_id))
        if cursor.fetchone() is None:
            raise IntegrityError(f"{tracking.application_name} is already at or past {tracking.notification_id}")

    def _load(self, cursor: Cursor, task_ids: set[str]) -> dict[str, TaskRow]:
        rows: dict[str, TaskRow] = {}
        ids = list(task_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            cursor.execute(self._sql(SELECT_ROWS.format(columns=self._columns, table=self.table, marks=marks)), chunk)
            for found in cursor.fetchall():
                rows[found["task_id"]] = _row(found)
        return rows

    def position(self) -> int:
        with self.store.transaction(commit=False) as cursor:
            return self._position(cursor)

    def _position(self, cursor: Cursor) -> int:
        cursor.execute(self._sql(SELECT_POSITION), (self.name,))
        found = cursor.fetchone()
        return 0 if found is None else int(found["position"])

    # --- read side -----------------------------------------------------------

    def list_tasks(self, tenant: str, query: ListTasksQuery) -> tuple[list[TaskRow], int, int]:
        """A page of rows, the exact total that match, and the position they reflect."""
        where, params = self._where(tenant, query)
        with self.store.transaction(commit=False) as cursor:
            cursor.execute(self._sql(f"SELECT COUNT(*) AS n FROM {self.table} WHERE {where}"), params)
            total = int(cursor.fetchone()["n"])
            cursor.execute(
                self._sql(f"SELECT {self._columns} FROM {self.table} WHERE {where}{ORDER}"),
                [*params, query.limit, query.offset],
            )
            rows = [_row(found) for found in cursor.fetchall()]
            position = self._position(cursor)
        return rows, total, position

    def all_rows(self) -> list[TaskRow]:
        """Every row, in task id order (for rebuild checks and exports)."""
        with self.store.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT {self._columns} FROM {self.table} ORDER BY task_id")
            return [_row(found) for found in cursor.fetchall()]

    def _where(self, tenant: str, query: ListTasksQuery) -> tuple[str, list[Any]]:
        clauses, params = ["tenant = ?"], [tenant]
        for field, clause in FILTERS:
            value = getattr(query, field)
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if (lower := query.created_from()) is not None:
            clauses.append("created_at >= ?")
            params.append(lower)
        if (upper := query.created_until()) is not None:
            clauses.append("created_at <= ?")
            params.append(upper)
        return " AND ".join(clauses), params


def _row(found: Any) -> TaskRow:
    return TaskRow(**{col: found[col] for col in COLUMNS})


def _values(row: TaskRow) -> tuple[Any, ...]:
    return tuple(getattr(row, col) for col in COLUMNS)
