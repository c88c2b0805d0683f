"""What an operator checks: liveness, readiness, metrics, JSON logs."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.conftest import act, create


def test_readyz_answers_when_the_database_does(client: TestClient) -> None:
    response = client.get("/readyz", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "ready"


def test_metrics_count_requests_commands_and_projection_positions(client: TestClient) -> None:
    task_id = create(client, agentId="amy")["taskId"]
    act(client, task_id, "start")
    client.post(f"/agents/tasks/{task_id}/start", json={})  # refused: already started
    client.get(f"/agents/tasks/{task_id}")

    text = client.get("/metrics", headers={"Authorization": ""}).text

    assert 'tasks_http_requests_total{method="GET",route="/agents/tasks/{task_id}",status="200"} 1.0' in text
    assert 'tasks_commands_total{command="start",outcome="ok"} 1.0' in text
    assert 'tasks_commands_total{command="start",outcome="InvalidTransitionError"} 1.0' in text
    assert 'tasks_commands_total{command="create",outcome="ok"} 1.0' in text
    assert "tasks_events_appended 2.0" in text
    assert 'tasks_projection_lag{projection="task_list"} 0.0' in text
    assert "tasks_http_request_duration_seconds_bucket" in text
