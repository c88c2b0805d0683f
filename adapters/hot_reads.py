"""The reads every request makes (its key) and every GET of a task makes (its new events),
done without blocking the event loop for longer than a local file read.

SQLite: the database is a local file, and one indexed lookup on a read-only connection of
the event loop's own (``SqlStore.dedicated_reader``) takes microseconds — less than a hop to a worker
thread would — so it runs inline. PostgreSQL: a lookup is a network round trip, so it
goes through an asyncio connection pool of its own and the loop serves other requests
meanwhile. A revocation is refused from the next request on, in every process: on
PostgreSQL every request reads its key's row; on SQLite a key is kept only while the
database's shared key counter (adapters/changes.py) has not moved.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Protocol
from uuid import UUID

from adapters.changes import KEYS, MAX_TRUST, ChangeCounters
from adapters.codec import decode_event
from adapters.config import Settings
from adapters.keys import SELECT_BY_HASH, Principal, hash_key, principal_of
from adapters.sql import SqlStore
from adapters.sql import _translated as sqlite_error  # one mapping of sqlite3's errors
from domain.application import TaskApplication
from domain.task import Task

KEPT_PRINCIPALS = 4096  # active keys kept between reads; the memo is emptied when full
POOL_WAIT = 1.0  # seconds a PostgreSQL lookup waits for a pooled connection before 503
HOT_PAGE_CACHE_MB = 32  # the event loop's SQLite reader's page cache: keys and recent tasks' events
EVENTS_AFTER = ("SELECT originator_version, topic, state FROM {table} "
                "WHERE originator_id = ? AND originator_version > ? ORDER BY originator_version")


class HotReads(Protocol):
    changes: ChangeCounters | None  # SQLite: the database's change counters; None: read every time

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def principal(self, secret: str) -> Principal | None:
        """Who an active key speaks for; None for an unknown or revoked key."""

    async def task_events(self, task_id: UUID, after: int = 0) -> list[tuple[int, str, bytes]]:
        """The task's events after a version, oldest first, as stored: (version, topic, state).
        No event after the version of a cached copy means that copy is current."""

    def replay(self, task_id: UUID, events: list[tuple[int, str, bytes]]) -> Task | None:
        """The task from all its stored events (pure CPU); None when there are none."""


class _Replay:
    app: TaskApplication

    def replay(self, task_id: UUID, events: list[tuple[int, str, bytes]]) -> Task | None:
        """The mapper's decoding and the repository's replay, straight from the rows' columns
        (adapters/codec.py ``decode_event``, ``Task.replay``)."""
        return Task.replay([decode_event(task_id, version, topic, state) for version, topic, state in events])


class SqliteReads(_Replay):
    """Inline lookups on this thread's SQLite reader connection."""

    def __init__(self, store: SqlStore, app: TaskApplication, cache_mb: int = HOT_PAGE_CACHE_MB) -> None:
        self.store = store
        self.app = app
        self.changes = store.changes
        self._connection = store.dedicated_reader(cache_mb)
        self._events = EVENTS_AFTER.format(table=app.recorder.events_table_name)  # type: ignore[attr-defined]
        # digest → (key counter before the read, monotonic time until which it is trusted, principal)
        self._principals: dict[str, tuple[int, float, Principal]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def principal(self, secret: str) -> Principal | None:
        """An active key's principal, kept while no key changed (adapters/changes.py) for at most
        MAX_TRUST seconds; an unknown or revoked key is read every time."""
        digest = hash_key(secret)
        now = time.monotonic()
        before = self.changes.value(KEYS) if self.changes is not None else None
        kept = self._principals.get(digest)
        if kept is not None and kept[0] == before and kept[1] > now:
            return kept[2]
        rows = self._read(SELECT_BY_HASH, (digest,))
        found = principal_of(rows[0] if rows else None, digest)
        if found is None:
            self._principals.pop(digest, None)
        elif before is not None:
            if len(self._principals) >= KEPT_PRINCIPALS:
                self._principals.clear()
            self._principals[digest] = (before, now + MAX_TRUST, found)
        return found

    async def task_events(self, task_id: UUID, after: int = 0) -> list[tuple[int, str, bytes]]:
        return self._read(self._events, (task_id.hex, after))

    def _read(self, statement: str, params: tuple[Any, ...]) -> list[Any]:
        try:
            return self._connection.execute(statement, params).fetchall()
        except sqlite3.Error as error:
            raise sqlite_error(error) from error


class PostgresReads(_Replay):
    """Lookups through an asyncio connection pool."""

    changes = None  # the database may be shared by hosts: read every time

    def __init__(self, settings: Settings, app: TaskApplication) -> None:
        from psycopg import sql
        from psycopg.conninfo import make_conninfo
        from psycopg_pool import AsyncConnectionPool

        pg = settings.postgres
        self.app = app
        self.pool = AsyncConnectionPool(
            make_conninfo(host=pg.host, port=pg.port, dbname=pg.dbname, user=pg.user, password=pg.password,
                          connect_timeout=3),
            # A request waits at most a second for a connection: while the database is away it gets
            # 503 and Retry-After at once rather than hanging until the outage ends.
            min_size=1, max_size=max(2, settings.pool_size), open=False, timeout=POOL_WAIT, name="hot-reads",
            kwargs={"autocommit": True},
        )
        recorder: Any = app.recorder
        table = sql.Identifier(recorder.datastore.schema, recorder.events_table_name).as_string()
        self._events = EVENTS_AFTER.format(table=table).replace("?", "%s")
        self._key = SELECT_BY_HASH.replace("?", "%s")

    async def start(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    async def principal(self, secret: str) -> Principal | None:
        digest = hash_key(secret)
        rows = await self._rows(self._key, (digest,), dict_row)
        return principal_of(rows[0] if rows else None, digest)

    async def task_events(self, task_id: UUID, after: int = 0) -> list[tuple[int, str, bytes]]:
        return await self._rows(self._events, (task_id, after))  # type: ignore[no-any-return]

    async def _rows(self, statement: str, params: tuple[Any, ...], row_factory: Any = None) -> Any:
        """The rows, retried once on a connection lost since its last use (the pool then replaces it)."""
        import psycopg

        for attempt in (1, 2):
            try:
                async with self.pool.connection() as conn:
                    cursor = conn.cursor(row_factory=row_factory) if row_factory else conn.cursor()
                    await cursor.execute(statement, params, prepare=True)
                    return await cursor.fetchall()
            except psycopg.OperationalError as error:
                if attempt == 2 or isinstance(error, _pool_timeout()):
                    raise _translated(error) from error
            except psycopg.Error as error:
                raise _translated(error) from error
        raise AssertionError("unreachable")


def dict_row(cursor: Any) -> Any:
    from psycopg.rows import dict_row as factory

    return factory(cursor)


def _pool_timeout() -> type[Exception]:
    from psycopg_pool import PoolTimeout

    return PoolTimeout


def _translated(error: Exception) -> Exception:
    """psycopg's error as the library's, so that http/errors.py maps it (503 when the database is away)."""
    import psycopg
    from eventsourcing import persistence

    if isinstance(error, psycopg.OperationalError):
        return persistence.OperationalError(error)
    if isinstance(error, psycopg.InterfaceError):
        return persistence.InterfaceError(error)
    if isinstance(error, psycopg.ProgrammingError):
        return persistence.ProgrammingError(error)
    return persistence.PersistenceError(error)


def open_reads(settings: Settings, store: SqlStore, app: TaskApplication) -> HotReads:
    """The hot reads for the database the settings name."""
    if settings.is_postgres:
        return PostgresReads(settings, app)
    return SqliteReads(store, app)
