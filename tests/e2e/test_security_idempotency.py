"""Idempotency-Key: a repeated POST is answered as the first was, and appends nothing."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from starlette.testclient import TestClient

from adapters.config import Settings
from adapters.http.idempotency import fingerprint
from app import create_app
from tests.conftest import KEY, act, create, key_for


def total(client: TestClient) -> int:
    return int(client.get("/agents/tasks").json()["data"]["total"])


def test_a_repeat_gets_the_first_answer_and_creates_nothing(client: TestClient) -> None:
    headers = {"Idempotency-Key": "create-1"}
    first = client.post("/agents/tasks", json={"task": "Once", "priority": "high"}, headers=headers)
    again = client.post("/agents/tasks", content=b'{"priority": "high",  "task": "Once"}',
                        headers={**headers, "Content-Type": "application/json"})
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["etag"] == first.headers["etag"]
    assert total(client) == 1


def test_a_repeated_command_appends_nothing(client: TestClient) -> None:
    task = create(client, agentId="amy")
    for _ in range(3):
        response = client.post(f"/agents/tasks/{task['taskId']}/start", headers={"Idempotency-Key": "start-1"})
        assert response.status_code == 200
        assert response.json()["data"]["version"] == 2
    assert client.get(f"/agents/tasks/{task['taskId']}").json()["data"]["version"] == 2


def test_the_same_key_with_another_body_is_422(client: TestClient) -> None:
    headers = {"Idempotency-Key": "create-2"}
    assert client.post("/agents/tasks", json={"task": "One"}, headers=headers).status_code == 201
    response = client.post("/agents/tasks", json={"task": "Two"}, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert response.json()["error"]["details"]["field"] == "Idempotency-Key"
    task = create(client)
    other_path = client.post(f"/agents/tasks/{task['taskId']}/cancel", json={"task": "One"}, headers=headers)
    assert other_path.status_code == 422
    assert total(client) == 2


def test_a_refusal_is_replayed_too(client: TestClient) -> None:
    task = create(client)  # pending: start is refused
    headers = {"Idempotency-Key": "start-pending"}
    first = client.post(f"/agents/tasks/{task['taskId']}/start", headers=headers)
    assert first.status_code == 409
    act(client, task["taskId"], "assign", {"agentId": "amy"})
    again = client.post(f"/agents/tasks/{task['taskId']}/start", headers=headers)
    assert again.status_code == 409 and again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert client.get(f"/agents/tasks/{task['taskId']}").json()["data"]["status"] == "assigned"


def test_keys_are_scoped_to_the_caller(client: TestClient) -> None:
    other = key_for(client, "client")
    headers = {"Idempotency-Key": "shared-name"}
    mine = client.post("/agents/tasks", json={"task": "Same"}, headers=headers)
    theirs = client.post("/agents/tasks", json={"task": "Same"}, headers={**headers, **other})
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["data"]["taskId"] != theirs.json()["data"]["taskId"]
    assert "idempotent-replayed" not in theirs.headers
    assert total(client) == 2


@pytest.mark.parametrize("value", [b"", b"a" * 256, b"with space", "naïve".encode()])
def test_a_malformed_key_is_400(client: TestClient, value: bytes) -> None:
    response = client.post("/agents/tasks", json={"task": "x"}, headers={"Idempotency-Key": value})
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"field": "Idempotency-Key", "in": "header"}
    assert total(client) == 0


@pytest.fixture
def impatient(settings: Settings) -> Iterator[TestClient]:
    """A client whose server waits only briefly for a running first request."""
    quick = dataclasses.replace(settings, idempotency_wait=0.1)
    with TestClient(create_app(quick), headers={"Authorization": f"Bearer {KEY}"}) as test_client:
        yield test_client


def test_a_repeat_while_the_first_still_runs_is_409(impatient: TestClient) -> None:
    # Another process has claimed the key and has not answered yet.
    services = impatient.app_state["services"]  # type: ignore[attr-defined]
    key_id = services.keys.authenticate(KEY).key_id
    body = b'{"task": "Slow"}'
    assert services.idempotency.claim(key_id, "busy", fingerprint("POST", "/agents/tasks", body))
    response = impatient.post("/agents/tasks", content=body,
                              headers={"Idempotency-Key": "busy", "Content-Type": "application/json"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_progress"
    assert response.headers["retry-after"] == "1"
    assert total(impatient) == 0


def test_an_expired_key_can_be_used_again(settings: Settings) -> None:
    forgetful = dataclasses.replace(settings, idempotency_ttl=1e-9)
    with TestClient(create_app(forgetful), headers={"Authorization": f"Bearer {KEY}"}) as client:
        headers = {"Idempotency-Key": "old"}
        assert client.post("/agents/tasks", json={"task": "One"}, headers=headers).status_code == 201
        again = client.post("/agents/tasks", json={"task": "One"}, headers=headers)
        assert again.status_code == 201 and "idempotent-replayed" not in again.headers
        assert total(client) == 2


def test_fifty_identical_creates_at_once_make_one_task_and_fifty_identical_answers(client: TestClient) -> None:
    start = threading.Barrier(50)
    body = {"task": "Exactly once", "agentId": "amy", "context": {"batch": 7}}

    def send(_: int) -> tuple[int, bytes]:
        start.wait()
        response = client.post("/agents/tasks", json=body, headers={"Idempotency-Key": "fifty"})
        return response.status_code, response.content

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(send, range(50)))
    assert {status for status, _ in answers} == {201}
    assert len({content for _, content in answers}) == 1
    listed = client.get("/agents/tasks").json()["data"]
    assert listed["total"] == 1
    assert listed["tasks"][0]["taskId"] == json.loads(answers[0][1])["data"]["taskId"]
    assert listed["tasks"][0]["version"] == 1
