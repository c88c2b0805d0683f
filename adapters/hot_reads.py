"""The reads every request makes (its key) and every GET of a task makes (its version),
done without blocking the event loop for longer than a local file read.

SQLite: the database is a local file, and one indexed lookup on the per-thread reader
connection (``SqlStore.reading()``) takes microseconds — less than a hop to a worker
thread would — so it runs inline. PostgreSQL: a lookup is a network round trip, so it
goes through an asyncio connection pool of its own and the loop serves other requests
meanwhile. Neither caches a key: every request reads the key's row as committed now,
so a revocation is refused from the next request on, in every process.
"""

from __future__ import annotations

from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from adapters.config import Settings
from adapters.keys import SELECT_BY_HASH, Principal, hash_key, principal_of
from adapters.sql import SqlStore
from domain.application import TaskApplication
from domain.task import Task

NEWEST_VERSION = "SELECT originator_version AS v FROM {table} WHERE originator_id = ? " \
                 "ORDER BY originator_version DESC LIMIT 1"
EVENTS = "SELECT originator_version, topic, state FROM {table} WHERE originator_id = ? ORDER BY originator_version"


class HotReads(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def principal(self, secret: str) -> Principal | None:
        """Who an active key speaks for; None for an unknown or revoked key."""

    async def task_version(self, task_id: UUID) -> int | None:
        """The version of the task's newest event now; None when there is no such task."""

    def load(self, task_id: UUID) -> Task | None:
        """The task replayed from its events (blocking: call it off the loop)."""


class SqliteReads:
    """Inline lookups on this thread's SQLite reader connection."""

    def __init__(self, store: SqlStore, app: TaskApplication) -> None:
        self.store = store
        self.app = app
        table = app.recorder.events_table_name  # type: ignore[attr-defined]
        self._newest = NEWEST_VERSION.format(table=table)
        self._events = EVENTS.format(table=table)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def principal(self, secret: str) -> Principal | None:
        digest = hash_key(secret)
        with self.store.reading() as cursor:
            cursor.execute(SELECT_BY_HASH, (digest,))
            return principal_of(cursor.fetchone(), digest)

    async def task_version(self, task_id: UUID) -> int | None:
        with self.store.reading() as cursor:
            cursor.execute(self._newest, (task_id.hex,))
            row = cursor.fetchone()
        return None if row is None else int(row["v"])

    def load(self, task_id: UUID) -> Task | None:
        with self.store.reading() as cursor:
            cursor.execute(self._events, (task_id.hex,))
            rows = cursor.fetchall()
        to_domain_event = self.app.mapper.to_domain_event
        task: Any = None
        for row in rows:
            event = to_domain_event(StoredEvent(task_id, row["originator_version"], row["topic"], row["state"]))
            task = event.mutate(task)
        return task  # type: ignore[no-any-return]


class PostgresReads:
    """Lookups through an asyncio connection pool; replays through the library's pool."""

    def __init__(self, settings: Settings, app: TaskApplication) -> None:
        from psycopg import sql
        from psycopg.conninfo import make_conninfo
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        pg = settings.postgres
        self.app = app
        self.pool = AsyncConnectionPool(
            make_conninfo(host=pg.host, port=pg.port, dbname=pg.dbname, user=pg.user, password=pg.password,
                          connect_timeout=3),
            min_size=1, max_size=max(2, settings.pool_size), open=False, timeout=5.0, name="hot-reads",
            kwargs={"autocommit": True, "row_factory": dict_row},
        )
        recorder: Any = app.recorder
        table = sql.Identifier(recorder.datastore.schema, recorder.events_table_name).as_string()
        self._newest = NEWEST_VERSION.format(table=table).replace("?", "%s")
        self._key = SELECT_BY_HASH.replace("?", "%s")

    async def start(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    async def principal(self, secret: str) -> Principal | None:
        digest = hash_key(secret)
        return principal_of(await self._one(self._key, (digest,)), digest)

    async def task_version(self, task_id: UUID) -> int | None:
        row = await self._one(self._newest, (task_id,))
        return None if row is None else int(row["v"])

    def load(self, task_id: UUID) -> Task | None:
        from eventsourcing.application import AggregateNotFoundError

        try:
            return self.app.repository.get(task_id)  # type: ignore[no-any-return]
        except AggregateNotFoundError:
            return None

    async def _one(self, statement: str, params: tuple[Any, ...]) -> Any:
        """One row, retried once on a connection lost since its last use (the pool then replaces it)."""
        import psycopg

        for attempt in (1, 2):
            try:
                async with self.pool.connection() as conn:
                    cursor = await conn.execute(statement, params, prepare=True)
                    return await cursor.fetchone()
            except psycopg.OperationalError as error:
                if attempt == 2 or isinstance(error, _pool_timeout()):
                    raise _translated(error) from error
            except psycopg.Error as error:
                raise _translated(error) from error
        raise AssertionError("unreachable")


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
