"""SQLite: the views live in a file of their own beside the database (adapters/sql.py
``views_path``), so whoever keeps them never holds the write lock that appending events needs."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from adapters.config import Settings
from adapters.read_models import ViewsAheadOfLogError
from adapters.sql import views_path
from app import create_app
from tests.conftest import KEY, create
from tests.serving import run_tasks

AUTH = {"Authorization": f"Bearer {KEY}"}


def tables(path: Path | str) -> set[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite file (its WAL included), as a backup tool makes one."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def delete_views_file(database: Path) -> None:
    """What the refusal tells a user to do: delete the views' file, with its -wal and -shm."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}.views{suffix}").unlink(missing_ok=True)


def test_the_views_are_kept_in_a_file_of_their_own_beside_the_database(tmp_path: Path) -> None:
    database = tmp_path / "tasks.db"
    with TestClient(create_app(Settings(database=f"sqlite:///{database}", bootstrap_key=KEY)),
                    headers=AUTH) as client:
        made = create(client, priority="high")
        listed = client.get("/agents/tasks", params={"priority": "high"})
        assert [task["taskId"] for task in listed.json()["data"]["tasks"]] == [made["taskId"]]
        head = client.app_state["services"].app.recorder.max_notification_id()
    assert views_path(str(database)) == f"{database}.views"
    main, views = tables(database), tables(f"{database}.views")
    assert {"stored_events", "api_keys", "idempotency_keys", "schema_migrations"} <= main
    assert "projection_tracking" not in main and not any(name.startswith(("task_list", "task_metrics", "event_index"))
                                                         for name in main)
    assert {"projection_tracking", "event_index"} <= views and "stored_events" not in views
    with sqlite3.connect(f"{database}.views") as conn:
        positions = dict(conn.execute("SELECT name, position FROM projection_tracking"))
    assert positions and set(positions.values()) == {head}


def test_an_append_does_not_wait_for_a_write_transaction_on_the_views(tmp_path: Path) -> None:
    """A `tasks project` worker applies its batches in write transactions on the views; the API's
    appends go on meanwhile. (On one file the create waited for the worker's turn and lock.)"""
    database = tmp_path / "tasks.db"
    settings = Settings(database=f"sqlite:///{database}", bootstrap_key=KEY, projections="off")
    with TestClient(create_app(settings), headers=AUTH) as client:
        services = client.app_state["services"]
        views = services.store.for_views()
        holding, release = threading.Event(), threading.Event()

        def worker_mid_batch() -> None:
            with views.transaction(commit=True) as cursor:
                cursor.execute("UPDATE projection_tracking SET position = position")  # takes the write lock
                holding.set()
                release.wait(60)

        worker = threading.Thread(target=worker_mid_batch, daemon=True)
        worker.start()
        try:
            assert holding.wait(10)
            response = client.post("/agents/tasks", json={"task": "while the views are being written"})
            assert response.status_code == 201, response.text
            assert not release.is_set() and worker.is_alive()  # the views' transaction is still open
            assert services.app.recorder.max_notification_id() == 1
        finally:
            release.set()
            worker.join(10)


def test_a_database_restored_beside_newer_views_is_refused_until_they_are_rebuilt(tmp_path: Path) -> None:
    database = tmp_path / "tasks.db"
    settings = Settings(database=f"sqlite:///{database}", bootstrap_key=KEY)
    with TestClient(create_app(settings), headers=AUTH) as client:
        first = create(client)
        copy_database(database, tmp_path / "backup.db")
        create(client)  # after the backup: the views now hold a task the backup's log does not
    copy_database(tmp_path / "backup.db", database)  # restored; the views' file is not

    with pytest.raises(ViewsAheadOfLogError, match=r"ahead of the event log .*tasks\.db\.views"):
        with TestClient(create_app(settings), headers=AUTH):
            pass

    delete_views_file(database)
    with TestClient(create_app(settings), headers=AUTH) as client:
        listed = client.get("/agents/tasks").json()["data"]["tasks"]
        assert [task["taskId"] for task in listed] == [first["taskId"]]
        assert client.post("/agents/tasks", json={"task": "after the restore"}).status_code == 201
        assert client.get("/agents/tasks").json()["data"]["total"] == 2


def test_a_database_without_a_views_file_gets_its_views_rebuilt_from_the_log(tmp_path: Path) -> None:
    """How a database from before the views had their own file starts: the views' file is new,
    and the views are caught up from the whole log before the service answers."""
    database = tmp_path / "tasks.db"
    settings = Settings(database=f"sqlite:///{database}", bootstrap_key=KEY)
    with TestClient(create_app(settings), headers=AUTH) as client:
        made = [create(client, priority="low")["taskId"] for _ in range(3)]
    delete_views_file(database)
    with TestClient(create_app(settings), headers=AUTH) as client:
        listed = client.get("/agents/tasks", params={"priority": "low"}).json()["data"]["tasks"]
        assert sorted(task["taskId"] for task in listed) == sorted(made)
        assert client.get("/agents/tasks/stats").json()["data"]["total"] == 3


def test_the_projection_commands_work_on_the_views_file_and_the_worker_refuses_views_ahead(tmp_path: Path) -> None:
    database = tmp_path / "tasks.db"
    settings = Settings(database=f"sqlite:///{database}", bootstrap_key=KEY)
    with TestClient(create_app(settings), headers=AUTH) as client:
        for _ in range(3):
            create(client, agentId="amy")  # one event each, created assigned
        copy_database(database, tmp_path / "backup.db")
        create(client)

    url = f"sqlite:///{database}"
    rebuilt = run_tasks("projections", "rebuild", "task_list", database=url)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "task_list rebuilt and swapped in at position 4" in rebuilt.stdout
    status = run_tasks("projections", "status", database=url)
    assert status.returncode == 0, status.stderr
    for name in ("task_list", "task_metrics", "event_index"):
        assert any(line.split()[:2] == [name, "position"] and line.split()[-1] == "0"
                   for line in status.stdout.splitlines()), status.stdout  # lag 0

    copy_database(tmp_path / "backup.db", database)  # the log now ends at 3; the views are at 4
    worker = run_tasks("project", database=url)
    assert worker.returncode == 1
    assert "the views are ahead of the event log" in worker.stderr and f"{database}.views" in worker.stderr
    assert "Traceback" not in worker.stderr
