"""SQLite: the API's write-ahead log is copied into the database file by a thread of its own
(adapters/recorder.py ``WalCheckpointer``), not by the commit that happens to take the log past
SQLite's threshold, which kept every request of that group commit waiting (README: "Checkpoints
off the commit path")."""

from __future__ import annotations

import time
from pathlib import Path

from adapters.config import Settings
from adapters.recorder import WAL_BACKSTOP_PAGES
from app import build_services
from domain import commands as c
from domain.task import Actor, Task
from tests.conftest import KEY

BY = Actor("key_test", "req_test")


def test_the_log_reaches_the_database_file_while_no_commit_checkpoints(tmp_path: Path) -> None:
    database = tmp_path / "tasks.db"
    services = build_services(Settings(database=f"sqlite:///{database}", bootstrap_key=KEY))
    try:
        datastore = services.app.recorder.datastore  # type: ignore[attr-defined]
        with datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint")
            assert cursor.fetchone()[0] == WAL_BACKSTOP_PAGES  # a commit checkpoints only past 64 MiB
        before = database.stat().st_size
        words = "quarterly revenue report " * 40  # ~1 KB a task: ~3 MB of log, far below the backstop
        for start in range(0, 3000, 500):
            tasks = [Task.create(c.CreateTask(task=f"{start + i}: {words}"), BY) for i in range(500)]
            services.app.save(*tasks)
        deadline = time.monotonic() + 10
        while database.stat().st_size < before + 2_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert database.stat().st_size >= before + 2_000_000, "nothing copied the log into the database file"
        assert services.app.recorder.max_notification_id() == 3000
    finally:
        services.close()
    assert not services.checkpointer._thread.is_alive()  # stopped with the service
