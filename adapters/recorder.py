"""The event store on SQLite: the library's, with a statement cache and batched inserts.

Two things made a group commit dear on the writer thread:

- The library opens its SQLite connections with ``cached_statements=True``, a
  cache of one statement: a transaction that runs several statements (every
  view's batch does) prepares each of them again every time. ``CachingPool``
  opens them as the library does, with a cache of 256.
- Its recorder inserts a transaction's events one ``execute`` at a time,
  reading each row's ``lastrowid`` (its log position): with group commit a
  transaction holds dozens of events, and every ``execute`` is a step that
  also hands the GIL to the event loop. ``BatchInsertRecorder`` inserts them
  with multi-row ``INSERT`` statements of a few fixed sizes and takes the
  positions from the last row's rowid: the rows of one transaction get
  consecutive rowids, because SQLite gives a new row the largest rowid in the
  table plus one (while that is below 2**63 - 1) and the transaction holds
  the database's write lock throughout.

The tables, the rows and every reader are the library's. ``SQLiteFactory`` is
what ``PERSISTENCE_MODULE`` names for SQLite (adapters/config.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, StoredEvent
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteFactory as LibrarySQLiteFactory,
)

from adapters.keys import ACTIVE_AMONG
from domain.application import ACTIVE_KEYS
from domain.errors import RevokedKeyError

STATEMENT_CACHE = 256  # prepared statements kept per connection (the reading connections keep as many)
# The eventsourcing env key that sets the pool's connections' ``wal_autocheckpoint`` (pages; SQLite's
# default is 1000). The API sets WAL_BACKSTOP_PAGES beside its WalCheckpointer: a backstop, not the way.
WAL_AUTOCHECKPOINT = "SQLITE_WAL_AUTOCHECKPOINT"
# A commit checkpoints only once the log holds this many pages (64 MiB), which the WalCheckpointer's
# passive checkpoints every CHECKPOINT_EVERY seconds keep it far below.
WAL_BACKSTOP_PAGES = 16_384
CHECKPOINT_EVERY = 0.05  # seconds between the WalCheckpointer's passive checkpoints
CHUNKS = (64, 16, 4, 1)  # rows per INSERT statement, largest first (at most 256 parameters)


TURN_SUFFIX = ".write-turn"  # the file beside the database whose lock write transactions take turns on
_turns = threading.local()  # the turn files whose turn this thread already holds


class TurnTakingConnection(SQLiteConnection):
    """A connection whose write transactions first take an exclusive ``flock`` on a file beside
    the database, so that writers of every process take turns there rather than in SQLite.

    A writer that finds SQLite's write lock taken sleeps in SQLite's busy handler (1, 2, 5, 10 …
    ms) however soon the lock is released, so a writer beside another process (the API's
    group commit beside a ``tasks project`` worker) waited milliseconds for a lock held for
    microseconds. A waiter on the file lock looks again every 0.1 ms at first, and at most
    every 1 ms. Read transactions take no turn (WAL lets them run beside a writer). A thread
    that already holds a database's turn (a write transaction opened inside another on the same
    file) does not take a second one; the views' file has turns of its own. A writer that has
    not had its turn within the lock timeout goes on without it, to SQLite's own lock and busy
    handler as before: the turn only ever shortens a wait, it cannot add a deadlock."""

    def __init__(self, sqlite_conn: sqlite3.Connection, max_age: float | None, turn_path: str,
                 timeout: float) -> None:
        super().__init__(sqlite_conn=sqlite_conn, max_age=max_age)
        self._turn = os.open(turn_path, os.O_RDWR | os.O_CREAT, 0o644)
        self._turn_path = turn_path
        self._timeout = timeout

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[SQLiteCursor]:
        held = getattr(_turns, "held", None)
        if held is None:
            held = _turns.held = set()
        turn = commit and self._turn_path not in held and self._take_turn()
        if turn:
            held.add(self._turn_path)
        try:
            with super().transaction(commit=commit) as cursor:
                yield cursor
        finally:
            if turn:
                held.discard(self._turn_path)
                fcntl.flock(self._turn, fcntl.LOCK_UN)

    def _take_turn(self) -> bool:
        pause, deadline = 0.0001, 0.0
        while True:
            try:
                fcntl.flock(self._turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                now = time.monotonic()
                if not deadline:
                    deadline = now + self._timeout
                elif now > deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 0.001)

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._turn)
        super()._close()


class CachingPool(SQLiteConnectionPool):
    """The library's SQLite pool, whose connections keep their prepared statements."""

    wal_autocheckpoint: int | None = None  # pages; None keeps SQLite's default (1000)

    def _create_connection(self) -> SQLiteConnection:
        # As SQLiteConnectionPool._create_connection (eventsourcing 9.5), but for the cache size.
        try:
            connection = sqlite3.connect(database=self.db_name, uri=True, check_same_thread=False,
                                         isolation_level=None, cached_statements=STATEMENT_CACHE,
                                         timeout=self.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT)
        except (sqlite3.Error, TypeError) as error:
            raise InterfaceError(error) from error
        if not self.is_sqlite_memory_mode and not self.is_journal_mode_wal:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode;")
            if cursor.fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL;")
                self.journal_mode_was_changed_to_wal = True
            self.is_journal_mode_wal = True
        if self.wal_autocheckpoint is not None:
            connection.execute(f"PRAGMA wal_autocheckpoint = {int(self.wal_autocheckpoint)}")
        connection.row_factory = sqlite3.Row
        if self.is_sqlite_memory_mode:
            return SQLiteConnection(sqlite_conn=connection, max_age=self.max_age)
        return TurnTakingConnection(connection, self.max_age, self.db_name + TURN_SUFFIX,
                                    self.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT)


class BatchInsertRecorder(SQLiteApplicationRecorder):
    """SQLiteApplicationRecorder whose inserts take a few statements per transaction."""

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        if keys := kwargs.get(ACTIVE_KEYS):  # in this transaction: a key revoked meanwhile saves nothing
            c.execute(ACTIVE_AMONG.format(marks=", ".join("?" * len(keys))), tuple(keys))
            if revoked := keys - {row[0] for row in c.fetchall()}:
                raise RevokedKeyError(frozenset(revoked))
        count = len(stored_events)
        if count < 2:
            return super()._insert_events(c, stored_events, **kwargs)
        params: list[Any] = []
        for event in stored_events:
            originator_id = event.originator_id
            params += (originator_id.hex if isinstance(originator_id, UUID) else originator_id,
                       event.originator_version, event.topic, event.state)
        done = 0
        for size in CHUNKS:
            while count - done >= size:
                c.execute(insert_rows(self.events_table_name, size), params[4 * done : 4 * (done + size)])
                done += size
        last = int(c.lastrowid)
        return list(range(last - count + 1, last + 1))


@cache
def insert_rows(table: str, rows: int) -> str:
    return f"INSERT INTO {table} VALUES " + ", ".join(["(?,?,?,?)"] * rows)


class SQLiteFactory(LibrarySQLiteFactory):
    """The library's SQLite infrastructure, with the pool and recorder above."""

    application_recorder_class = BatchInsertRecorder

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        pool = self.datastore.pool
        self.datastore.pool = CachingPool(db_name=pool.db_name, lock_timeout=pool.lock_timeout,
                                          pool_size=pool.pool_size, max_overflow=pool.max_overflow,
                                          pool_timeout=pool.pool_timeout, max_age=pool.max_age,
                                          pre_ping=pool.pre_ping)
        pages = self.env.get(WAL_AUTOCHECKPOINT)
        if pages:
            self.datastore.pool.wal_autocheckpoint = int(pages)
        pool.close()


class WalCheckpointer:
    """Copies the database's write-ahead log into the database file from a thread of its own.

    SQLite checkpoints in the commit that takes the log past ``wal_autocheckpoint`` pages: that
    commit copies about 1000 pages into the database file and waits for its fsync, and at 1M
    tasks that took the group commit's writer 50–250 ms now and then, every request of the batch
    waiting on it (README: "Checkpoints off the commit path"). Here a passive checkpoint runs
    every ``interval`` seconds on a connection of its own: it never takes the write lock, so the
    writer goes on committing (each commit still fsyncs the log: durability is unchanged), and
    it copies only what no reader still needs. The writer's connections keep a high
    ``wal_autocheckpoint`` as a backstop, so the log stays bounded if this thread falls behind."""

    def __init__(self, path: str, interval: float = CHECKPOINT_EVERY) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self.interval):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as error:
                    if "locked" in str(error) or "busy" in str(error):
                        continue  # another process's checkpoint is running: it does the same work
                    # e.g. the disk is full: logged; the writer's backstop carries on
                    logging.getLogger(__name__).warning("WAL checkpoint failed: %s", error)
        finally:
            connection.close()
