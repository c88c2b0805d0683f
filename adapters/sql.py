"""The two SQL stores we run on, behind one small seam.

Stores write their SQL once, with ``?`` placeholders and portable syntax
(``ON CONFLICT … DO UPDATE``, ``RETURNING``); the dialect turns the marks into
psycopg's ``%s`` on PostgreSQL. Connections, pooling and error translation are
the eventsourcing library's datastores, so every store shares its behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

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


class SqlStore:
    """A datastore and its dialect: what every read-model and key store is built on."""

    def __init__(self, datastore: Datastore, dialect: Dialect) -> None:
        self.datastore = datastore
        self.dialect = dialect

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[Cursor]:
        with self.datastore.transaction(commit=commit) as cursor:
            yield cursor

    def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        with self.transaction(commit=False) as cursor:
            cursor.execute("SELECT 1 AS ok")
            cursor.fetchone()

    def close(self) -> None:
        self.datastore.close()


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

    return SqlStore(SQLiteDatastore(str(settings.sqlite_path), pool_size=pool_size), SQLITE)
