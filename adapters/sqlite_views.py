"""The list view's SQL store on SQLite: rows and tracking in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore, SQLiteTrackingRecorder

from domain.ids import public_id
from domain.task import TaskEvent
from projections.queries import ListTasksQuery
from projections.task_list import COLUMNS, TaskRow, evolve

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
    created_position INTEGER NOT NULL,
    position INTEGER NOT NULL
)"""
CREATE_INDEXES = (
    "CREATE INDEX IF NOT EXISTS {table}_created ON {table} (tenant, created_at DESC, created_position DESC)",
    "CREATE INDEX IF NOT EXISTS {table}_status ON {table} (tenant, status, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS {table}_agent ON {table} (tenant, agent_id, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS {table}_team ON {table} (tenant, team_id, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS {table}_priority ON {table} (tenant, priority, created_at DESC)",
)
UPSERT = (
    "INSERT INTO {table} ({columns}) VALUES ({marks}) "
    "ON CONFLICT (task_id) DO UPDATE SET {updates}"
)
SELECT_ROWS = "SELECT {columns} FROM {table} WHERE task_id IN ({marks})"
ORDER = " ORDER BY created_at DESC, created_position DESC LIMIT ? OFFSET ?"

FILTERS: tuple[tuple[str, str], ...] = (
    ("status", "status = ?"),
    ("agent_id", "agent_id = ?"),
    ("team_id", "team_id = ?"),
    ("priority", "priority = ?"),
)


class TaskListView(SQLiteTrackingRecorder):
    """Rows of the list view, and the log position they reflect."""

    def __init__(self, datastore: SQLiteDatastore, name: str = "task_list") -> None:
        self.name = name
        self.table = name
        super().__init__(datastore)
        columns = ", ".join(COLUMNS)
        self._upsert = UPSERT.format(
            table=self.table,
            columns=columns,
            marks=", ".join("?" for _ in COLUMNS),
            updates=", ".join(f"{col} = excluded.{col}" for col in COLUMNS if col != "task_id"),
        )

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append(CREATE_TABLE.format(table=self.table))
        statements.extend(index.format(table=self.table) for index in CREATE_INDEXES)
        return statements

    # --- write side: a batch of events and its tracking, exactly once ---------

    def apply_batch(self, batch: Sequence[tuple[int, TaskEvent]], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            rows = self._load(cursor, {public_id(event.originator_id) for _, event in batch})
            for position, event in batch:
                key = public_id(event.originator_id)
                row = evolve(rows.get(key), event, position)
                if row is not None:
                    rows[key] = row
            cursor.executemany(self._upsert, [_values(row) for row in rows.values()])
            self._insert_tracking(cursor, tracking)

    def _load(self, cursor: SQLiteCursor, task_ids: set[str]) -> dict[str, TaskRow]:
        rows: dict[str, TaskRow] = {}
        ids = list(task_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            cursor.execute(
                SELECT_ROWS.format(
                    columns=", ".join(COLUMNS), table=self.table, marks=", ".join("?" for _ in chunk)
                ),
                chunk,
            )
            for found in cursor.fetchall():
                rows[found["task_id"]] = TaskRow(**{col: found[col] for col in COLUMNS})
        return rows

    def position(self) -> int:
        return self.max_tracking_id(self.name) or 0

    # --- read side -----------------------------------------------------------

    def list_tasks(self, tenant: str, query: ListTasksQuery) -> tuple[list[TaskRow], int, int]:
        """A page of rows, the exact total that match, and the position they reflect."""
        where, params = self._where(tenant, query)
        columns = ", ".join(COLUMNS)
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {self.table} WHERE {where}", params)
            total = cursor.fetchone()[0]
            cursor.execute(
                f"SELECT {columns} FROM {self.table} WHERE {where}{ORDER}",
                [*params, query.limit, query.offset],
            )
            rows = [TaskRow(**{col: found[col] for col in COLUMNS}) for found in cursor.fetchall()]
            position = self._max_tracking_id(self.name, cursor) or 0
        return rows, total, position

    def all_rows(self) -> list[TaskRow]:
        """Every row, in task id order (for rebuild checks and exports)."""
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT {', '.join(COLUMNS)} FROM {self.table} ORDER BY task_id")
            return [TaskRow(**{col: found[col] for col in COLUMNS}) for found in cursor.fetchall()]

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



def _values(row: TaskRow) -> tuple[Any, ...]:
    return tuple(getattr(row, col) for col in COLUMNS)
