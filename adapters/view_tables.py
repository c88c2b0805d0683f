"""What every SQL view shares: its table, its tracking row, batches applied exactly once,
and a blue/green rebuild beside the live copy.

A view has a logical name (``task_list``) and lives in a physical table that
the ``projection_tables`` registry names (``task_list_s2``, later
``task_list_s2_g1700000000``). Each physical table has its own tracking row,
advanced in the same transaction as its rows, by compare-and-set: a batch
applies only if the table is still where its reader found it. A rebuild
fills a new table beside the live one and then repoints the registry in one
transaction; writers and readers resolve the table in each transaction, so
queries keep being answered from the old copy until the swap. The old copy is
dropped at the next swap, not at this one, so that no reader loses its table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import Any, Generic, TypeVar

from eventsourcing.persistence import IntegrityError, Tracking

from adapters.sql import Cursor, SqlStore
from domain.ids import public_id
from domain.task import TaskCreated, TaskEvent
from projections.runner import PositionMovedError

R = TypeVar("R")

CREATE_REGISTRY = """
CREATE TABLE IF NOT EXISTS projection_tables (
    name TEXT PRIMARY KEY,
    physical TEXT NOT NULL
)"""
CREATE_TRACKING = """
CREATE TABLE IF NOT EXISTS projection_tracking (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
)"""
SELECT_PHYSICAL = "SELECT physical FROM projection_tables WHERE name = ?"
SET_PHYSICAL = (
    "INSERT INTO projection_tables (name, physical) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET physical = excluded.physical"
)
SQLITE_CACHE = "PRAGMA cache_size = -65536"  # KiB: 64 MiB per writing connection (the default is 2 MiB)
# A write that changes nothing, so that a batch's transaction is a writer from its first statement.
CLAIM = "UPDATE projection_tables SET physical = physical WHERE name = ? RETURNING physical"
SELECT_POSITION = "SELECT position FROM projection_tracking WHERE name = ?"
LOCK_POSITION = SELECT_POSITION + " FOR UPDATE"
INIT_TRACKING = "INSERT INTO projection_tracking (name, position) VALUES (?, 0) ON CONFLICT (name) DO NOTHING"
# Forward only: a batch already applied (or older) is refused, which rolls back the whole batch.
ADVANCE = (
    "INSERT INTO projection_tracking (name, position) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET position = excluded.position "
    "WHERE projection_tracking.position < excluded.position RETURNING position"
)
# Compare-and-set: only from the position the batch was read after.
ADVANCE_FROM = (
    "INSERT INTO projection_tracking (name, position) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET position = excluded.position "
    "WHERE projection_tracking.position = ? RETURNING position"
)
SELECT_TRACKED = "SELECT name FROM projection_tracking"
DROP_TRACKING = "DELETE FROM projection_tracking WHERE name = ?"


class TableView(Generic[R]):
    """A read model in one SQL table, kept from the event log in batches."""

    schema = 1  # bump when the columns change: a new table is then built from position 0
    columns: tuple[str, ...] = ()

    def __init__(self, store: SqlStore, name: str, *, pinned: str | None = None) -> None:
        self.store = store
        self.name = name
        self._pinned = pinned
        self._sql = store.dialect.sql
        self._is_pg = store.dialect.is_postgres

    # --- what each view says -------------------------------------------------

    def table_ddl(self, table: str) -> list[str]:
        raise NotImplementedError

    def index_ddl(self, table: str) -> list[str]:
        return []

    def drop_ddl(self, table: str) -> list[str]:
        return [f"DROP TABLE IF EXISTS {table}"]

    def new_row(self, event: TaskCreated, position: int) -> R:
        raise NotImplementedError

    def fold(self, row: R, event: TaskEvent, position: int) -> bool:
        raise NotImplementedError

    def to_row(self, found: Any) -> R:
        return self.row_type(**{col: found[col] for col in self.columns})  # type: ignore[attr-defined,no-any-return]

    def after_write(self, cursor: Cursor, table: str, created: list[R], changed: list[R],
                    before: dict[str, Any]) -> None:
        """Keep side tables (a full-text index) in step with the rows just written."""

    # --- table lifecycle -----------------------------------------------------

    @property
    def default_table(self) -> str:
        return f"{self.name}_s{self.schema}"

    def create_table(self, *, replace_older: bool = True) -> None:
        """Create the registry, tracking and this view's table (a fresh one if the schema changed;
        with ``replace_older=False`` a table of an older schema is left as it is: see older_table)."""
        with self.store.transaction(commit=True) as cursor:
            if self._is_pg:  # concurrent starters wait for the first
                cursor.execute("SELECT pg_advisory_xact_lock(72631)")
            cursor.execute(CREATE_REGISTRY)
            cursor.execute(CREATE_TRACKING)
            table = self._pinned or self._registered(cursor)
            if table is None or not table.startswith(self.default_table):
                if table is not None:
                    if not replace_older:
                        return
                    self._drop(cursor, table)
                table = self.default_table
                cursor.execute(self._sql(SET_PHYSICAL), (self.name, table))
            for statement in self.table_ddl(table):
                cursor.execute(statement)
            if self._pinned is None:
                for statement in self.index_ddl(table):
                    cursor.execute(statement)
            cursor.execute(self._sql(INIT_TRACKING), (table,))

    def older_table(self) -> str | None:
        """The live table, if it was built by an older schema than this build's (the next
        create_table() replaces it with a fresh one, built from the log)."""
        with self.store.transaction(commit=False) as cursor:
            table = self._pinned or self._registered(cursor)
        return None if table is None or table.startswith(self.default_table) else table

    def create_indexes(self) -> None:
        with self.store.transaction(commit=True) as cursor:
            if not self._is_pg:
                cursor.execute(SQLITE_CACHE)
            for statement in self.index_ddl(self.table(cursor)):
                cursor.execute(statement)

    def beside(self) -> TableView[R]:
        """An empty copy in a new table, built while this one keeps answering."""
        fresh = type(self)(self.store, self.name, pinned=f"{self.default_table}_g{time.time_ns() // 1000}")
        fresh.create_table()
        return fresh

    def swap_in(self, fresh: TableView[R]) -> bool:
        """Make ``fresh`` the live copy in one transaction, if it has reached the live one."""
        with self.store.transaction(commit=True) as cursor:
            old = self._claim(cursor)
            new = fresh.table(cursor)
            live = self._lock_position(cursor, old) if old else 0
            if self._lock_position(cursor, new) < live:
                return False  # the live copy moved on meanwhile: catch up and try again
            cursor.execute(self._sql(SET_PHYSICAL), (self.name, new))
            # The copy just replaced stays until the next swap: a reader on PostgreSQL that looked
            # up the table a moment before this commit may still be about to read it.
            cursor.execute(SELECT_TRACKED)
            for found in cursor.fetchall():
                table = str(found["name"])
                if table.startswith(f"{self.name}_s") and table not in (old, new):
                    self._drop(cursor, table)
        return True

    def discard(self) -> None:
        """Drop this (unswapped) copy."""
        with self.store.transaction(commit=True) as cursor:
            self._drop(cursor, self.table(cursor))

    def _drop(self, cursor: Cursor, table: str) -> None:
        for statement in self.drop_ddl(table):
            cursor.execute(statement)
        cursor.execute(self._sql(DROP_TRACKING), (table,))

    def table(self, cursor: Cursor) -> str:
        """The physical table this view reads and writes in this transaction."""
        if self._pinned is not None:
            return self._pinned
        table = self._registered(cursor)
        if table is None:
            raise LookupError(f"view {self.name} has no table: call create_table() first")
        return table

    def _claim(self, cursor: Cursor) -> str:
        if self._pinned is not None:
            return self._pinned
        cursor.execute(self._sql(CLAIM), (self.name,))
        found = cursor.fetchone()
        if found is None:
            raise LookupError(f"view {self.name} has no table: call create_table() first")
        return str(found["physical"])

    def _registered(self, cursor: Cursor) -> str | None:
        cursor.execute(self._sql(SELECT_PHYSICAL), (self.name,))
        found = cursor.fetchone()
        return None if found is None else str(found["physical"])

    # --- positions -------------------------------------------------------------

    def position(self) -> int:
        with self.store.transaction(commit=False) as cursor:
            return self._position(cursor)

    def _position(self, cursor: Cursor) -> int:
        cursor.execute(self._sql(SELECT_POSITION), (self.table(cursor),))
        found = cursor.fetchone()
        return 0 if found is None else int(found["position"])

    def _lock_position(self, cursor: Cursor, table: str) -> int:
        cursor.execute(self._sql(LOCK_POSITION if self._is_pg else SELECT_POSITION), (table,))
        found = cursor.fetchone()
        return 0 if found is None else int(found["position"])

    def _advance(self, cursor: Cursor, table: str, tracking: Tracking, after: int | None) -> None:
        if after is None:
            cursor.execute(self._sql(ADVANCE), (table, tracking.notification_id))
        else:
            cursor.execute(self._sql(ADVANCE_FROM), (table, tracking.notification_id, after))
        if cursor.fetchone() is None:
            if after is not None:
                raise PositionMovedError(f"{self.name} is no longer at {after}")
            raise IntegrityError(f"{self.name} is already at or past {tracking.notification_id}")

    # --- a batch, exactly once -------------------------------------------------

    def apply_batch(self, batch: Sequence[tuple[int, TaskEvent]], tracking: Tracking,
                    after: int | None = None) -> None:
        """Fold the batch into the rows it touches and write them, with the batch's
        last position, in one transaction; ``after`` makes the advance a compare-and-set."""
        keys: dict[int, str] = {}
        created: set[str] = set()
        for _, event in batch:
            number = event.originator_id.int
            if number not in keys:
                keys[number] = public_id(event.originator_id)
            if type(event) is TaskCreated:
                created.add(keys[number])
        with self.store.transaction(commit=True) as cursor:
            if not self._is_pg:  # the rows a batch loads are spread over a large table: cache more of it
                cursor.execute(SQLITE_CACHE)
            table = self._claim(cursor)  # a write first: takes the write lock at once (SQLite), or the row (PG)
            self._advance(cursor, table, tracking, after)
            rows = self._load(cursor, table, [key for key in keys.values() if key not in created])
            remembered = self.remembered
            before = {key: remembered(row) for key, row in rows.items()} if self.remember else {}
            new: dict[str, R] = {}
            touched: set[str] = set()
            fold, new_row = self.fold, self.new_row
            for position, event in batch:
                key = keys[event.originator_id.int]
                row = rows.get(key)
                if row is None:
                    if type(event) is TaskCreated:
                        rows[key] = new[key] = new_row(event, position)  # type: ignore[arg-type]
                elif fold(row, event, position):
                    touched.add(key)
            values = self._values
            changed = [rows[key] for key in touched if key not in new]
            if new:
                cursor.executemany(self._sql(self._insert_sql(table)), [values(r) for r in new.values()])
            if changed:
                cursor.executemany(self._sql(self._upsert_sql(table)), [values(r) for r in changed])
            self.after_write(cursor, table, list(new.values()), changed, before)

    remember: str | None = None  # a field whose value before the batch after_write is given

    def remembered(self, row: R) -> Any:
        """What after_write is given of a loaded row as it was before the batch (``remember``'s value)."""
        return getattr(row, self.remember)  # type: ignore[arg-type]

    @property
    def _values(self) -> Callable[[R], tuple[Any, ...]]:
        return attrgetter(*self.columns)  # type: ignore[return-value]

    def _insert_sql(self, table: str) -> str:
        return f"INSERT INTO {table} ({', '.join(self.columns)}) VALUES ({', '.join('?' for _ in self.columns)})"

    def _upsert_sql(self, table: str) -> str:
        updates = ", ".join(f"{col} = excluded.{col}" for col in self.columns if col != "task_id")
        return self._insert_sql(table) + f" ON CONFLICT (task_id) DO UPDATE SET {updates}"

    def _load(self, cursor: Cursor, table: str, task_ids: Iterable[str]) -> dict[str, R]:
        rows: dict[str, R] = {}
        ids = list(task_ids)
        columns = ", ".join(self.columns)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            cursor.execute(self._sql(f"SELECT {columns} FROM {table} WHERE task_id IN ({marks})"), chunk)
            for found in cursor.fetchall():
                rows[found["task_id"]] = self.to_row(found)
        return rows

    def all_rows(self) -> list[R]:
        """Every row, in task id order (for rebuild checks and exports)."""
        with self.store.transaction(commit=False) as cursor:
            table = self.table(cursor)
            cursor.execute(f"SELECT {', '.join(self.columns)} FROM {table} ORDER BY task_id")
            return [self.to_row(found) for found in cursor.fetchall()]
