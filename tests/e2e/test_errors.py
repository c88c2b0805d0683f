"""Every refusal: the status, the stable code, and the field at fault."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.conftest import act, create


def error_of(response) -> dict:  # type: ignore[no-untyped-def]
    body = response.json()
    assert body["success"] is False
    assert body["metadata"]["requestId"]
    return body["error"]  # type: ignore[no-any-return]


def test_no_key_is_401(client: TestClient) -> None:
    response = client.get("/agents/tasks", headers={"Authorization": ""})
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_unknown_key_is_401(client: TestClient) -> None:
    response = client.post("/agents/tasks", json={"task": "x"}, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert client.get("/agents/tasks").json()["data"]["total"] == 0  # nothing was written


def test_health_and_openapi_need_no_key(client: TestClient) -> None:
    assert client.get("/healthz", headers={"Authorization": ""}).status_code == 200
    assert client.get("/openapi.json", headers={"Authorization": ""}).status_code == 200


@pytest.mark.parametrize("task_id", ["task_00000000000000000000000000000000", "task_zz", "abc", "task_"])
def test_unknown_or_malformed_task_is_404(client: TestClient, task_id: str) -> None:
    for response in (client.get(f"/agents/tasks/{task_id}"),
                     client.post(f"/agents/tasks/{task_id}/start", json={}),
                     client.patch(f"/agents/tasks/{task_id}", json={"notes": "x"}),
                     client.get(f"/agents/tasks/{task_id}/deliverables")):
        assert response.status_code == 404
        assert error_of(response)["code"] == "not_found"


def test_unknown_path_and_method(client: TestClient) -> None:
    assert error_of(client.get("/agents/nothing"))["code"] == "not_found"
    response = client.delete("/agents/tasks")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_unreadable_json_is_400(client: TestClient) -> None:
    response = client.post("/agents/tasks", content=b'{"task": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


def test_body_that_is_not_json_is_415(client: TestClient) -> None:
    response = client.post("/agents/tasks", content=b"task=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    response = client.post("/agents/tasks", json={"task": "x" * 2_000_000})
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "$.task"),
        ({"task": ""}, "$.task"),
        ({"task": 42}, "$.task"),
        ({"task": "x", "priority": "asap"}, "$.priority"),
        ({"task": "x", "deadline": "tomorrow"}, "$.deadline"),
        ({"task": "x", "deadline": "2024-10-30T17:00:00"}, "$.deadline"),
        ({"task": "x", "agentId": "has spaces"}, "$.agentId"),
        ({"task": "x", "context": ["not", "an", "object"]}, "$.context"),
        ({"task": "x", "deliverables": "pdf"}, "$.deliverables"),
        ({"task": "x", "prority": "high"}, "$.prority"),
    ],
)
def test_invalid_create_is_422_naming_the_field(client: TestClient, body: dict, field: str) -> None:
    response = client.post("/agents/tasks", json=body)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert error["details"]["field"] == field
    assert client.get("/agents/tasks").json()["data"]["total"] == 0


@pytest.mark.parametrize(
    ("action", "body", "field"),
    [
        ("feedback", {"rating": 0}, "$.rating"),
        ("feedback", {"rating": 6}, "$.rating"),
        ("feedback", {}, "$.rating"),
        ("progress", {"progress": 101}, "$.progress"),
        ("progress", {"progress": -1}, "$.progress"),
        ("fail", {"error": {"code": "x"}}, "$.error.message"),
        ("assign", {}, "$.agentId"),
        ("block", {}, "$.reason"),
        ("complete", {"quality": {"score": 1.5}}, "$.quality.score"),
        ("escalate", {"reason": "late", "priority": "low"}, "$.priority"),
    ],
)
def test_invalid_command_is_422_and_changes_nothing(client: TestClient, action: str, body: dict, field: str) -> None:
    task = create(client, priority="high")
    response = client.post(f"/agents/tasks/{task['taskId']}/{action}", json=body)
    assert response.status_code == 422, response.text
    assert error_of(response)["details"]["field"] == field
    assert client.get(f"/agents/tasks/{task['taskId']}").json()["data"]["version"] == task["version"]


def test_empty_patch_is_422(client: TestClient) -> None:
    task_id = create(client)["taskId"]
    response = client.patch(f"/agents/tasks/{task_id}", json={})
    assert response.status_code == 422
    assert error_of(response)["details"]["field"] == "$"


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "$.limit"), ("limit=abc", "$.limit"), ("limit=100000", "$.limit"), ("offset=-1", "$.offset"),
     ("status=done", "$.status"), ("priority=asap", "$.priority"), ("startDate=yesterday", "$.startDate"),
     ("startDate=2024-13-45", "$.startDate"), ("colour=red", "$.colour")],
)
def test_invalid_list_query_is_422(client: TestClient, query: str, field: str) -> None:
    response = client.get(f"/agents/tasks?{query}")
    assert response.status_code == 422
    assert error_of(response)["details"]["field"] == field


def test_feedback_only_on_completed_tasks(client: TestClient) -> None:
    task_id = create(client)["taskId"]
    response = client.post(f"/agents/tasks/{task_id}/feedback", json={"rating": 4})
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "invalid_transition"
    assert error["details"] == {"status": "pending", "allowedStatuses": ["completed"], "command": "give_feedback"}


def test_retry_only_on_failed_tasks(client: TestClient) -> None:
    task_id = create(client, agentId="amy")["taskId"]
    error = error_of(client.post(f"/agents/tasks/{task_id}/retry", json={}))
    assert error["details"]["allowedStatuses"] == ["failed"]


@pytest.mark.parametrize("end", ["cancel", "complete"])
def test_nothing_changes_an_ended_task(client: TestClient, end: str) -> None:
    task_id = create(client, agentId="amy")["taskId"]
    if end == "complete":
        act(client, task_id, "start")
        act(client, task_id, "review")
    act(client, task_id, end)
    for action, body in (("cancel", {}), ("start", {}), ("escalate", {"reason": "late"}),
                         ("fail", {"error": {"code": "x", "message": "y"}})):
        response = client.post(f"/agents/tasks/{task_id}/{action}", json=body)
        assert response.status_code == 409, action
    assert client.patch(f"/agents/tasks/{task_id}", json={"notes": "x"}).status_code == 409


def test_deliverables_before_completion_is_409(client: TestClient) -> None:
    task_id = create(client, agentId="amy")["taskId"]
    response = client.get(f"/agents/tasks/{task_id}/deliverables")
    assert response.status_code == 409
    assert error_of(response)["details"]["allowedStatuses"] == ["completed"]


def test_stale_if_match_is_412_and_records_nothing(client: TestClient) -> None:
    task = create(client, agentId="amy")
    act(client, task["taskId"], "start")

    response = client.post(f"/agents/tasks/{task['taskId']}/progress", json={"progress": 10},
                           headers={"If-Match": f'"{task["version"]}"'})

    assert response.status_code == 412
    error = error_of(response)
    assert error["code"] == "version_conflict"
    assert error["details"] == {"expectedVersion": task["version"], "currentVersion": task["version"] + 1}
    assert client.get(f"/agents/tasks/{task['taskId']}").json()["data"]["progress"] == 0


def test_malformed_if_match_is_400(client: TestClient) -> None:
    task_id = create(client)["taskId"]
    response = client.patch(f"/agents/tasks/{task_id}", json={"notes": "x"}, headers={"If-Match": "yesterday"})
    assert response.status_code == 400
    assert error_of(response)["details"]["field"] == "If-Match"


def test_405_names_every_method_the_path_allows(client: TestClient) -> None:
    task_id = create(client)["taskId"]
    response = client.put(f"/agents/tasks/{task_id}", json={})
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "PATCH"}
    assert set(client.delete("/agents/tasks").headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_config_errors_name_the_variable() -> None:
    from adapters.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="TASKS_MAX_BODY_BYTES"):
        Settings.from_env({"TASKS_MAX_BODY_BYTES": "abc"})
    with pytest.raises(ConfigError, match="TASKS_DATABASE"):
        Settings.from_env({"TASKS_DATABASE": "mysql://x/y"}).eventsourcing_env()


def test_a_role_that_may_not_act_gets_403_and_nothing_changes(client: TestClient) -> None:
    from tests.conftest import key_for

    analyst = key_for(client, "analyst")
    task_id = create(client, agentId="amy")["taskId"]

    refused = client.post("/agents/tasks", json={"task": "x"}, headers=analyst)
    start = client.post(f"/agents/tasks/{task_id}/start", json={}, headers=analyst)

    assert (refused.status_code, start.status_code) == (403, 403)
    assert error_of(refused)["code"] == "forbidden"
    assert "analyst" not in error_of(refused)["details"]["allowedRoles"]
    assert client.get("/agents/tasks", headers=analyst).json()["data"]["total"] == 1
