"""The list view's SQL store (SQLite or PostgreSQL): one row per task, its full-text
index, and the list, filter and stats queries over it."""

from __future__ import annotations

import base64
import re
from datetime import datetime, timezone
from collections.abc import Sequence
from typing import Any

import msgspec

from adapters.sql import Cursor, SqlStore
from adapters.view_tables import TableView
from domain.errors import RuleViolationError
from domain.task import TaskCreated, TaskEvent
from projections import task_list as fold
from projections.queries import ListTasksQuery, StatsQuery, TaskFilters
from projections.task_list import COLUMNS, TaskRow

SQLITE_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    created_position INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL UNIQUE,
    {common}
)"""
SQLITE_FTS = "CREATE VIRTUAL TABLE IF NOT EXISTS {table}_fts USING fts5(body)"
POSTGRES_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    task_id TEXT PRIMARY KEY,
    created_position BIGINT NOT NULL,
    {common},
    search tsvector GENERATED ALWAYS AS (to_tsvector('simple', task || ' ' || notes)) STORED
)"""
COMMON_COLUMNS = """tenant TEXT NOT NULL,
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
    position BIGINT NOT NULL,
    notes TEXT NOT NULL"""
# Each filter's index carries status, so that exact totals and the stats' GROUP BY (in index
# order: SQLite has no hash aggregate) come from the index alone; the creation-time index also
# carries priority, for a date range with a priority; each sort has an index in its order, ties
# broken by position.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS {table}_created ON {table} "
    "(tenant, created_at DESC, created_position DESC, status, priority)",
    "CREATE INDEX IF NOT EXISTS {table}_status ON {table} (tenant, status, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS {table}_agent ON {table} (tenant, agent_id, status, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS {table}_team ON {table} (tenant, team_id, status, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS {table}_priority ON {table} (tenant, priority, status, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS {table}_rank ON {table} (tenant, priority_rank, created_position)",
    "CREATE INDEX IF NOT EXISTS {table}_updated ON {table} (tenant, updated_at, created_position)",
    "CREATE INDEX IF NOT EXISTS {table}_deadline ON {table} (tenant, deadline, status)",
    "CREATE INDEX IF NOT EXISTS {table}_deadline_asc ON {table} (tenant, (COALESCE(deadline, '~')), created_position)",
    "CREATE INDEX IF NOT EXISTS {table}_deadline_desc ON {table} (tenant, (COALESCE(deadline, '')), created_position)",
)

FILTERS: tuple[tuple[str, str], ...] = (
    ("status", "status = ?"),
    ("agent_id", "agent_id = ?"),
    ("team_id", "team_id = ?"),
    ("priority", "priority = ?"),
)
# sort name -> (SQL expression ascending, descending): a missing deadline sorts last either way.
SORTS: dict[str, tuple[str, str]] = {
    "createdAt": ("created_at", "created_at"),
    "updatedAt": ("updated_at", "updated_at"),
    "priority": ("priority_rank", "priority_rank"),
    "deadline": ("COALESCE(deadline, '~')", "COALESCE(deadline, '')"),
}
GROUPS: dict[str, str] = {
    "status": "status",
    "agentId": "agent_id",
    "teamId": "team_id",
    "priority": "priority",
    "day": "substr(created_at, 1, 10)",
}
OPEN = "status NOT IN ('completed', 'cancelled')"
_WORD = re.compile(r"\w+")


class PageCursor(msgspec.Struct, array_like=True):
    """Where a page ended: the sort, and the last row's sort value and position."""

    sort: str
    value: str | int | None
    position: int


_cursor_encoder = msgspec.json.Encoder()
_cursor_decoder = msgspec.json.Decoder(PageCursor)


def encode_cursor(sort: str, value: Any, position: int) -> str:
    return base64.urlsafe_b64encode(_cursor_encoder.encode(PageCursor(sort, value, position))).decode().rstrip("=")


def decode_cursor(text: str, sort: str) -> PageCursor:
    try:
        cursor = _cursor_decoder.decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, msgspec.DecodeError):
        raise RuleViolationError("$.cursor", "cursor is not one this API gave out") from None
    if cursor.sort != sort:
        raise RuleViolationError("$.cursor", f"cursor was made for sort={cursor.sort}, not sort={sort}")
    return cursor


def search_words(text: str) -> list[str]:
    """The words a full-text query looks for (all of them must occur)."""
    words = _WORD.findall(text.lower())
    if not words:
        raise RuleViolationError("$.q", "q must contain at least one word")
    return words


class TaskListView(TableView[TaskRow]):
    """Rows of the list view, and the log position they reflect."""

    schema = 5
    columns = COLUMNS
    row_type = TaskRow
    remember = "notes"  # a changed note renews the row's full-text entry

    def __init__(self, store: SqlStore, name: str = "task_list", *, pinned: str | None = None) -> None:
        super().__init__(store, name, pinned=pinned)

    # --- the table ---------------------------------------------------------------

    def table_ddl(self, table: str) -> list[str]:
        if self._is_pg:
            return [POSTGRES_TABLE.format(table=table, common=COMMON_COLUMNS)]
        return [SQLITE_TABLE.format(table=table, common=COMMON_COLUMNS), SQLITE_FTS.format(table=table)]

    def index_ddl(self, table: str) -> list[str]:
        indexes = [index.format(table=table) for index in INDEXES]
        if self._is_pg:
            indexes.append(f"CREATE INDEX IF NOT EXISTS {table}_search ON {table} USING GIN (search)")
        return indexes

    def drop_ddl(self, table: str) -> list[str]:
        return [f"DROP TABLE IF EXISTS {table}", *([] if self._is_pg else [f"DROP TABLE IF EXISTS {table}_fts"])]

    # --- the fold ------------------------------------------------------------------

    def new_row(self, event: TaskCreated, position: int) -> TaskRow:
        return fold.created_row(event, position)

    def fold(self, row: TaskRow, event: TaskEvent, position: int) -> bool:
        return fold.apply(row, event, position)

    def after_write(self, cursor: Cursor, table: str, created: list[TaskRow], changed: list[TaskRow],
                    before: dict[str, Any]) -> None:
        if self._is_pg:
            return  # the tsvector is a generated column
        renewed = [row for row in changed if row.notes != before[row.task_id]]
        if renewed:
            cursor.executemany(f"DELETE FROM {table}_fts WHERE rowid = ?", [(r.created_position,) for r in renewed])
        fresh = created + renewed
        if fresh:
            cursor.executemany(f"INSERT INTO {table}_fts (rowid, body) VALUES (?, ?)",
                               [(r.created_position, r.search_text()) for r in fresh])

    # --- read side -------------------------------------------------------------------

    def list_tasks(self, tenant: str, query: ListTasksQuery, now: str | None = None
                   ) -> tuple[list[TaskRow], int, int]:
        """A page of rows, the exact total that match, and the position they reflect."""
        rows, total, position, _ = self.page(tenant, query, now)
        return rows, total, position

    def page(self, tenant: str, query: ListTasksQuery, now: str | None = None
             ) -> tuple[list[TaskRow], int, int, str | None]:
        """A page, the exact total, the position, and the cursor of the next page (if any)."""
        sort = query.sort.lstrip("-")
        descending = query.sort.startswith("-")
        expression = SORTS[sort][1 if descending else 0]
        direction = "DESC" if descending else "ASC"
        after = decode_cursor(query.cursor, query.sort) if query.cursor else None
        with self.store.transaction(commit=False) as cursor:
            table = self.table(cursor)
            where, params = self._where(table, tenant, query, now)
            cursor.execute(self._sql(f"SELECT COUNT(*) AS n FROM {table} WHERE {where}"), params)
            total = int(cursor.fetchone()["n"])
            if after is not None:
                where += f" AND ({expression}, created_position) {'<' if descending else '>'} (?, ?)"
                params = [*params, after.value, after.position]
            cursor.execute(
                self._sql(f"SELECT {', '.join(COLUMNS)}, {expression} AS sort_value FROM {table} WHERE {where} "
                          f"ORDER BY {expression} {direction}, created_position {direction} LIMIT ? OFFSET ?"),
                [*params, query.limit + 1, query.offset],
            )
            found = cursor.fetchall()
            position = self._position(cursor)
        rows = [self.to_row(item) for item in found[: query.limit]]
        next_cursor = None
        if len(found) > query.limit:
            last = found[query.limit - 1]
            next_cursor = encode_cursor(query.sort, last["sort_value"], int(last["created_position"]))
        return rows, total, position, next_cursor

    def stats(self, tenant: str, query: StatsQuery, now: str | None = None
              ) -> tuple[list[tuple[tuple[Any, ...], str, int]], int]:
        """Exact counts per group and status: ((group values…), status, count), and the position."""
        groups = [GROUPS[name] for name in query.groups() if name != "status"]
        selected = "".join(f"{expression} AS g{i}, " for i, expression in enumerate(groups))
        grouped = "".join(f"g{i}, " for i in range(len(groups)))
        with self.store.transaction(commit=False) as cursor:
            table = self.table(cursor)
            where, params = self._where(table, tenant, query, now)
            cursor.execute(
                self._sql(f"SELECT {selected}status, COUNT(*) AS n FROM {table} WHERE {where} "
                          f"GROUP BY {grouped}status"),
                params,
            )
            counts = [(tuple(found[f"g{i}"] for i in range(len(groups))), found["status"], int(found["n"]))
                      for found in cursor.fetchall()]
            position = self._position(cursor)
        return counts, position

    def _where(self, table: str, tenant: str, query: TaskFilters, now: str | None) -> tuple[str, list[Any]]:
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
        if query.overdue is not None:
            now = now or fold.sortable_time(datetime.now(timezone.utc))
            if query.overdue:
                clauses.append(f"deadline IS NOT NULL AND deadline < ? AND {OPEN}")
            else:
                clauses.append(f"NOT (deadline IS NOT NULL AND deadline < ? AND {OPEN})")
            params.append(now)
        if query.q is not None:
            words = search_words(query.q)
            if self._is_pg:
                clauses.append("search @@ plainto_tsquery('simple', ?)")
                params.append(" ".join(words))
            else:
                clauses.append(f"created_position IN (SELECT rowid FROM {table}_fts WHERE {table}_fts MATCH ?)")
                params.append(" ".join(f'"{word}"' for word in words))
        return " AND ".join(clauses), params


def matches(row: TaskRow, words: Sequence[str]) -> bool:
    """The fold-side meaning of ``q``: every word occurs among the row's words."""
    present = set(_WORD.findall(row.search_text().lower()))
    return all(word in present for word in words)
