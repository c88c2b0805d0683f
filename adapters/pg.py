"""PostgreSQL only: fewer round trips on the hot paths.

On a loopback PostgreSQL that shares its CPU with the server, a round trip costs far more
than the statement it carries: the backend has to be scheduled to answer it. So:

- **Events in one statement.** The library's recorder saves a batch in four round trips
  (the pool's pre-ping; BEGIN, lock, NOTIFY and the insert, pipelined; COMMIT).
  ``TasksEventRecorder`` saves it in one: a SQL function of its own takes the append lock,
  notifies and inserts, and the statement is its own transaction (an autocommit connection),
  committed with the server's ``synchronous_commit`` before the call returns. The lock is
  there for the library's reason for its own (notification ids are issued in commit order).
- **Appends take turns on an advisory lock, not a table lock.** The library locks the events
  table ``IN EXCLUSIVE MODE`` so that notification ids commit in order. That mode conflicts
  with the lock autovacuum and autoanalyze take: an append waited for the server's
  ``deadlock_timeout`` (1 s) until autovacuum gave way, so every request of that second
  waited too (create's p99 ~0.9 s in a wrk run, ``canceling autovacuum task`` in the server
  log) — and autovacuum never finished on a table in steady use, nor could an
  anti-wraparound vacuum be cancelled at all. A transaction-scoped advisory lock, one per
  events table, keeps appends in commit order the same way and conflicts with nothing else.
  Every append of this service goes through this function (``tasks migrate`` too). While the
  function is being replaced (every start runs ``CREATE OR REPLACE``), an append still in the
  old body holds the table lock, and the new body's insert (``ROW EXCLUSIVE``) waits for it,
  so the two kinds of append still take turns.
- **Binary parameters for the events.** The four arrays of a batch go in PostgreSQL's binary
  format: in text, psycopg hex-encodes each state and escapes it into the array literal, in
  Python, ~25 µs an event (``bench``-free check: ``PostgresQuery.convert`` of 48 events,
  1.2 ms in text, 0.1 ms in binary).
- **A ping only after a pause.** A pooled connection is checked (an empty query, a round
  trip) only if it has been idle for more than ``IDLE_PING`` seconds. One in steady use is
  not: if the database went away meanwhile, the statement fails at once, the request gets
  503, and the pool replaces the broken connection — as fast as a failed ping, and a
  connection idle over an outage is still pinged before use.
"""

from __future__ import annotations

import threading
import time
import weakref
import zlib
from collections.abc import Sequence
from typing import Any

import psycopg
from eventsourcing import persistence
from eventsourcing.persistence import ApplicationRecorder, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from psycopg.sql import SQL, Identifier
from psycopg_pool import ConnectionPool, PoolTimeout

from domain.application import ACTIVE_KEYS
from domain.errors import RevokedKeyError

IDLE_PING = 1.0  # seconds a pooled connection may rest before it is pinged on its next use
# Seconds a batch of events waits for a connection before its requests get 503. The writer is its
# pool's only user, so it waits only while the database is away: then a write fails as fast as a
# request's key read does (hot_reads.POOL_WAIT), which a write that takes its key from memory skips.
WRITE_WAIT = 1.0

_used_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _ping_if_idle(conn: psycopg.Connection[Any]) -> None:
    """The pool's check: an empty query, unless the connection was returned a moment ago."""
    used = _used_at.get(conn)
    if used is not None and time.monotonic() - used < IDLE_PING:
        return
    conn.execute("")


def _mark_used(conn: psycopg.Connection[Any]) -> None:
    _used_at[conn] = time.monotonic()


def quick_pool(kwargs: dict[str, Any], *, max_size: int, timeout: float, name: str) -> ConnectionPool[Any]:
    """An open pool of autocommit connections that pings only connections that have rested."""
    return ConnectionPool(
        kwargs={**kwargs, "autocommit": True}, min_size=1, max_size=max_size, open=True, timeout=timeout,
        check=_ping_if_idle, reset=_mark_used, name=name,
    )


_ERRORS = ("IntegrityError", "DataError", "InternalError", "ProgrammingError", "NotSupportedError",
           "OperationalError", "InterfaceError", "DatabaseError")


def translated(error: Exception) -> Exception:
    """psycopg's error as the eventsourcing library's, as its own datastore maps them
    (http/errors.py maps those: 503 when the database is away)."""
    for name in _ERRORS:
        if isinstance(error, getattr(psycopg, name)):
            return getattr(persistence, name)(str(error))  # type: ignore[no-any-return]
    return persistence.PersistenceError(str(error))


CREATE_APPEND = """
CREATE OR REPLACE FUNCTION {schema}.{function}(
    ids {id_type}[], versions bigint[], topics text[], states bytea[]) RETURNS SETOF bigint
LANGUAGE plpgsql AS $BODY$
BEGIN
    SET LOCAL lock_timeout = '{lock_timeout}s';
    PERFORM pg_advisory_xact_lock({lock_key});
    NOTIFY {channel};
    RETURN QUERY
        INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)
        SELECT * FROM unnest(ids, versions, topics, states)
        RETURNING notification_id;
END;
$BODY$"""


# The same append, in the same statement (and so the same transaction), once the keys the events
# were sent with are found active: a write whose key was not read for its request (the API remembers
# principals on PostgreSQL, domain/application.py ACTIVE_KEYS) is refused if the key was revoked
# meanwhile, with SQLSTATE TK401 and the revoked keys' ids in the error's hint; nothing is saved.
CREATE_CHECKED_APPEND = """
CREATE OR REPLACE FUNCTION {schema}.{checked}(
    ids {id_type}[], versions bigint[], topics text[], states bytea[], keys text[]) RETURNS SETOF bigint
LANGUAGE plpgsql AS $BODY$
DECLARE
    revoked text;
BEGIN
    SELECT string_agg(k, ' ') INTO revoked FROM unnest(keys) AS k
        WHERE NOT EXISTS (SELECT 1 FROM {schema}.api_keys a WHERE a.key_id = k AND a.revoked_at IS NULL);
    IF revoked IS NOT NULL THEN
        RAISE EXCEPTION 'unknown or revoked key' USING ERRCODE = 'TK401', HINT = revoked;
    END IF;
    RETURN QUERY SELECT * FROM {schema}.{function}(ids, versions, topics, states);
END;
$BODY$"""
REVOKED_KEY = "TK401"


def append_lock_key(schema: str, table: str) -> int:
    """The advisory lock an events table's appends take turns on: this module's number in the
    high half, the table's name in the low half (a database may hold several event stores)."""
    return (72632 << 32) | zlib.crc32(f"{schema}.{table}".encode())


class TasksEventRecorder(PostgresApplicationRecorder):
    """The library's recorder, saving a batch of events in one round trip (see the module)."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        function = f"{events_table_name}_append"
        checked = f"{events_table_name}_append_checked"
        self.check_identifier_length(checked)
        names = {"schema": Identifier(datastore.schema), "table": Identifier(events_table_name),
                 "function": Identifier(function), "checked": Identifier(checked),
                 "channel": Identifier(self.channel_name), "id_type": SQL(datastore.originator_id_type)}
        self.sql_create_statements.append(
            SQL(CREATE_APPEND).format(lock_timeout=SQL(str(int(datastore.lock_timeout))),
                                      lock_key=SQL(str(append_lock_key(datastore.schema, events_table_name))),
                                      **names))
        self.sql_create_statements.append(SQL(CREATE_CHECKED_APPEND).format(**names))
        # Binary parameters: psycopg dumps a list element by element in Python, and in text a
        # bytea element is hex-encoded and then escaped for the array literal (~25 µs an event);
        # binary elements go as they are (~2 µs). The casts name the function's types.
        self.append_statement = SQL(
            "SELECT {schema}.{function}(%b::{id_type}[], %b::bigint[], %b::text[], %b::bytea[]) AS id"
        ).format(**names)
        self.checked_append_statement = SQL(
            "SELECT {schema}.{checked}(%b::{id_type}[], %b::bigint[], %b::text[], %b::bytea[], %b::text[])"
            " AS id").format(**names)
        self.appended_statement = SQL(
            "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state "
            "FROM {schema}.{table} e JOIN unnest(%s::{id_type}[], %s::bigint[]) AS k(id, version) "
            "ON e.originator_id = k.id AND e.originator_version = k.version").format(**names)
        self._pool: ConnectionPool[Any] | None = None
        self._pool_lock = threading.Lock()

    def _writes(self) -> ConnectionPool[Any]:
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    source = self.datastore.pool
                    kwargs = {k: v for k, v in (source.kwargs or {}).items() if k != "row_factory"}
                    self._pool = quick_pool(kwargs, max_size=2, timeout=min(source.timeout, WRITE_WAIT),
                                            name="event-writes")
        return self._pool

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        if not stored_events:
            return []
        params: tuple[list[Any], ...] = (
            [e.originator_id for e in stored_events], [e.originator_version for e in stored_events],
            [e.topic for e in stored_events], [e.state for e in stored_events])
        statement = self.append_statement
        if keys := kwargs.get(ACTIVE_KEYS):
            statement, params = self.checked_append_statement, (*params, sorted(keys))
        pool = self._writes()
        for attempt in (1, 2):
            try:
                with pool.connection() as conn:
                    rows = conn.execute(statement, params, prepare=True).fetchall()
                return [row[0] for row in rows]
            except PoolTimeout as error:  # the database is away: no second wait
                raise translated(error) from error
            except psycopg.OperationalError as error:
                # Most likely a connection that broke while it was in steady use (the database
                # restarted): the pool replaces it, and the batch is tried once more, as the
                # library's recorder retries too.
                if attempt == 2:
                    raise translated(error) from error
                pool.check()  # the others may have broken with it: drop them before the second try
            except psycopg.IntegrityError as error:
                # On the second try, the first may have committed before its connection broke:
                # then these very events are stored, and they are the batch's, not a conflict
                # (which would run every command again, and create each new task twice).
                if attempt == 2 and (positions := self.appended(stored_events)) is not None:
                    return positions
                raise translated(error) from error
            except psycopg.Error as error:
                if error.sqlstate == REVOKED_KEY:
                    raise RevokedKeyError(frozenset((error.diag.message_hint or "").split())) from None
                raise translated(error) from error
        raise AssertionError("unreachable")

    def appended(self, stored_events: Sequence[StoredEvent]) -> list[int] | None:
        """The log positions of these exact events (same task, version, type and state) if every
        one of them is stored; None if any is missing or differs (another writer's event)."""
        keys = ([e.originator_id for e in stored_events], [e.originator_version for e in stored_events])
        try:
            with self._writes().connection() as conn:
                rows = conn.execute(self.appended_statement, keys).fetchall()
        except psycopg.Error as error:
            raise translated(error) from error
        found = {(row[1], row[2]): row for row in rows}
        positions = []
        for event in stored_events:
            row = found.get((event.originator_id, event.originator_version))
            if row is None or row[3] != event.topic or bytes(row[4]) != bytes(event.state):
                return None
            positions.append(row[0])
        return positions

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()


class TasksPostgresFactory(PostgresFactory):
    """The library's PostgreSQL factory with ``TasksEventRecorder`` (PERSISTENCE_MODULE names it)."""

    application_recorder_class = TasksEventRecorder

    def application_recorder(self) -> ApplicationRecorder:
        recorder = super().application_recorder()
        self._recorders = [*getattr(self, "_recorders", []), recorder]
        return recorder

    def close(self) -> None:
        for recorder in getattr(self, "_recorders", []):
            if isinstance(recorder, TasksEventRecorder):
                recorder.close()
        super().close()
