"""A task driven through its whole life over HTTP, and what each step shows."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.conftest import act, create


def test_agent_walks_a_task_from_assignment_to_feedback(client: TestClient) -> None:
    task_id = create(client, teamId="analytics")["taskId"]

    steps = [
        ("assign", {"agentId": "amy"}, "assigned"),
        ("start", {}, "in_progress"),
        ("progress", {"progress": 45, "phase": "analysis", "note": "half way"}, "in_progress"),
        ("block", {"reason": "waiting for the CSV"}, "blocked"),
        ("unblock", {}, "in_progress"),
        ("review", {"note": "ready"}, "review"),
        ("request-changes", {"reason": "add churn chart"}, "in_progress"),
        ("review", {}, "review"),
        ("complete", {"result": {"summary": "done"}}, "completed"),
        ("feedback", {"rating": 4, "feedback": "good", "issues": ["late"]}, "completed"),
    ]
    version = 1
    for action, body, status in steps:
        data = act(client, task_id, action, body)["data"]
        version += 1
        assert (action, data["status"], data["version"]) == (action, status, version)

    data = client.get(f"/agents/tasks/{task_id}").json()["data"]
    assert data["agentId"] == "amy" and data["teamId"] == "analytics"
    assert data["progress"] == 100
    assert data["timeline"]["assignedAt"] <= data["timeline"]["startedAt"] <= data["timeline"]["completedAt"]
    assert data["feedback"][0]["issues"] == ["late"]


def test_progress_shows_on_get_and_in_the_list(client: TestClient) -> None:
    task_id = create(client, agentId="amy")["taskId"]
    act(client, task_id, "start")
    act(client, task_id, "progress", {"progress": 45, "phase": "analysis"})

    data = client.get(f"/agents/tasks/{task_id}").json()["data"]
    listed = client.get("/agents/tasks?status=in_progress").json()["data"]["tasks"]

    assert (data["progress"], data["currentPhase"]) == (45, "analysis")
    assert [(t["taskId"], t["progress"], t["currentPhase"]) for t in listed] == [(task_id, 45, "analysis")]


def test_failed_task_carries_its_error_until_retried(client: TestClient) -> None:
    task_id = create(client, agentId="amy")["taskId"]
    act(client, task_id, "start")
    failed = act(client, task_id, "fail", {"error": {"code": "timeout", "message": "source did not answer"}})["data"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "timeout", "message": "source did not answer"}

    retried = act(client, task_id, "retry", {})["data"]

    assert (retried["status"], retried["agentId"], retried["attempt"], retried["error"]) == ("assigned", "amy", 2, None)


def test_escalate_raises_priority_and_hands_over_without_changing_status(client: TestClient) -> None:
    task_id = create(client, agentId="amy", priority="medium")["taskId"]

    once = act(client, task_id, "escalate", {"reason": "customer waiting"})["data"]
    handed = act(client, task_id, "escalate", {"reason": "needs a senior", "agentId": "bob", "teamId": "seniors"})["data"]
    top = act(client, task_id, "escalate", {"reason": "CEO asks", "priority": "urgent"})["data"]
    again = act(client, task_id, "escalate", {"reason": "still"})["data"]

    assert once["priority"] == "high" and once["status"] == "assigned"
    assert (handed["priority"], handed["agentId"], handed["teamId"], handed["status"]) == ("urgent", "bob", "seniors", "assigned")
    assert top["priority"] == again["priority"] == "urgent"
    assert again["escalations"] == 4


def test_escalate_is_allowed_on_a_failed_task(client: TestClient) -> None:
    task_id = create(client, agentId="amy")["taskId"]
    act(client, task_id, "start")
    act(client, task_id, "fail", {"error": {"code": "x", "message": "y"}})
    assert act(client, task_id, "escalate", {"reason": "needs help"})["data"]["status"] == "failed"


def test_patch_merges_context_appends_notes_and_clears_deadline(client: TestClient) -> None:
    task_id = create(client, context={"a": 1, "b": 2}, deadline="2030-01-01T00:00:00+02:00")["taskId"]
    assert client.get(f"/agents/tasks/{task_id}").json()["data"]["deadline"] == "2029-12-31T22:00:00Z"

    client.patch(f"/agents/tasks/{task_id}", json={"context": {"b": 3, "c": 4}, "notes": "first"})
    data = client.patch(f"/agents/tasks/{task_id}", json={"deadline": None, "notes": "second"}).json()["data"]

    assert data["context"] == {"a": 1, "b": 3, "c": 4}
    assert [n["text"] for n in data["notes"]] == ["first", "second"]
    assert data["deadline"] is None


def test_etag_is_the_version_and_if_match_makes_a_command_conditional(client: TestClient) -> None:
    created = client.post("/agents/tasks", json={"task": "x", "agentId": "amy"})
    task_id = created.json()["data"]["taskId"]
    assert created.headers["etag"] == '"1"'

    started = client.post(f"/agents/tasks/{task_id}/start", json={}, headers={"If-Match": '"1"'})

    assert started.status_code == 200
    assert started.headers["etag"] == '"2"'
    assert client.get(f"/agents/tasks/{task_id}").headers["etag"] == '"2"'


def test_if_none_match_on_an_unchanged_task_is_304(client: TestClient) -> None:
    task_id = create(client)["taskId"]
    etag = client.get(f"/agents/tasks/{task_id}").headers["etag"]

    assert client.get(f"/agents/tasks/{task_id}", headers={"If-None-Match": etag}).status_code == 304
    client.patch(f"/agents/tasks/{task_id}", json={"priority": "high"})
    assert client.get(f"/agents/tasks/{task_id}", headers={"If-None-Match": etag}).status_code == 200


def test_commands_report_the_log_position_and_lists_reflect_it(client: TestClient) -> None:
    first = client.post("/agents/tasks", json={"task": "a"}).json()["metadata"]["position"]
    second = client.post("/agents/tasks", json={"task": "b"}).json()["metadata"]["position"]
    assert second > first

    listed = client.get("/agents/tasks")

    assert int(listed.headers["x-projection-position"]) >= second
    assert [t["task"] for t in listed.json()["data"]["tasks"]] == ["b", "a"]  # newest first


def test_request_id_is_echoed_and_generated(client: TestClient) -> None:
    mine = client.get("/agents/tasks", headers={"X-Request-Id": "trace-123"})
    assert mine.headers["x-request-id"] == "trace-123"
    assert mine.json()["metadata"]["requestId"] == "trace-123"
    assert client.get("/agents/tasks").headers["x-request-id"].startswith("req_")


def test_list_filters_paginate_and_count(client: TestClient) -> None:
    ids = [create(client, task=f"t{i}", priority="high" if i % 2 else "low",
                  teamId="red" if i < 3 else "blue")["taskId"] for i in range(7)]

    def listing(query: str) -> dict:  # type: ignore[type-arg]
        return client.get(f"/agents/tasks?{query}").json()["data"]  # type: ignore[no-any-return]

    assert listing("priority=high")["total"] == 3
    assert listing("teamId=red")["total"] == 3
    assert listing("teamId=blue&priority=low")["total"] == 2
    page = listing("limit=3&offset=3")
    assert [t["taskId"] for t in page["tasks"]] == list(reversed(ids))[3:6]
    assert (page["total"], page["hasMore"]) == (7, True)
    assert listing("limit=3&offset=6")["hasMore"] is False
    today = client.get(f"/agents/tasks/{ids[0]}").json()["data"]["timeline"]["createdAt"][:10]
    assert listing(f"startDate={today}&endDate={today}")["total"] == 7
    assert listing("endDate=2000-01-01")["total"] == 0
    assert listing("startDate=2999-01-01T00:00:00Z")["total"] == 0


def test_if_none_match_accepts_weak_tags_lists_and_star(client: TestClient) -> None:
    task_id = create(client)["taskId"]
    for header in ('W/"1"', '"7", "1"', "*"):
        assert client.get(f"/agents/tasks/{task_id}", headers={"If-None-Match": header}).status_code == 304, header
    assert client.get(f"/agents/tasks/{task_id}", headers={"If-None-Match": '"2"'}).status_code == 200
