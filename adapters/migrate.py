"""Move a whole database — the event log and the API keys — into an empty PostgreSQL one.

The stored events are copied as they are (originator id, version, topic and
the stored bytes), in the source's order, through the eventsourcing recorders
on both sides; so every recorded field and every link of the hash chains
survives. The copy is then re-read on both sides and compared event for
event, and the target's views are rebuilt from position 0 by the same code
that a server runs at startup.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from itertools import zip_longest
from typing import Any
from urllib.parse import urlsplit

from eventsourcing.persistence import Notification, StoredEvent

from adapters.config import ConfigError, PostgresTarget, Settings
from adapters.keys import KeyStore
from adapters.sql import SqlStore, open_store
from domain.application import TaskApplication

KEYS_TABLE = "api_keys"
Progress = Callable[[int], None]
Step = Callable[[str, int], AbstractContextManager[Progress]]


@contextmanager
def no_progress(_step: str, _total: int) -> Iterator[Progress]:
    yield lambda _done: None


class MigrationError(Exception):
    """Raised when a migration cannot start, or its copy is not the source's."""


@dataclass(frozen=True)
class Phases:
    copy: float
    verify: float
    rebuild: float


@dataclass(frozen=True)
class MigrationReport:
    """What was moved and how long it took."""

    events: int
    tasks: int
    keys: int
    phases: Phases
    generated_key: str | None = None

    @property
    def seconds(self) -> float:
        return self.phases.copy + self.phases.verify + self.phases.rebuild

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def source_settings(url: str) -> Settings:
    """The source: an existing SQLite file (or a PostgreSQL database)."""
    settings = Settings(database=url)
    scheme = urlsplit(url).scheme
    if settings.is_postgres:
        _check_postgres_url(url, "source")
        return settings
    if scheme != "sqlite":
        raise MigrationError(f"the source must be sqlite:///path or postgresql://…, not {_redacted(url)!r}")
    try:
        path = settings.sqlite_path
    except ConfigError as error:
        raise MigrationError(str(error)) from None
    if not path.is_file():
        raise MigrationError(f"the source database {str(path)!r} does not exist")
    return settings


def target_settings(url: str) -> Settings:
    """The target: a PostgreSQL database, named by a complete postgresql:// URL."""
    settings = Settings(database=url)
    if not settings.is_postgres:
        raise MigrationError(
            f"the target must be a PostgreSQL database (postgresql://user:password@host:5432/dbname), not {_redacted(url)!r}"
        )
    _check_postgres_url(url, "target")
    return settings


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def _check_postgres_url(url: str, side: str) -> None:
    try:
        PostgresTarget.from_url(url)
    except ConfigError as error:
        raise MigrationError(str(error).replace("TASKS_DATABASE", f"the {side} URL")) from None


def read_log(app: TaskApplication, batch_size: int) -> Iterator[Sequence[Notification]]:
    """The whole event log in order, a page at a time (ids may have gaps: page by "after the last")."""
    position = 0
    while page := app.recorder.select_notifications(position, batch_size, inclusive_of_start=False):
        yield page
        position = page[-1].id


def _record(notification: Notification) -> tuple[str, int, str, bytes]:
    """What must be equal on both sides: everything stored except the position."""
    return (
        str(notification.originator_id),
        notification.originator_version,
        notification.topic,
        bytes(notification.state),
    )


class Migration:
    """One move from a source database to an empty PostgreSQL target."""

    def __init__(self, source: Settings, target: Settings, batch_size: int = 1000) -> None:
        if source.database == target.database:
            raise MigrationError("the source and the target are the same database")
        self.source, self.target, self.batch_size = source, target, batch_size
        # The source is only read: don't create tables in it.
        self.source_app = TaskApplication(env={**source.eventsourcing_env(), "CREATE_TABLE": "n"})
        self.source_store = open_store(source, pool_size=1)
        try:
            self.source_events = self._count_source()  # before the target is touched
        except MigrationError:
            self.source_app.close()
            self.source_store.close()
            raise
        self.target_app = TaskApplication(env=target.eventsourcing_env())
        self.target_store = open_store(target, pool_size=1)

    def close(self) -> None:
        for app in (self.source_app, self.target_app):
            app.close()
        for store in (self.source_store, self.target_store):
            store.close()

    def __enter__(self) -> Migration:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # --- before -------------------------------------------------------------

    def _count_source(self) -> int:
        table = self.source_app.recorder.events_table_name  # type: ignore[attr-defined]
        try:
            return _count(self.source_store, table)
        except Exception as error:  # noqa: BLE001 - any failure here means "not a Tasks database"
            raise MigrationError(f"the source holds no Tasks event log ({type(error).__name__}: {error})") from None

    def check_target_is_empty(self) -> None:
        """Refuse a target that already holds events or keys: nothing there is overwritten."""
        head = self.target_app.recorder.max_notification_id() or 0
        if head:
            raise MigrationError(
                f"the target already holds events (up to position {head}); "
                "migrate only into an empty database (drop it and create it again)"
            )
        if _table_exists(self.target_store, KEYS_TABLE) and (keys := _count(self.target_store, KEYS_TABLE)):
            raise MigrationError(
                f"the target already holds {keys} API key(s); "
                "migrate only into an empty database (drop it and create it again)"
            )

    # --- the three steps ----------------------------------------------------

    def copy_events(self, progress: Progress = lambda _: None) -> tuple[int, int]:
        """Append the source's events to the target in source order; returns (events, tasks)."""
        events, tasks = 0, set()
        for page in read_log(self.source_app, self.batch_size):
            self.target_app.recorder.insert_events([
                StoredEvent(n.originator_id, n.originator_version, n.topic, n.state) for n in page
            ])
            tasks.update(n.originator_id for n in page)
            events += len(page)
            progress(len(page))
        return events, len(tasks)

    def copy_keys(self) -> int:
        """Copy the keys table row for row (it holds hashes only, never a key in clear)."""
        KeyStore(self.target_store).create_table()
        if not _table_exists(self.source_store, KEYS_TABLE):
            return 0
        with self.source_store.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT * FROM {KEYS_TABLE} ORDER BY key_id")
            rows = [{column: row[column] for column in row.keys()} for row in cursor.fetchall()]
        if not rows:
            return 0
        columns = list(rows[0])
        insert = self.target_store.dialect.sql(
            f"INSERT INTO {KEYS_TABLE} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        )
        with self.target_store.transaction(commit=True) as cursor:
            cursor.executemany(insert, [tuple(row[col] for col in columns) for row in rows])
        return len(rows)

    def verify(self, progress: Progress = lambda _: None) -> int:
        """Re-read both logs in order and compare them event for event; returns the count."""
        source = (n for page in read_log(self.source_app, self.batch_size) for n in page)
        target = (n for page in read_log(self.target_app, self.batch_size) for n in page)
        checked = 0
        for ours, theirs in zip_longest(source, target):
            if ours is None or theirs is None:
                missing = "target" if theirs is None else "source"
                raise MigrationError(
                    f"verification failed after {checked} events: the {missing} log ends there"
                )
            if _record(ours) != _record(theirs):
                field = next(
                    name for name, a, b in zip(
                        ("originator id", "version", "topic", "state"), _record(ours), _record(theirs)
                    ) if a != b
                )
                raise MigrationError(
                    f"verification failed at event {checked + 1} (source position {ours.id}, "
                    f"target position {theirs.id}): the {field} differs"
                )
            checked += 1
            if checked % self.batch_size == 0:
                progress(self.batch_size)
        progress(checked % self.batch_size)
        return checked

    def rebuild_views(self) -> str | None:
        """Build every view the server keeps on the target from position 0, by the
        server's own startup (app.build_services); returns a key it had to create, if any."""
        from app import build_services  # the composition root knows the views

        services = build_services(replace(self.target, bootstrap_key=None))
        try:
            return services.generated_key
        finally:
            services.close()


def migrate(
    source: Settings,
    target: Settings,
    *,
    batch_size: int = 1000,
    step: Step = no_progress,
) -> MigrationReport:
    """Copy, verify, rebuild; ``step(name, total)`` shows each step's progress."""
    for settings, side in ((target, "target"), (source, "source")):
        check_reachable(settings, side)
    with Migration(source, target, batch_size) as migration:
        total = migration.source_events
        migration.check_target_is_empty()
        began = time.perf_counter()
        try:
            with step("copy", total) as progress:
                events, tasks = migration.copy_events(progress)
            keys = migration.copy_keys()
            copied = time.perf_counter()
            with step("verify", events) as progress:
                migration.verify(progress)
            verified = time.perf_counter()
            with step("views", events) as progress:
                generated = migration.rebuild_views()
                progress(events)
            rebuilt = time.perf_counter()
        except Exception as error:
            detail = str(error) if isinstance(error, MigrationError) else f"{type(error).__name__}: {error}"
            raise MigrationError(
                f"{detail}\nThe target is not empty now: drop it and create it again before the next try."
            ) from error
    return MigrationReport(
        events, tasks, keys, Phases(copied - began, verified - copied, rebuilt - verified), generated
    )


def check_reachable(settings: Settings, side: str) -> None:
    """Connect once to a PostgreSQL database, so that a wrong host, password or name is said plainly."""
    if not settings.is_postgres:
        return
    import psycopg

    pg = settings.postgres
    try:
        psycopg.connect(dbname=pg.dbname, host=pg.host, port=pg.port, user=pg.user, password=pg.password,
                        connect_timeout=5).close()
    except psycopg.Error as error:
        reason = " ".join(str(error).split())
        raise MigrationError(f"cannot connect to the {side} database {pg.dbname!r} on {pg.host}:{pg.port}: {reason}") from None


def _count(store: SqlStore, table: str) -> int:
    with store.transaction(commit=False) as cursor:
        cursor.execute(f"SELECT COUNT(*) AS n FROM {table}")
        return int(cursor.fetchone()["n"])


def _table_exists(store: SqlStore, table: str) -> bool:
    if store.dialect.is_postgres:
        query = "SELECT to_regclass(?) IS NOT NULL AS found"
    else:
        query = "SELECT COUNT(*) > 0 AS found FROM sqlite_master WHERE type = 'table' AND name = ?"
    with store.transaction(commit=False) as cursor:
        cursor.execute(store.dialect.sql(query), (table,))
        return bool(cursor.fetchone()["found"])
