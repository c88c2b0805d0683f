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

import asyncio
import collections
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

    def remembered(self, secret: str) -> Principal | None:
        """Who a key spoke for when it was last read, without reading it now; None when that is
        not known. A write sent with it has its key confirmed in the commit's own transaction
        (domain/application.py ``Job.check_key``), and any other answer only after a read."""

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

    def remembered(self, secret: str) -> Principal | None:
        return None  # principal() is as cheap, and as current, from its counter-checked memo

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
    """Lookups on connections leased from an asyncio connection pool.

    psycopg_pool's checkout and return cost ~40 µs of the event loop's CPU each (locks,
    checks, statistics): as much as the query's own client side. So this keeps the
    connections it has taken from the pool and hands them out itself; the pool still
    opens them (and reconnects about every second while the database is away), and
    takes back a broken one, which it discards."""

    changes = None  # the database may be shared by hosts: read every time (but see remembered())

    def __init__(self, settings: Settings, app: TaskApplication) -> None:
        from psycopg import sql
        from psycopg.conninfo import make_conninfo
        from psycopg_pool import AsyncConnectionPool

        pg = settings.postgres
        self.app = app
        self.max_size = max(2, settings.pool_size)
        self.pool = AsyncConnectionPool(
            make_conninfo(host=pg.host, port=pg.port, dbname=pg.dbname, user=pg.user, password=pg.password,
                          connect_timeout=3),
            # A request waits at most a second for a connection: while the database is away it gets
            # 503 and Retry-After at once rather than hanging until the outage ends.
            min_size=1, max_size=self.max_size, open=False, timeout=POOL_WAIT, name="hot-reads",
            kwargs={"autocommit": True},
        )
        recorder: Any = app.recorder
        table = sql.Identifier(recorder.datastore.schema, recorder.events_table_name).as_string()
        self._events = EVENTS_AFTER.format(table=table).replace("?", "%s")
        self._keys = SELECT_BY_HASHES.replace("?", "%s")
        self._events_of_many = EVENTS_OF_MANY.format(table=table).replace("?", "%s")
        self._wanted_keys: dict[str, list[asyncio.Future[Any]]] = {}
        self._wanted_events: dict[tuple[UUID, int], list[asyncio.Future[Any]]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._idle: list[Any] = []  # leased connections not in use, most recently used last
        self._leased = 0
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._remembered: dict[str, Principal] = {}  # digest → principal of an active key, as last read

    async def start(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        for waiter in self._waiting:
            if not waiter.done():
                waiter.cancel()
        idle, self._idle = self._idle, []
        for conn in idle:
            await self.pool.putconn(conn)
        await self.pool.close()

    async def principal(self, secret: str) -> Principal | None:
        digest = hash_key(secret)
        row = await self._wait(self._wanted_keys, digest, self._look_up_keys)
        found = principal_of(row, digest)
        if found is None:
            self._remembered.pop(digest, None)
        else:
            if len(self._remembered) >= KEPT_PRINCIPALS and digest not in self._remembered:
                self._remembered.clear()
            self._remembered[digest] = found
        return found

    def remembered(self, secret: str) -> Principal | None:
        """A key's principal as last read. Nothing but a write may be answered on it: a key
        is only ever revoked, never changed, so the commit's check that it is still active
        (``TasksEventRecorder``'s checked append) is all a write needs."""
        return self._remembered.get(hash_key(secret))

    async def task_events(self, task_id: UUID, after: int = 0) -> list[tuple[int, str, bytes]]:
        return await self._wait(self._wanted_events, (task_id, after), self._look_up_events)  # type: ignore[no-any-return]

    # Lookups that arrive together go to the database together: the first opens a batch and
    # starts its query on the loop's next turn; every lookup made meanwhile joins it, and the
    # query serves them all in one statement. A lookup only joins a query not yet sent, so it
    # still reads what was committed when it was asked (a key revoked a moment before is refused).

    async def _wait(self, wanted: dict[Any, list[asyncio.Future[Any]]], key: Any, look_up: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        if not wanted:
            asyncio.get_running_loop().call_soon(self._start, look_up)
        waiting = wanted.get(key)
        if waiting is None:
            wanted[key] = [future]
        else:
            waiting.append(future)
        return await future

    def _start(self, look_up: Any) -> None:
        task = asyncio.ensure_future(look_up())
        self._running.add(task)  # the loop holds tasks weakly
        task.add_done_callback(self._running.discard)

    async def _look_up_keys(self) -> None:
        wanted, self._wanted_keys = self._wanted_keys, {}
        try:
            rows = await self._rows(self._keys, (list(wanted),))
        except Exception as error:  # noqa: BLE001 - every lookup of the batch learns it
            _fail(wanted, error)
            return
        found = {row[1]: dict(zip(KEY_COLUMNS, row)) for row in rows}
        for digest, futures in wanted.items():
            _answer(futures, found.get(digest))

    async def _look_up_events(self) -> None:
        wanted, self._wanted_events = self._wanted_events, {}
        try:
            if len(wanted) == 1:
                ((task_id, after),) = wanted
                rows = [(0, *row) for row in await self._rows(self._events, (task_id, after))]
            else:
                asked = list(wanted)
                rows = await self._rows(self._events_of_many,
                                        ([task_id for task_id, _ in asked], [after for _, after in asked]))
        except Exception as error:  # noqa: BLE001 - every lookup of the batch learns it
            _fail(wanted, error)
            return
        by_ask: list[list[tuple[int, str, bytes]]] = [[] for _ in wanted]
        for index, version, topic, state in rows:
            by_ask[index].append((version, topic, state))
        for found, futures in zip(by_ask, wanted.values()):
            _answer(futures, found)

    async def _rows(self, statement: str, params: tuple[Any, ...]) -> Any:
        """The rows, retried once on a connection lost since its last use (the pool then replaces it);
        psycopg's errors as the library's (``pg.translated``), which http/errors.py maps (503)."""
        import psycopg

        from adapters.pg import translated

        for attempt in (1, 2):
            try:
                conn = await self._lease()
            except psycopg.Error as error:  # PoolTimeout: no connection within POOL_WAIT
                raise translated(error) from error
            try:
                cursor = conn.cursor()
                await cursor.execute(statement, params, prepare=True)
                rows = await cursor.fetchall()
            except psycopg.OperationalError as error:
                await self._give_back(conn)
                if attempt == 2:
                    raise translated(error) from error
                await self._check_idle()  # the others may have broken with it: drop them before retrying
                continue
            except BaseException as error:
                await self._give_back(conn)
                if isinstance(error, psycopg.Error):
                    raise translated(error) from error
                raise
            self._release(conn)
            return rows
        raise AssertionError("unreachable")

    async def _lease(self) -> Any:
        if self._idle:
            return self._idle.pop()
        if self._leased < self.max_size:
            self._leased += 1
            try:
                return await self.pool.getconn()
            except BaseException:
                self._leased -= 1
                raise
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            return await asyncio.wait_for(waiter, POOL_WAIT)
        except BaseException as error:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result())  # handed over just as this request gave up
            if isinstance(error, TimeoutError):
                from psycopg_pool import PoolTimeout

                raise PoolTimeout(f"no connection to the database within {POOL_WAIT} s") from None
            raise
        finally:
            if waiter in self._waiting:
                self._waiting.remove(waiter)

    async def _check_idle(self) -> None:
        """Hand every idle leased connection back to the pool and have the pool test them all, so
        that one broken by a restart of the database (unused since) is replaced, not leased next."""
        idle, self._idle = self._idle, []
        for conn in idle:
            self._leased -= 1
            await self.pool.putconn(conn)
        await self.pool.check()

    def _release(self, conn: Any) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    async def _give_back(self, conn: Any) -> None:
        """A connection that failed, or was interrupted mid-statement: back to the pool,
        which discards it if broken; a waiting request then leases a new one."""
        self._leased -= 1
        await self.pool.putconn(conn)
        while self._waiting and self._waiting[0].done():
            self._waiting.popleft()
        if self._waiting:
            waiter = self._waiting.popleft()
            self._leased += 1
            try:
                conn = await self.pool.getconn()
            except BaseException as error:  # noqa: BLE001 - the waiter learns it
                self._leased -= 1
                if not waiter.done():
                    waiter.set_exception(error)
                return
            if waiter.done():
                self._release(conn)
            else:
                waiter.set_result(conn)


KEY_COLUMNS = ("key_id", "key_hash", "tenant", "role", "agent_id")  # SELECT_BY_HASH's columns, in order
SELECT_BY_HASHES = SELECT_BY_HASH.replace("key_hash = ?", "key_hash = ANY(?)")
# Several tasks' events after their versions, each row tagged with its ask's index (0-based).
# A LATERAL subquery with its own ORDER BY is never flattened into a join, so each asked task
# is an index lookup: as a plain join, a table not yet ANALYZEd (every one just after a bulk
# load) got a parallel sequential scan and a hash join, 109 ms instead of 0.6 ms for 30 tasks
# among 100k.
EVENTS_OF_MANY = ("SELECT a.n - 1 AS n, e.originator_version, e.topic, e.state "
                  "FROM unnest(?::uuid[], ?::bigint[]) WITH ORDINALITY AS a(id, after, n) "
                  "CROSS JOIN LATERAL (SELECT originator_version, topic, state FROM {table} "
                  "WHERE originator_id = a.id AND originator_version > a.after ORDER BY originator_version) e "
                  "ORDER BY a.n, e.originator_version")


def _answer(futures: list[asyncio.Future[Any]], value: Any) -> None:
    for future in futures:
        if not future.done():  # the request may have gone
            future.set_result(value)


def _fail(wanted: dict[Any, list[asyncio.Future[Any]]], error: Exception) -> None:
    for futures in wanted.values():
        for future in futures:
            if not future.done():
                future.set_exception(error)


def open_reads(settings: Settings, store: SqlStore, app: TaskApplication) -> HotReads:
    """The hot reads for the database the settings name."""
    if settings.is_postgres:
        return PostgresReads(settings, app)
    return SqliteReads(store, app)
