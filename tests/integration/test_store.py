"""The event store, the list view and their agreement, on a real SQLite file."""

from __future__ import annotations

import threading
from pathlib import Path

from starlette.testclient import TestClient

from adapters.config import Settings
from adapters.list_view import TaskListView
from adapters.sql import open_store
from app import build_services, create_app
from domain import commands as c
from domain.ids import public_id
from domain.task import Actor
from projections.runner import ProjectionRunner
from tests.conftest import KEY, act, create

AUTH = {"Authorization": f"Bearer {KEY}"}


def test_concurrent_commands_on_one_task_are_all_kept(client: TestClient) -> None:
    task_id = create(client, agentId="amy")["taskId"]
    act(client, task_id, "start")
    statuses: list[int] = []

    def report(n: int) -> None:
        for i in range(10):
            response = client.post(f"/agents/tasks/{task_id}/progress", json={"progress": n * 10 + i, "note": f"{n}-{i}"})
            statuses.append(response.status_code)

    threads = [threading.Thread(target=report, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 60
    data = client.get(f"/agents/tasks/{task_id}").json()["data"]
    assert data["version"] == 2 + 60  # created assigned, started, then every report exactly once


def test_racing_conditional_commands_let_exactly_one_win(settings: Settings) -> None:
    services = build_services(settings)
    try:
        by = Actor("key_test", "req_test")
        task_id = public_id(services.app.create_task(c.CreateTask(task="x", agent_id="amy"), by).task.id)
        outcomes: list[str] = []
        barrier = threading.Barrier(8)

        def start() -> None:
            barrier.wait()
            try:
                services.app.execute(task_id, by, lambda t: t.report_progress(c.ReportProgress(progress=1), by)
                                     if t.status.value == "in_progress" else t.start(c.StartTask(), by), 1)
                outcomes.append("won")
            except Exception as error:  # noqa: BLE001 - the test records which error each loser got
                outcomes.append(type(error).__name__)

        threads = [threading.Thread(target=start) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sorted(outcomes) == ["VersionConflictError"] * 7 + ["won"]
        assert services.app.get_task(task_id, "default").version == 2
    finally:
        services.close()


def test_restart_loses_nothing(settings: Settings) -> None:
    with TestClient(create_app(settings), headers=AUTH) as client:
        ids = [create(client, task=f"t{i}", agentId="amy")["taskId"] for i in range(5)]
        act(client, ids[0], "start")
        act(client, ids[1], "cancel", {"reason": "changed"})
        before = {i: client.get(f"/agents/tasks/{i}").json()["data"] for i in ids}
        listed_before = client.get("/agents/tasks").json()["data"]

    with TestClient(create_app(settings), headers=AUTH) as client:
        after = {i: client.get(f"/agents/tasks/{i}").json()["data"] for i in ids}
        listed_after = client.get("/agents/tasks").json()["data"]
        new = create(client, task="after restart")["taskId"]
        assert client.get("/agents/tasks").json()["data"]["tasks"][0]["taskId"] == new

    assert after == before
    assert listed_after == listed_before


def test_list_view_rebuilt_from_zero_equals_the_live_view(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    for i in range(30):
        task_id = create(client, task=f"t{i}", agentId="amy" if i % 3 else None, priority="high")["taskId"]
        if i % 3:
            act(client, task_id, "start")
            act(client, task_id, "progress", {"progress": i, "phase": f"p{i}"})
        if i % 5 == 0:
            act(client, task_id, "escalate", {"reason": "late", "teamId": "seniors"})
        if i % 7 == 1 and i % 3:
            act(client, task_id, "fail", {"error": {"code": "x", "message": "y"}})
            act(client, task_id, "retry", {"reassign": True})
        if i % 4 == 0:
            client.patch(f"/agents/tasks/{task_id}", json={"priority": "low", "deadline": "2031-01-01T00:00:00Z"})
    services = client.app_state["services"]  # type: ignore[attr-defined]
    live = services.list_view

    rebuilt_view = TaskListView(open_store(settings).for_views(), name="task_list_rebuilt")
    rebuilt_view.create_table()
    runner = ProjectionRunner(services.app, rebuilt_view, batch_size=7)  # odd batches cross task boundaries
    applied = runner.catch_up()

    assert applied == services.app.recorder.max_notification_id()
    assert rebuilt_view.position() == live.position()
    assert rebuilt_view.all_rows() == live.all_rows()
    assert len(live.all_rows()) == 30


def test_a_replayed_batch_is_refused_and_changes_nothing(settings: Settings) -> None:
    services = build_services(settings)
    try:
        by = Actor("key_test", "req_test")
        services.app.create_task(c.CreateTask(task="x"), by)
        services.runner.stop()
        services.runner.catch_up()
        rows = services.list_view.all_rows()
        notifications = services.app.recorder.select_notifications(start=1, limit=10)
        batch = [(n.id, services.app.mapper.to_domain_event(n)) for n in notifications]
        from eventsourcing.persistence import IntegrityError, Tracking

        try:
            services.list_view.apply_batch(batch, Tracking("task_list", notifications[-1].id))
            raise AssertionError("replaying a tracked batch must fail")
        except IntegrityError:
            pass
        assert services.list_view.all_rows() == rows
    finally:
        services.close()


def test_every_event_records_actor_request_and_tenant(client: TestClient) -> None:
    created = client.post("/agents/tasks", json={"task": "x", "agentId": "amy"}, headers={"X-Request-Id": "audit-1"})
    task_id = created.json()["data"]["taskId"]
    client.post(f"/agents/tasks/{task_id}/start", json={}, headers={"X-Request-Id": "audit-2"})
    services = client.app_state["services"]  # type: ignore[attr-defined]
    key_id = services.keys.authenticate(KEY).key_id

    events = services.app.history(task_id, "default")

    assert [type(e).__name__ for e in events] == ["TaskCreated", "TaskStarted"]
    assert (events[0].agent_id, events[0].assigned) == ("amy", True)  # assigned within its one event
    assert [(e.actor, e.request_id, e.tenant) for e in events] == [
        (key_id, "audit-1", "default"), (key_id, "audit-2", "default")]
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
