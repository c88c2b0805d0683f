"""PostgreSQL goes away under load and comes back: 503s meanwhile, nothing lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from adapters.config import Settings
from app import create_app
from tests.conftest import KEY
from tests.pg_cluster import PgCluster, started_or_skipped


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A cluster of this test's own, since the test stops it."""
    cluster = started_or_skipped()
    yield cluster
    cluster.stop()


def test_an_outage_answers_503_and_loses_no_acknowledged_write(own_cluster: PgCluster) -> None:
    settings = Settings(database=own_cluster.new_database(), bootstrap_key=KEY)
    acknowledged: list[str] = []
    statuses: list[int] = []
    stop = threading.Event()

    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {KEY}"}) as client:

        def load() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                response = client.post("/agents/tasks", json={"task": f"during {n}"})
                statuses.append(response.status_code)
                if response.status_code == 201:
                    acknowledged.append(response.json()["data"]["taskId"])
                elif response.status_code == 503:
                    assert response.headers["retry-after"]
                    assert response.json()["error"]["code"] == "unavailable"
                    time.sleep(0.05)

        threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.0)
            own_cluster.pg_ctl("stop")
            # Longer than the requests in flight can wait: a shorter outage can end while every one
            # still waits, and then all of them rightly succeed (no 503). A create committed just
            # before the stop waits up to ~1.5 s for its views' transaction to fail and then up to
            # 2 s for its views (read-your-writes); the next create then waits up to 1 s for a
            # connection before its 503 (adapters/pg.py WRITE_WAIT).
            time.sleep(6.0)
            during = client.get("/readyz")
            own_cluster.pg_ctl("start")
            deadline = time.monotonic() + 30
            while client.get("/readyz").status_code != 200:  # recovers by itself
                assert time.monotonic() < deadline, "service did not recover"
                time.sleep(0.2)
            time.sleep(1.0)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert during.status_code == 503
        assert set(statuses) <= {201, 503}, set(statuses)
        assert 503 in statuses and statuses.count(201) > 10
        services = client.app_state["services"]  # type: ignore[attr-defined]
        head = services.app.recorder.max_notification_id()
        deadline = time.monotonic() + 30
        while services.runner.position < head:  # the view catches up after its back-off
            assert time.monotonic() < deadline, "the list view did not catch up"
            time.sleep(0.2)
        listed = client.get("/agents/tasks?limit=500").json()["data"]
        for task_id in acknowledged:
            assert client.get(f"/agents/tasks/{task_id}").status_code == 200
        assert listed["total"] >= len(acknowledged)
        assert {t["taskId"] for t in listed["tasks"]} >= set(acknowledged[-min(len(acknowledged), 500):]) or listed["total"] > 500
