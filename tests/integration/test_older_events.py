"""A log written before a create with an agent became one event still reads as it did.

Until then such a create stored two events: ``TaskCreated`` (no ``assigned`` field, the task
pending at version 1) and ``TaskAssigned`` (version 2). Stored events never change, so those
pairs stay in every log the service ever wrote: the task, its past versions, the views and the
audit must read them exactly as before, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from adapters.cli import main
from adapters.config import Settings
from app import create_app
from domain import commands as c
from domain.application import TaskApplication
from domain.hashing import GENESIS_HASH, event_hash
from domain.ids import new_id, public_id
from domain.task import Actor, Task, TaskAssigned, TaskCreated
from eventsourcing.utils import get_topic
from tests.conftest import KEY, create


def stored_before(event_class: type, fields: dict[str, Any]) -> Any:
    """An event with exactly these fields, as decoding a stored one gives it."""
    event = object.__new__(event_class)
    object.__setattr__(event, "__dict__", fields)
    return event


def write_old_create_with_agent(settings: Settings) -> UUID:
    """The two events a create with agent "amy" stored before the change, hash chain and all."""
    task_id, created_at = new_id(), datetime.now(timezone.utc) - timedelta(minutes=5)
    assigned_at = created_at + timedelta(microseconds=150)
    created = {"originator_id": task_id, "originator_version": 1, "timestamp": created_at,
               "originator_topic": get_topic(Task), "actor": "key_old", "request_id": "req_old",
               "tenant": "default", "prev_hash": GENESIS_HASH, "task": "Written by an older service",
               "agent_id": "amy", "team_id": None, "context": {}, "priority": "high", "deadline": None,
               "deliverables": [], "budget": None}
    created["hash"] = event_hash("TaskCreated", created)
    assigned = {"originator_id": task_id, "originator_version": 2, "timestamp": assigned_at,
                "actor": "key_old", "request_id": "req_old", "tenant": "default",
                "prev_hash": created["hash"], "agent_id": "amy", "team_id": None}
    assigned["hash"] = event_hash("TaskAssigned", assigned)
    app = TaskApplication(env=settings.eventsourcing_env())
    try:
        events = [stored_before(TaskCreated, created), stored_before(TaskAssigned, assigned)]
        app.recorder.insert_events([app.mapper.to_stored_event(event) for event in events])
    finally:
        app.close()
    return task_id


def test_an_older_create_with_an_agent_reads_as_it_did(settings: Settings) -> None:
    task_id = write_old_create_with_agent(settings)
    public = public_id(task_id)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {KEY}"}) as client:
        stored = client.get(f"/agents/tasks/{public}/events").json()["data"]["events"]
        assert [(e["version"], e["type"]) for e in stored] == [(1, "TaskCreated"), (2, "TaskAssigned")]
        assert "assigned" not in stored[0]["data"]  # the stored event is as it was written

        now = client.get(f"/agents/tasks/{public}")
        assert now.status_code == 200, now.text
        task = now.json()["data"]
        assert (task["status"], task["version"], task["agentId"]) == ("assigned", 2, "amy")
        timeline = task["timeline"]
        assert timeline["assignedAt"] != timeline["createdAt"]  # assigned by the second event, 150 µs later
        at_one = client.get(f"/agents/tasks/{public}", params={"version": 1}).json()["data"]
        assert (at_one["status"], at_one["version"], at_one["timeline"]["assignedAt"]) == ("pending", 1, None)

        new = create(client, task="Written now", agentId="bob")  # one event, for comparison
        assert (new["status"], new["version"]) == ("assigned", 1)
        new_timeline = client.get(f"/agents/tasks/{new['taskId']}").json()["data"]["timeline"]
        assert new_timeline["assignedAt"] == new_timeline["createdAt"]

        listed = client.get("/agents/tasks", params={"status": "assigned", "minPosition": 3}).json()["data"]
        assert {t["taskId"]: t["version"] for t in listed["tasks"]} == {public: 2, new["taskId"]: 1}
        stats = client.get("/agents/tasks/stats", params={"minPosition": 3}).json()["data"]
        assert (stats["total"], stats["byStatus"]["assigned"], stats["byStatus"]["pending"]) == (2, 2, 0)

    verified = CliRunner().invoke(main, ["audit", "verify"],
                                  env={"TASKS_DATABASE": settings.database, "TASKS_AUDIT_KEY": ""})
    assert verified.exit_code == 0, verified.output
    assert "checked 3 events of 2 tasks" in verified.output


@pytest.mark.parametrize("agent", [None, "amy"])
def test_a_create_is_one_event_whose_assigned_field_says_whether_an_agent_took_it(app: TaskApplication,
                                                                                agent: str | None) -> None:
    written = app.create_task(c.CreateTask(task="One event", agent_id=agent), Actor("key_x", "req_x"))
    events = list(app.events.get(written.task.id))
    assert [type(e) for e in events] == [TaskCreated]
    assert events[0].assigned is (agent is not None)
    replayed = Task.replay(events)
    assert replayed is not None
    assert (replayed.status.value, replayed.version) == ("assigned" if agent else "pending", 1)
    assert replayed.assigned_at == (events[0].timestamp if agent else None)
