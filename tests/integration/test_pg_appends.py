"""PostgreSQL appends (adapters/pg.py): a batch whose connection broke after it committed is
not saved twice, nor taken for a conflict (which would run its creates again, as new tasks);
and an append does not wait for autovacuum."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from adapters.config import Settings
from adapters.pg import TasksEventRecorder
from domain import commands as c
from domain.application import TaskApplication
from domain.task import Actor, Task
from tests.conftest import KEY
from tests.pg_cluster import PgCluster

BY = Actor("key_test", "req_test")


@pytest.fixture
def pg_app(pg_cluster: PgCluster) -> Iterator[tuple[TaskApplication, str]]:
    url = pg_cluster.new_database()
    application = TaskApplication(env=Settings(database=url, bootstrap_key=KEY).eventsourcing_env())
    yield application, url
    application.close()


def new_task_events(app: TaskApplication) -> list[StoredEvent]:
    """A batch of two events of one task: created, then assigned."""
    task = Task.create(c.CreateTask(task="x"), BY)
    task.assign(c.AssignTask(agent_id="amy"), BY)
    return [app.mapper.to_stored_event(event) for event in task.collect_events()]


def break_the_writers_connection(recorder: TasksEventRecorder, url: str) -> None:
    """End, from another connection, the server side of every pooled connection the next
    append may use (each used a moment ago, so the pool will not ping it first)."""
    pool = recorder._writes()
    held = [pool.getconn() for _ in range(pool.get_stats().get("pool_size", 1))]
    pids = [conn.info.backend_pid for conn in held]
    for conn in held:
        pool.putconn(conn)
    with psycopg.connect(url, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))  # waits until it has ended


def stored_rows(url: str, events: list[StoredEvent]) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM tasks_events WHERE originator_id = %s",
                           (events[0].originator_id,)).fetchone()
    assert row is not None
    return int(row[0])


def test_a_batch_stored_before_its_connection_broke_gets_its_positions_back(
        pg_app: tuple[TaskApplication, str]) -> None:
    app, url = pg_app
    recorder = app.recorder
    assert isinstance(recorder, TasksEventRecorder)
    events = new_task_events(app)
    positions = recorder.insert_events(events)  # committed; say its answer was lost with the connection

    break_the_writers_connection(recorder, url)
    again = recorder.insert_events(events)  # the retry: the broken connection, then a fresh one

    assert again == positions
    assert stored_rows(url, events) == 2  # created and assigned, each once


def test_another_writers_event_at_the_same_version_is_still_a_conflict(pg_app: tuple[TaskApplication, str]) -> None:
    app, url = pg_app
    recorder = app.recorder
    assert isinstance(recorder, TasksEventRecorder)
    events = new_task_events(app)
    recorder.insert_events(events)
    theirs = [dataclasses.replace(events[0], state=events[0].state + b" "), events[1]]

    with pytest.raises(IntegrityError):  # with no broken connection, a stored event is a conflict
        recorder.insert_events(events)
    break_the_writers_connection(recorder, url)
    with pytest.raises(IntegrityError):  # and after one, an event that is not this batch's still is
        recorder.insert_events(theirs)
    assert stored_rows(url, events) == 2


def test_an_append_does_not_wait_for_autovacuum(pg_app: tuple[TaskApplication, str]) -> None:
    """Autovacuum and autoanalyze hold SHARE UPDATE EXCLUSIVE on the table they work on. The
    library's appends lock the events table IN EXCLUSIVE MODE, which conflicts with it: each
    waited up to deadlock_timeout (1 s) for autovacuum to give way. Appends take turns on an
    advisory lock instead, so they go on while the table is being vacuumed."""
    app, url = pg_app
    app.save(Task.create(c.CreateTask(task="first"), BY))
    with psycopg.connect(url) as vacuum:  # what VACUUM and ANALYZE hold while they run
        vacuum.execute("LOCK TABLE tasks_events IN SHARE UPDATE EXCLUSIVE MODE")
        done = threading.Event()

        def append() -> None:
            app.save(Task.create(c.CreateTask(task="during the vacuum"), BY))
            done.set()

        writer = threading.Thread(target=append, daemon=True)
        writer.start()
        appended = done.wait(5)
        vacuum.rollback()
    writer.join(30)
    assert appended, "the append waited for the vacuum's lock"
    assert app.recorder.max_notification_id() == 2
