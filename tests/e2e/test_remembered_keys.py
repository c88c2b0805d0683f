"""On PostgreSQL a write takes its key from memory (pipeline.py) and its commit confirms the key:
a revoked key still gets nothing but 401, and nothing of it is saved, from the next request on.
On SQLite the same requests read the key (its counter-checked memo), with the same answers."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.testclient import TestClient

from adapters.config import Settings
from app import create_app
from tests.conftest import KEY, create

UNAUTHORIZED = {"code": "unauthorized", "message": "unknown or revoked key"}


def issued(client: TestClient, role: str) -> tuple[str, dict[str, str]]:
    data = client.post("/keys", json={"role": role}).json()["data"]
    return data["keyId"], {"Authorization": f"Bearer {data['secret']}"}


def logged(client: TestClient) -> int:
    return client.app_state["services"].app.recorder.max_notification_id() or 0  # type: ignore[attr-defined]


def refused(response: Any) -> bool:
    error = response.json()["error"]
    return (response.status_code == 401 and response.headers["www-authenticate"] == 'Bearer realm="tasks"'
            and {"code": error["code"], "message": error["message"]} == UNAUTHORIZED)


def test_a_revoked_key_remembered_by_the_api_writes_nothing_and_gets_401(client: TestClient,
                                                                         backend: str) -> None:
    services = client.app_state["services"]  # type: ignore[attr-defined]
    key_id, headers = issued(client, "client")
    secret = headers["Authorization"].split()[1]
    task_id = client.post("/agents/tasks", json={"task": "before"}, headers=headers).json()["data"]["taskId"]
    remembered = services.reads.remembered(secret)
    assert (remembered is not None) == (backend == "postgres")  # what the next write will skip reading
    assert client.delete(f"/keys/{key_id}").status_code == 200
    before = logged(client)

    create_ = client.post("/agents/tasks", json={"task": "after"}, headers=headers)
    update = client.patch(f"/agents/tasks/{task_id}", json={"priority": "high"}, headers=headers)
    cancel = client.post(f"/agents/tasks/{task_id}/cancel", json={}, headers=headers)

    assert refused(create_) and refused(update) and refused(cancel)
    assert logged(client) == before
    task = client.get(f"/agents/tasks/{task_id}").json()["data"]
    assert task["status"] != "cancelled" and task["priority"] != "high"
    assert services.reads.remembered(secret) is None  # forgotten once the key was read
    metrics = client.get("/metrics").text
    commit_refused = 'tasks_commands_total{command="create",outcome="RevokedKeyError"} 1.0'
    assert (commit_refused in metrics) == (backend == "postgres")  # the commit itself refused it there


def test_an_answer_before_the_writer_to_a_revoked_remembered_key_is_401(client: TestClient) -> None:
    key_id, headers = issued(client, "client")
    create(client)
    assert client.post("/agents/tasks", json={"task": "remember me"}, headers=headers).status_code == 201
    task_id = create(client)["taskId"]
    assert client.delete(f"/keys/{key_id}").status_code == 200

    # for a live key: 422, 403 and 404
    invalid = client.post("/agents/tasks", json={"priority": "urgent"}, headers=headers)
    not_its_role = client.post(f"/agents/tasks/{task_id}/start", json={}, headers=headers)
    missing = client.post("/agents/tasks/task_" + "0" * 32 + "/cancel", json={}, headers=headers)

    assert refused(invalid) and refused(not_its_role) and refused(missing)
    assert "x-request-id" in invalid.headers


def test_a_live_remembered_key_gets_the_usual_answers(client: TestClient) -> None:
    _, headers = issued(client, "client")
    assert client.post("/agents/tasks", json={"task": "remember me"}, headers=headers).status_code == 201
    task_id = create(client)["taskId"]

    invalid = client.post("/agents/tasks", json={"priority": "urgent"}, headers=headers)
    not_its_role = client.post(f"/agents/tasks/{task_id}/start", json={}, headers=headers)
    made = client.post("/agents/tasks", json={"task": "again"}, headers=headers)
    cancelled = client.post(f"/agents/tasks/{task_id}/cancel", json={}, headers=headers)

    assert invalid.status_code == 422 and invalid.json()["error"]["details"]["field"] == "$.task"
    assert not_its_role.status_code == 403
    assert made.status_code == 201 and made.json()["data"]["status"] == "pending"
    assert cancelled.status_code == 200 and cancelled.json()["data"]["status"] == "cancelled"
    admin = {"Authorization": f"Bearer {KEY}"}
    assert client.get(f"/agents/tasks/{made.json()['data']['taskId']}", headers=admin).status_code == 200


def test_a_revoked_remembered_key_over_its_rate_or_with_an_idempotency_key_gets_401(
        settings: Settings) -> None:
    limited = dataclasses.replace(settings, rate_limit=0.01, rate_burst=2)  # two now, the next in 100 s
    with TestClient(create_app(limited), headers={"Authorization": f"Bearer {KEY}"}) as client:
        key_id, headers = issued(client, "client")
        assert client.post("/agents/tasks", json={"task": "remember me"}, headers=headers).status_code == 201
        assert client.post("/agents/tasks", json={"task": "and again"}, headers=headers).status_code == 201
        assert client.post("/agents/tasks", json={"task": "over"}, headers=headers).status_code == 429
        assert client.delete(f"/keys/{key_id}").status_code == 200
        before = logged(client)

        over_its_rate = client.post("/agents/tasks", json={"task": "over, revoked"}, headers=headers)
        replayable = client.post("/agents/tasks", json={"task": "keyed"},
                                 headers={**headers, "Idempotency-Key": "k-1"})

        assert refused(over_its_rate) and refused(replayable)
        assert logged(client) == before
