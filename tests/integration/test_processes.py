"""Several server processes and a projection worker on one database, and a server killed mid-burst."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx2 as httpx

from adapters.config import Settings
from domain.application import TaskApplication
from tests.conftest import KEY
from tests.pg_cluster import PgCluster
from tests.serving import TASKS, Server

AUTH = {"Authorization": f"Bearer {KEY}"}


def test_two_api_processes_and_a_worker_on_one_postgres_lose_and_double_nothing(
        pg_cluster: PgCluster, tmp_path: Path) -> None:
    database = pg_cluster.new_database()
    api_env = {"TASKS_BOOTSTRAP_KEY": KEY, "TASKS_PROJECTIONS": "off"}  # the worker keeps the views
    servers = [Server(database, tmp_path, api_env) for _ in range(2)]
    worker = subprocess.Popen([TASKS, "project"], cwd=tmp_path, env={**os.environ, "TASKS_DATABASE": database},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for server in servers:
            server.wait_ready()
        a, b = (s.url for s in servers)
        task_ids = []
        for i in range(4):
            created = httpx.post(f"{a}/agents/tasks", json={"task": f"shared {i}", "agentId": "amy"}, headers=AUTH)
            task_id = created.json()["data"]["taskId"]
            assert httpx.post(f"{b}/agents/tasks/{task_id}/start", json={}, headers=AUTH).status_code == 200
            task_ids.append(task_id)
        accepted: Counter[str] = Counter()
        statuses: Counter[int] = Counter()
        lock = threading.Lock()

        def drive(worker: int) -> None:
            with httpx.Client(headers=AUTH, timeout=30) as http:
                for n in range(40):
                    url = (a, b)[(worker + n) % 2]
                    task_id = task_ids[(worker * 7 + n) % len(task_ids)]
                    if n % 10 == 9:
                        response = http.patch(f"{url}/agents/tasks/{task_id}", json={"notes": f"w{worker} n{n}"})
                    else:
                        response = http.post(f"{url}/agents/tasks/{task_id}/progress",
                                             json={"progress": n, "note": f"w{worker} n{n}"})
                    with lock:
                        statuses[response.status_code] += 1
                        if response.status_code == 200:
                            accepted[task_id] += 1

        threads = [threading.Thread(target=drive, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert statuses == Counter({200: 320})  # conflicts between processes were retried, never refused
        for task_id in task_ids:
            for url in (a, b):
                task = httpx.get(f"{url}/agents/tasks/{task_id}", headers=AUTH).json()["data"]
                assert task["version"] == 2 + accepted[task_id]  # created assigned, started + every 2xx once
            events = httpx.get(f"{a}/agents/tasks/{task_id}/events?limit=1000", headers=AUTH).json()["data"]["events"]
            assert [e["version"] for e in events] == list(range(1, 3 + accepted[task_id]))
        deadline = time.monotonic() + 30
        while True:  # the worker's views, read through both processes, converge on the log
            rows = [httpx.get(f"{url}/agents/tasks?limit=10", headers=AUTH).json()["data"]["tasks"] for url in (a, b)]
            versions = [{r["taskId"]: r["version"] for r in page} for page in rows]
            expected = {task_id: 2 + accepted[task_id] for task_id in task_ids}
            if versions == [expected, expected]:
                break
            assert time.monotonic() < deadline, versions
            time.sleep(0.2)
        feed_response = httpx.get(f"{b}/events?type=TaskCreated", headers=AUTH)
        assert feed_response.status_code == 200, feed_response.text
        feed = feed_response.json()["data"]["events"]
        assert sorted(e["taskId"] for e in feed) == sorted(task_ids)  # the worker keeps the event index too
        assert worker.poll() is None, "the projection worker died"
    finally:
        for server in servers:
            server.stop()
        worker.send_signal(signal.SIGINT)
        try:
            worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def test_kill_9_mid_burst_loses_no_acknowledged_write(database_url: str, tmp_path: Path) -> None:
    database = database_url  # SQLite and PostgreSQL: a 201 means the events were committed
    server = Server(database, tmp_path, {"TASKS_BOOTSTRAP_KEY": KEY}).wait_ready()
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def burst(worker: int) -> None:
        with httpx.Client(headers=AUTH, timeout=10) as http:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    response = http.post(f"{server.url}/agents/tasks", json={"task": f"w{worker} n{n}"})
                except httpx.TransportError:
                    return  # the server is gone: this request was never acknowledged
                if response.status_code == 201:
                    with lock:
                        acknowledged.append(response.json()["data"]["taskId"])

    threads = [threading.Thread(target=burst, args=(w,), daemon=True) for w in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(acknowledged) > 20

    restarted = Server(database, tmp_path, {"TASKS_BOOTSTRAP_KEY": KEY}).wait_ready()
    try:
        with httpx.Client(headers=AUTH, timeout=30) as http:
            for task_id in acknowledged:
                assert http.get(f"{restarted.url}/agents/tasks/{task_id}").status_code == 200, task_id
            listed_total = http.get(f"{restarted.url}/agents/tasks?limit=1").json()["data"]["total"]
    finally:
        restarted.stop()
    app = TaskApplication(env=Settings(database=database).eventsourcing_env())
    try:  # the view, rebuilt past the crash, agrees with the log: one row per task created
        created = app.recorder.select_notifications(start=0, limit=1_000_000, topics=["domain.task:TaskCreated"])
        assert listed_total == len(created) >= len(acknowledged)
    finally:
        app.close()


def keys_printed_by_three_started_at_once(database: str, tmp_path: Path) -> list[str]:
    """Start three servers on one database at once, with no key configured (so each would
    generate one if it saw no key), and return the first-start keys they printed."""
    servers = [Server(database, tmp_path) for _ in range(3)]
    try:
        for server in servers:
            server.wait_ready()
    finally:
        for server in servers:
            server.stop()
    return [line for server in servers for line in server.stderr.splitlines() if line.strip().startswith("tk_")]


def test_processes_starting_together_create_the_schema_once(pg_cluster: PgCluster, tmp_path: Path) -> None:
    import psycopg

    database = pg_cluster.new_database()
    assert len(keys_printed_by_three_started_at_once(database, tmp_path)) == 1
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [(1,)]
        assert conn.execute("SELECT COUNT(*) FROM api_keys").fetchone() == (1,)


def test_a_database_from_a_newer_service_is_refused(settings: Settings) -> None:
    import pytest

    from adapters.sql import SchemaTooNewError, open_store, record_schema_version

    store = open_store(settings)
    try:
        record_schema_version(store)
        with store.transaction(commit=True) as cursor:
            cursor.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 'later')")
        with pytest.raises(SchemaTooNewError, match="99"):
            record_schema_version(store)
    finally:
        store.close()


def test_processes_starting_together_on_one_sqlite_file_create_the_schema_once(tmp_path: Path) -> None:
    import sqlite3

    database = f"sqlite:///{tmp_path}/tasks.db"
    assert len(keys_printed_by_three_started_at_once(database, tmp_path)) == 1
    with sqlite3.connect(tmp_path / "tasks.db") as conn:
        assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [(1,)]
        assert conn.execute("SELECT COUNT(*) FROM api_keys").fetchone() == (1,)
