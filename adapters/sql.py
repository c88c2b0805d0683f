"""The two SQL stores we run on, behind one small seam.

Stores write their SQL once, with ``?`` placeholders and portable syntax
(``ON CONFLICT … DO UPDATE``, ``RETURNING``); the dialect turns the marks into
psycopg's ``%s`` on PostgreSQL. Connections, pooling and error translation are
the eventsourcing library's datastores, so every store shares its behaviour.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from adapters.changes import open_counters
from adapters.config import Settings


class Cursor(Protocol):
    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, sql: Any, params: Any, /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...


class Datastore(Protocol):
    def transaction(self, *, commit: bool) -> Any: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Dialect:
    name: str

    @property
    def is_postgres(self) -> bool:
        return self.name == "postgresql"

    def sql(self, text: str) -> str:
        """The statement with this store's placeholder marks."""
        return text.replace("?", "%s") if self.is_postgres else text


SQLITE = Dialect("sqlite")
POSTGRES = Dialect("postgresql")


# The event loop's reader maps at most the first 128 MB of the database file. Mapped pages it has
# read count in the process's RSS (as shared file pages, which the kernel can drop), so the map's
# size bounds what the reads add to it: with 2 GB, RSS peaked at 1.1 GB in the 1M-task bench, with
# 256 MB at 509 MB (262 MB after the runs). 128 MB holds a 100k-task database whole.
READER_MMAP_BYTES = 128 * 1024 * 1024


class SqlStore:
    """A datastore and its dialect: what every read-model and key store is built on."""

    def __init__(self, datastore: Datastore, dialect: Dialect, sqlite_path: str | None = None,
                 *, relaxed: bool = False, pool_size: int = 5, counters: bool = True) -> None:
        self.datastore = datastore
        self.dialect = dialect
        self.relaxed = relaxed  # commits may be lost on power loss (never torn): for rebuildable views
        self._views: SqlStore | None = None
        self._pool_size = pool_size
        self._sqlite_path = sqlite_path
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        # SQLite: counters every process of this database bumps after a commit (adapters/changes.py)
        self.changes = open_counters(sqlite_path) if sqlite_path is not None and counters else None
        self._quick: Any = None  # PostgreSQL: adapters.pg.quick_pool, for reading() and together()
        self._quick_owner: SqlStore = self  # whose quick pool this store uses

    @property
    def sqlite_path(self) -> str | None:
        """The SQLite file this store reads and writes (None on PostgreSQL)."""
        return self._sqlite_path

    @contextmanager
    def reading(self) -> Iterator[Cursor]:
        """A read-only transaction for the hot paths (key checks, gets, lists).

        On SQLite each thread keeps a connection of its own, outside the library's pool:
        a read never queues behind a writer that waits for the pool's write lock, and WAL
        lets it run beside a commit. On PostgreSQL each statement runs on its own on an
        autocommit connection of a pool that pings only rested connections (adapters/pg.py):
        no ping, BEGIN or ROLLBACK round trips. Under READ COMMITTED a transaction gave each
        statement its own snapshot anyway, so the reads see nothing they could not before."""
        if self._sqlite_path is None:
            if not self.dialect.is_postgres:
                with self.transaction(commit=False) as cursor:
                    yield cursor
                return
            with self._quick_connection() as conn:
                yield conn.cursor()
            return
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._open_reader()
        try:
            cursor = connection.execute("BEGIN")
            try:
                yield cursor
            finally:
                connection.execute("ROLLBACK")
        except sqlite3.Error as error:
            raise _translated(error) from error

    def dedicated_reader(self, cache_mb: int) -> sqlite3.Connection:
        """A read-only SQLite connection for one caller, with a page cache of its own of
        ``cache_mb`` (SQLite's default is 2 MB); closed with the store.

        It reads the database file through a memory map (``mmap_size``, the first
        ``READER_MMAP_BYTES`` of the file): a page is read where the kernel's page cache holds
        it instead of by a ``pread`` and a copy into SQLite's cache, which took ~5-20 % off a
        GET of an uncached task at 100k tasks (README: "GET of an uncached task"). Only reads
        use the map; the WAL is read as before, so pages a writer has just committed are seen
        at once."""
        connection = self._open_reader()
        connection.execute(f"PRAGMA cache_size = -{int(cache_mb) * 1024}")
        connection.execute(f"PRAGMA mmap_size = {READER_MMAP_BYTES}")
        return connection

    def _open_reader(self) -> sqlite3.Connection:
        assert self._sqlite_path is not None
        try:
            connection = sqlite3.connect(self._sqlite_path, uri=True, isolation_level=None, timeout=5.0,
                                         check_same_thread=False, cached_statements=256)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA query_only = ON")
        except sqlite3.Error as error:
            raise _translated(error) from error
        with self._readers_lock:
            self._readers.append(connection)
        return connection

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[Cursor]:
        joined = getattr(self._local, "together", None)
        if joined is not None:  # inside together(): part of the caller's one transaction
            if not self.dialect.is_postgres:
                yield joined
                return
            with joined.connection.cursor() as cursor:  # see together()
                yield cursor
            return
        with self.datastore.transaction(commit=commit) as cursor:
            if commit and self.relaxed and self.dialect.is_postgres:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
            yield cursor

    @contextmanager
    def together(self) -> Iterator[Cursor]:
        """One transaction for every transaction opened on this store by this thread inside:
        several views apply a batch and advance their positions all at once, or not at all.

        On PostgreSQL the transaction runs in psycopg's pipeline mode: a statement whose rows
        are not asked for (an insert, an upsert) is sent without waiting for its answer, so
        the round trips are the reads (a position, rows to fold), not every statement. Each
        transaction opened inside gets a cursor of its own on the one connection: on a shared
        cursor, a view's first read after the previous view's large ``executemany`` now and
        then got that insert's result instead of its own ("the last operation didn't produce
        records"), and the whole batch fell back to a transaction per view."""
        if not self.dialect.is_postgres:
            with self.transaction(commit=True) as cursor:
                self._local.together = cursor
                try:
                    yield cursor
                finally:
                    self._local.together = None
            return
        with self._quick_connection() as conn, conn.pipeline(), conn.transaction():
            cursor = conn.cursor()
            if self.relaxed:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
            self._local.together = cursor
            try:
                yield cursor
            finally:
                self._local.together = None

    @contextmanager
    def _quick_connection(self) -> Iterator[Any]:
        """A connection of the PostgreSQL quick pool, its errors as the library's."""
        import psycopg

        from adapters.pg import quick_pool, translated

        owner = self._quick_owner
        if owner._quick is None:
            with owner._readers_lock:
                if owner._quick is None:
                    source: Any = self.datastore.pool  # type: ignore[attr-defined]
                    owner._quick = quick_pool(dict(source.kwargs or {}), max_size=source.max_size,
                                              timeout=source.timeout, name="quick")
        try:
            with owner._quick.connection() as conn:
                yield conn
        except psycopg.Error as error:
            raise translated(error) from error

    def for_views(self) -> SqlStore:
        """The store of the read models, with commits that do not wait for the disk.

        A view and its tracking position commit together, so a commit lost to a power cut
        (never a torn one: SQLite's WAL and PostgreSQL's log keep them atomic) only puts the
        view back a little, and its runner applies those events again from the log. The
        events themselves, keys and idempotency records keep fully durable commits.
        On SQLite the views live in a file of their own beside the database (``views_path``),
        so that whoever keeps them (the API's writer, a ``tasks project`` worker) never holds
        the write lock that appending events needs; their connections commit with
        ``synchronous = NORMAL`` (a commit is ~17 µs instead of an fsync of ~0.5–2 ms here).
        On PostgreSQL, the same database with ``synchronous_commit = off`` for each view
        transaction, on the same pool."""
        if self.relaxed:
            return self
        if self._views is None:
            if self._sqlite_path is None:
                self._views = SqlStore(self.datastore, self.dialect, relaxed=True)
                self._views._quick_owner = self  # one quick pool for both
            else:
                path = views_path(self._sqlite_path)
                self._views = SqlStore(_relaxed_sqlite(path, self._pool_size), self.dialect, path,
                                       relaxed=True, pool_size=self._pool_size, counters=False)
        return self._views

    def create_tables(self, *statements: str) -> None:
        """Run DDL in one transaction; on PostgreSQL, processes that start together take turns."""
        with self.transaction(commit=True) as cursor:
            if self.dialect.is_postgres:
                cursor.execute("SELECT pg_advisory_xact_lock(72631)")
            for statement in statements:
                cursor.execute(statement)

    def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        with self.transaction(commit=False) as cursor:
            cursor.execute("SELECT 1 AS ok")
            cursor.fetchone()

    def close(self) -> None:
        if self._views is not None and self._views.datastore is not self.datastore:
            self._views.close()
        if self._quick is not None:
            self._quick.close()
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for connection in readers:
            connection.close()
        if self.changes is not None:
            self.changes.close()
        self.datastore.close()


VIEWS_SUFFIX = ".views"


def views_path(database: str) -> str:
    """The SQLite file that holds the views of the database at ``database`` (README: "The
    views' own file"). Everything in it is rebuilt from the event log when it is missing."""
    return database + VIEWS_SUFFIX


def _relaxed_sqlite(path: str, pool_size: int) -> Datastore:
    from eventsourcing.sqlite import SQLiteConnection, SQLiteDatastore

    from adapters.recorder import CachingPool

    class RelaxedPool(CachingPool):
        def _create_connection(self) -> SQLiteConnection:
            connection = super()._create_connection()
            connection.cursor().execute("PRAGMA synchronous = NORMAL")
            return connection

    datastore = SQLiteDatastore(path, pool_size=pool_size)
    datastore.pool.close()
    datastore.pool = RelaxedPool(db_name=path, pool_size=pool_size)
    return datastore


def _translated(error: sqlite3.Error) -> Exception:
    """sqlite3's error as the library's, so that one mapping (http/errors.py) serves every store."""
    from eventsourcing import persistence

    kinds: list[tuple[type[sqlite3.Error], type[Exception]]] = [
        (sqlite3.OperationalError, persistence.OperationalError),
        (sqlite3.IntegrityError, persistence.IntegrityError),
        (sqlite3.ProgrammingError, persistence.ProgrammingError),
        (sqlite3.DatabaseError, persistence.DatabaseError),
        (sqlite3.InterfaceError, persistence.InterfaceError),
    ]
    for sqlite_kind, kind in kinds:
        if isinstance(error, sqlite_kind):
            return kind(error)
    return persistence.PersistenceError(error)


def steady_reconnects() -> None:
    """Retry a lost PostgreSQL about every second rather than backing off to minutes.

    psycopg_pool doubles the delay between reconnection attempts (1, 2, 4, … s),
    so a database back after a short outage could wait half a minute to be
    noticed; a service should be back within a second of its database.
    """
    from psycopg_pool.base import AttemptWithBackoff

    AttemptWithBackoff.DELAY_BACKOFF = 1.0


def open_store(settings: Settings, pool_size: int = 5) -> SqlStore:
    """A pooled connection to the database that TASKS_DATABASE names."""
    if settings.is_postgres:
        from eventsourcing.postgres import PostgresDatastore

        steady_reconnects()
        pg = settings.postgres
        return SqlStore(
            PostgresDatastore(
                dbname=pg.dbname, host=pg.host, port=pg.port, user=pg.user, password=pg.password,
                pool_size=pool_size, max_overflow=pool_size * 2,
                connect_timeout=3.0, pre_ping=True,
            ),
            POSTGRES,
        )
    from eventsourcing.sqlite import SQLiteDatastore

    path = str(settings.sqlite_path)
    return SqlStore(SQLiteDatastore(path, pool_size=pool_size), SQLITE, sqlite_path=path, pool_size=pool_size)


SCHEMA_VERSION = 1  # 1: events, list view, event index, keys, tracking (the baseline)
STARTUP_LOCK = 72630

CREATE_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL
)"""


class SchemaTooNewError(RuntimeError):
    """Raised when the database was migrated by a newer version of the service."""


@contextmanager
def startup_lock(settings: Settings) -> Iterator[None]:
    """Let one process at a time create or migrate the schema: PostgreSQL, an advisory lock
    on a connection of its own; SQLite, an exclusive lock on a file beside the database.
    (SQLite's busy timeout is not enough: a starter whose read snapshot another starter's
    DDL has just outdated gets "database is locked" at once, not after waiting.)"""
    if not settings.is_postgres:
        import fcntl

        path = settings.sqlite_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".startup-lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, also on a crash
            yield
        return
    import psycopg

    pg = settings.postgres
    with psycopg.connect(host=pg.host, port=pg.port, dbname=pg.dbname, user=pg.user, password=pg.password,
                         autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (STARTUP_LOCK,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (STARTUP_LOCK,))


def record_schema_version(store: SqlStore) -> int:
    """Record that the schema is at SCHEMA_VERSION (once); refuse a newer database."""
    from datetime import datetime, timezone

    with store.transaction(commit=True) as cursor:
        cursor.execute(CREATE_SCHEMA_TABLE)
        cursor.execute("SELECT MAX(version) AS v FROM schema_migrations")
        found = cursor.fetchone()["v"]
        if found is not None and found > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"the database is at schema version {found}, newer than this service's {SCHEMA_VERSION}: "
                "upgrade the service"
            )
        cursor.execute(
            store.dialect.sql("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?) "
                              "ON CONFLICT (version) DO NOTHING"),
            (SCHEMA_VERSION, datetime.now(timezone.utc).isoformat()),
        )
    return SCHEMA_VERSION
