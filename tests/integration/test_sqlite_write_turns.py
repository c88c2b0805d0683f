"""SQLite: write transactions of every process take turns on a file lock beside the database
(adapters/recorder.py), instead of meeting at SQLite's lock and sleeping in its busy handler."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from adapters.config import Settings
from adapters.recorder import TURN_SUFFIX
from domain import commands as c
from domain.application import TaskApplication
from domain.task import Actor, Task
from tests.conftest import KEY

BY = Actor("key_test", "req_test")


def test_a_write_waits_for_another_process_turn_and_goes_on_when_it_ends(tmp_path: Path) -> None:
    database = tmp_path / "tasks.db"
    app = TaskApplication(env=Settings(database=f"sqlite:///{database}", bootstrap_key=KEY).eventsourcing_env())
    try:
        app.save(Task.create(c.CreateTask(task="first"), BY))
        other = os.open(f"{database}{TURN_SUFFIX}", os.O_RDWR | os.O_CREAT, 0o644)  # another process's writer, mid-transaction
        fcntl.flock(other, fcntl.LOCK_EX)
        done = threading.Event()

        def append() -> None:
            app.save(Task.create(c.CreateTask(task="second"), BY))
            done.set()

        writer = threading.Thread(target=append, daemon=True)
        try:
            writer.start()
            assert not done.wait(0.5), "the write did not wait for the other writer's turn"
            assert app.recorder.max_notification_id() == 1
        finally:
            fcntl.flock(other, fcntl.LOCK_UN)
            os.close(other)
        assert done.wait(10), "the write did not go on once the turn was free"
        assert app.recorder.max_notification_id() == 2
        reads = app.recorder.select_notifications(start=1, limit=10)  # reads never take a turn
        assert [n.id for n in reads] == [1, 2]
    finally:
        app.close()


def test_a_write_whose_turn_never_comes_goes_on_to_sqlite_after_the_lock_timeout(tmp_path: Path) -> None:
    """The turn only ever shortens a wait: one that does not come within the lock timeout (say a
    stuck holder of the file that holds no SQLite lock) does not stop the write."""
    database = tmp_path / "tasks.db"
    env = {**Settings(database=f"sqlite:///{database}", bootstrap_key=KEY).eventsourcing_env(),
           "SQLITE_LOCK_TIMEOUT": "1"}
    app = TaskApplication(env=env)
    try:
        app.save(Task.create(c.CreateTask(task="first"), BY))
        other = os.open(f"{database}{TURN_SUFFIX}", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(other, fcntl.LOCK_EX)
        try:
            app.save(Task.create(c.CreateTask(task="second"), BY))
            assert app.recorder.max_notification_id() == 2
        finally:
            fcntl.flock(other, fcntl.LOCK_UN)
            os.close(other)
    finally:
        app.close()
