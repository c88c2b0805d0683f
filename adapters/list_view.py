"""The list view's SQL store (SQLite or PostgreSQL): one row per task, its full-text
index, and the list, filter and stats queries over it."""

from __future__ import annotations

import base64
import re
from datetime import datetime, timezone
from collections.abc import Callable, Sequence
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
# Each filter's index carries status (so that a filter with a status is one range), then the
# creation time with its tie-break, so that a page of the newest rows with one or two filters is
# read straight from the index (backward), without a sort. Ascending, not DESC: a new task then
# lands at the right edge of each range, where SQLite appends to the last page and leaves the
# full ones full; a DESC index put each new task at the left edge, every split left two half-full
# pages (the seven indexes 46% full, the views' file 20% larger at 100k tasks) and the worker
# wrote ~25% more per create (README: "The list's indexes, ascending"). The creation-time
# index also carries status and priority, for a date range with them; each sort has an index in
# its order, ties broken by position. Exact totals and stats come from the counts table where it covers the
# filters (see COUNTED), so no index has to serve a COUNT over the tenant.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS {table}_created ON {table} "
    "(tenant, created_at, created_position, status, priority)",
    "CREATE INDEX IF NOT EXISTS {table}_status ON {table} "
    "(tenant, status, created_at, created_position)",
    "CREATE INDEX IF NOT EXISTS {table}_agent ON {table} "
    "(tenant, agent_id, status, created_at, created_position)",
    "CREATE INDEX IF NOT EXISTS {table}_team ON {table} "
    "(tenant, team_id, status, created_at, created_position)",
    # an agent's or a team's newest tasks without a status (else: a scan of the tenant, or a sort)
    "CREATE INDEX IF NOT EXISTS {table}_agent_recent ON {table} "
    "(tenant, agent_id, created_at, created_position)",
    "CREATE INDEX IF NOT EXISTS {table}_team_recent ON {table} "
    "(tenant, team_id, created_at, created_position)",
    "CREATE INDEX IF NOT EXISTS {table}_priority ON {table} "
    "(tenant, priority, status, created_at, created_position)",
    "CREATE INDEX IF NOT EXISTS {table}_rank ON {table} (tenant, priority_rank, created_position)",
    "CREATE INDEX IF NOT EXISTS {table}_updated ON {table} (tenant, updated_at, created_position)",
    "CREATE INDEX IF NOT EXISTS {table}_deadline ON {table} (tenant, deadline, status)",
    "CREATE INDEX IF NOT EXISTS {table}_deadline_asc ON {table} (tenant, (COALESCE(deadline, '~')), created_position)",
    "CREATE INDEX IF NOT EXISTS {table}_deadline_desc ON {table} (tenant, (COALESCE(deadline, '')), created_position)",
)
# Exact counts kept beside the rows, in the same transaction: per tenant, status and the value of
# one more column (dim: priority, agent_id, team_id or day of creation; '' stands for "none").
# A list total or a stats query whose filters and groups name status and at most one of these
# columns (and no date range, overdue or q) is a sum over a handful of these rows; any other
# combination falls back to COUNT over the rows' indexes.
COUNTS_TABLE = """
CREATE TABLE IF NOT EXISTS {table}_counts (
    tenant TEXT NOT NULL,
    dim TEXT NOT NULL,
    value TEXT NOT NULL,
    status TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (tenant, dim, value, status)
){without_rowid}"""
COUNTED: tuple[str, ...] = ("priority", "agent_id", "team_id", "day")
COUNTED_GROUPS = {"priority": "priority", "agentId": "agent_id", "teamId": "team_id", "day": "day"}
ADD_COUNT = (
    "INSERT INTO {table}_counts (tenant, dim, value, status, n) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (tenant, dim, value, status) DO UPDATE SET n = {table}_counts.n + excluded.n"
)
# The physical table and its position, in one statement (the position first: rows read after it
# in the same transaction reflect at least that position).
TABLE_AND_POSITION = (
    "SELECT r.physical AS physical, t.position AS position FROM projection_tables r "
    "LEFT JOIN projection_tracking t ON t.name = r.physical WHERE r.name = ?"
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

    schema = 7  # 7: indexes ascending (appended at the right edge)
    columns = COLUMNS
    row_type = TaskRow
    remember = "notes"  # see remembered(): notes renew the full-text entry, the counted columns move counts

    def __init__(self, store: SqlStore, name: str = "task_list", *, pinned: str | None = None) -> None:
        super().__init__(store, name, pinned=pinned)

    # --- the table ---------------------------------------------------------------

    def table_ddl(self, table: str) -> list[str]:
        if self._is_pg:
            return [POSTGRES_TABLE.format(table=table, common=COMMON_COLUMNS),
                    COUNTS_TABLE.format(table=table, without_rowid="")]
        return [SQLITE_TABLE.format(table=table, common=COMMON_COLUMNS), SQLITE_FTS.format(table=table),
                COUNTS_TABLE.format(table=table, without_rowid=" WITHOUT ROWID")]

    def index_ddl(self, table: str) -> list[str]:
        indexes = [index.format(table=table) for index in INDEXES]
        if self._is_pg:
            indexes.append(f"CREATE INDEX IF NOT EXISTS {table}_search ON {table} USING GIN (search)")
        return indexes

    def drop_ddl(self, table: str) -> list[str]:
        return [f"DROP TABLE IF EXISTS {table}", f"DROP TABLE IF EXISTS {table}_counts",
                *([] if self._is_pg else [f"DROP TABLE IF EXISTS {table}_fts"])]

    # --- the fold ------------------------------------------------------------------

    def new_row(self, event: TaskCreated, position: int) -> TaskRow:
        return fold.created_row(event, position)

    def fold(self, row: TaskRow, event: TaskEvent, position: int) -> bool:
        return fold.apply(row, event, position)

    def remembered(self, row: TaskRow) -> tuple[str, tuple[str, ...]]:
        return row.notes, counted(row)

    def after_write(self, cursor: Cursor, table: str, created: list[TaskRow], changed: list[TaskRow],
                    before: dict[str, Any]) -> None:
        self._count(cursor, table, created, changed, before)
        if self._is_pg:
            return  # the tsvector is a generated column
        renewed = [row for row in changed if row.notes != before[row.task_id][0]]
        if renewed:
            cursor.executemany(f"DELETE FROM {table}_fts WHERE rowid = ?", [(r.created_position,) for r in renewed])
        fresh = created + renewed
        if fresh:
            cursor.executemany(f"INSERT INTO {table}_fts (rowid, body) VALUES (?, ?)",
                               [(r.created_position, r.search_text()) for r in fresh])

    def _count(self, cursor: Cursor, table: str, created: list[TaskRow], changed: list[TaskRow],
               before: dict[str, Any]) -> None:
        """Move the counts by what this batch created and changed (one upsert per count touched)."""
        deltas: dict[tuple[str, str, str, str], int] = {}

        def add(tenant: str, values: tuple[str, ...], delta: int) -> None:
            status = values[0]
            for dim, value in zip(COUNTED, values[1:]):
                key = (tenant, dim, value, status)
                deltas[key] = deltas.get(key, 0) + delta

        for row in created:
            add(row.tenant, counted(row), 1)
        for row in changed:
            was, now = before[row.task_id][1], counted(row)
            if was != now:
                add(row.tenant, was, -1)
                add(row.tenant, now, 1)
        moved = [(*key, n) for key, n in sorted(deltas.items()) if n]  # sorted: one lock order everywhere
        if moved:
            cursor.executemany(self._sql(ADD_COUNT.format(table=table)), moved)

    def counts(self) -> list[tuple[str, str, str | None, str, int]]:
        """Every non-zero count: (tenant, dim, value, status, n), in key order (for checks)."""
        with self.store.reading() as cursor:
            table, _ = self._table_and_position(cursor)
            cursor.execute(f"SELECT tenant, dim, value, status, n FROM {table}_counts WHERE n <> 0 "
                           "ORDER BY tenant, dim, value, status")
            return [(f["tenant"], f["dim"], f["value"] or None, f["status"], int(f["n"]))
                    for f in cursor.fetchall()]

    # --- read side -------------------------------------------------------------------

    def list_tasks(self, tenant: str, query: ListTasksQuery, now: str | None = None
                   ) -> tuple[list[TaskRow], int, int]:
        """A page of rows, the exact total that match, and the position they reflect."""
        rows, total, position, _ = self.page(tenant, query, now)
        return rows, total, position

    def page(self, tenant: str, query: ListTasksQuery, now: str | None = None,
             known: Callable[[str, int], Any] | None = None) -> tuple[list[Any], int, int, str | None]:
        """A page, the exact total, the position, and the cursor of the next page (if any). The page's
        rows come without their notes (no page shows them; a task's notes may be long).

        With ``known`` (task id, version → what the caller holds for that row, or None), the page
        first reads only each row's id and version, and whole rows only for those ``known`` returns
        None for; the page then lists, in order, ``known``'s answer or the TaskRow. Both reads are
        one transaction. (Turning 50 rows of 17 columns into Python objects cost more than finding
        them.)"""
        sort = query.sort.lstrip("-")
        descending = query.sort.startswith("-")
        expression = SORTS[sort][1 if descending else 0]
        direction = "DESC" if descending else "ASC"
        after = decode_cursor(query.cursor, query.sort) if query.cursor else None
        counter = counter_for(query)
        with self.store.reading() as cursor:
            table, position = self._table_and_position(cursor)
            where, params = self._where(table, tenant, query, now)
            if counter is not None:
                total = self._counted_total(cursor, table, tenant, query.status, *counter)
            else:
                cursor.execute(self._sql(f"SELECT COUNT(*) AS n FROM {table} WHERE {where}"), params)
                total = int(cursor.fetchone()["n"])
            if after is not None:
                where += f" AND ({expression}, created_position) {'<' if descending else '>'} (?, ?)"
                params = [*params, after.value, after.position]
            # The exact total says when the page is empty: then look at no row (a filter that matches
            # nothing would otherwise walk its whole index range), but still name the table.
            wanted = 0 if after is None and total <= query.offset else query.limit + 1
            selected = PAGE_SELECTED if known is None else "task_id, version, created_position"
            cursor.execute(
                self._sql(f"SELECT {selected}, {expression} AS sort_value FROM {table} WHERE {where} "
                          f"ORDER BY {expression} {direction}, created_position {direction} LIMIT ? OFFSET ?"),
                [*params, wanted, query.offset],
            )
            found = cursor.fetchall()
            if known is None:
                rows = self._rows(found[: query.limit])
            else:
                rows = [known(item["task_id"], item["version"]) for item in found[: query.limit]]
                missing = [item["task_id"] for item, row in zip(found, rows) if row is None]
                if missing:
                    cursor.execute(self._sql(f"SELECT {PAGE_SELECTED} FROM {table} WHERE task_id IN "
                                             f"({', '.join('?' * len(missing))})"), missing)
                    fetched = {row.task_id: row for row in self._rows(cursor.fetchall())}
                    rows = [fetched[item["task_id"]] if row is None else row for item, row in zip(found, rows)]
        next_cursor = None
        if len(found) > query.limit:
            last = found[query.limit - 1]
            next_cursor = encode_cursor(query.sort, last["sort_value"], int(last["created_position"]))
        return rows, total, position, next_cursor

    def _rows(self, found: Sequence[Any]) -> list[TaskRow]:
        width = len(PAGE_COLUMNS)  # rows by position: a lookup by column name per field cost more than the query
        if self._is_pg:
            return [TaskRow(*tuple(item.values())[:width]) for item in found]
        return [TaskRow(*tuple(item)[:width]) for item in found]

    def answers_quickly(self, query: ListTasksQuery | StatsQuery) -> bool:
        """Whether the answer costs no more than a few index seeks on a local SQLite file (a total
        or stats the counts hold; for a page, the creation-time order every filter's index ends in
        and a small offset), so that it may run on the event loop rather than pay a thread hop.
        On PostgreSQL every read is network I/O and stays off the loop."""
        if self._is_pg:
            return False
        if isinstance(query, StatsQuery):
            names = [COUNTED_GROUPS[name] for name in query.groups() if name != "status"]
            return counter_for(query, names) is not None
        return query.offset <= QUICK_OFFSET and query.sort in QUICK_SORTS and counter_for(query) is not None

    def stats(self, tenant: str, query: StatsQuery, now: str | None = None
              ) -> tuple[list[tuple[tuple[Any, ...], str, int]], int]:
        """Exact counts per group and status: ((group values…), status, count), and the position."""
        names = [name for name in query.groups() if name != "status"]
        counter = counter_for(query, [COUNTED_GROUPS[name] for name in names])
        with self.store.reading() as cursor:
            table, position = self._table_and_position(cursor)
            if counter is not None:
                dim, value = counter
                grouped = bool(names)
                clauses, params = "tenant = ? AND dim = ?", [tenant, dim]
                if value is not None:
                    clauses += " AND value = ?"
                    params.append(value)
                if query.status is not None:
                    clauses += " AND status = ?"
                    params.append(query.status)
                keys = "value, status" if grouped else "status"
                cursor.execute(self._sql(f"SELECT {keys}, SUM(n) AS n FROM {table}_counts WHERE {clauses} "
                                         f"GROUP BY {keys}"), params)
                counts = [((found["value"] or None,) if grouped else (), found["status"], int(found["n"]))
                          for found in cursor.fetchall() if found["n"]]
                return counts, position
            groups = [GROUPS[name] for name in names]
            selected = "".join(f"{expression} AS g{i}, " for i, expression in enumerate(groups))
            grouped_by = "".join(f"g{i}, " for i in range(len(groups)))
            where, params = self._where(table, tenant, query, now)
            cursor.execute(
                self._sql(f"SELECT {selected}status, COUNT(*) AS n FROM {table} WHERE {where} "
                          f"GROUP BY {grouped_by}status"),
                params,
            )
            counts = [(tuple(found[f"g{i}"] for i in range(len(groups))), found["status"], int(found["n"]))
                      for found in cursor.fetchall()]
        return counts, position

    def _counted_total(self, cursor: Cursor, table: str, tenant: str, status: str | None, dim: str,
                       value: str | None) -> int:
        clauses, params = "tenant = ? AND dim = ?", [tenant, dim]
        if value is not None:
            clauses += " AND value = ?"
            params.append(value)
        if status is not None:
            clauses += " AND status = ?"
            params.append(status)
        cursor.execute(self._sql(f"SELECT SUM(n) AS n FROM {table}_counts WHERE {clauses}"), params)
        return int(cursor.fetchone()["n"] or 0)

    def _table_and_position(self, cursor: Cursor) -> tuple[str, int]:
        """The physical table this read uses, and the position it reflects (at least)."""
        if self._pinned is not None:
            return self._pinned, self._position(cursor)
        cursor.execute(self._sql(TABLE_AND_POSITION), (self.name,))
        found = cursor.fetchone()
        if found is None:
            raise LookupError(f"view {self.name} has no table: call create_table() first")
        return str(found["physical"]), int(found["position"] or 0)

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


PAGE_COLUMNS = COLUMNS[:COLUMNS.index("notes")]  # notes is TaskRow's last field: a page's rows default it
PAGE_SELECTED = ", ".join(PAGE_COLUMNS)
QUICK_OFFSET = 500  # rows a quick page may skip
QUICK_SORTS = frozenset({"-createdAt", "createdAt"})  # the order every filter's index ends in


def counted(row: TaskRow) -> tuple[str, ...]:
    """What the counts key a row by: its status, then its value of each COUNTED column."""
    return row.status, row.priority, row.agent_id or "", row.team_id or "", row.created_at[:10]


def counter_for(query: TaskFilters, groups: Sequence[str] = ()) -> tuple[str, str | None] | None:
    """The counts (dim, value or None for every value) that answer a query's filters and groups
    exactly, or None when the query needs a COUNT over the rows."""
    if query.q is not None or query.overdue is not None or query.start_date is not None \
            or query.end_date is not None:
        return None
    filtered = {dim: value for dim in ("priority", "agent_id", "team_id")
                if (value := getattr(query, dim)) is not None}
    dims = set(filtered) | set(groups)
    if len(dims) > 1:
        return None
    dim = next(iter(dims), "priority")
    return dim, filtered.get(dim)


def matches(row: TaskRow, words: Sequence[str]) -> bool:
    """The fold-side meaning of ``q``: every word occurs among the row's words."""
    present = set(_WORD.findall(row.search_text().lower()))
    return all(word in present for word in words)
