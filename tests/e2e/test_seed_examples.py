"""The seed document's examples, sent as written, answered in the seed's shape."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.conftest import act, create

SEED_CREATE = {
    "task": "Analyze Q4 revenue trends and create executive report",
    "agentId": "amy",
    "context": {
        "dataSource": "revenue_q4_2024.csv",
        "focusAreas": ["growth", "churn", "expansion"],
        "targetAudience": "C-suite executives",
    },
    "priority": "high",
    "deadline": "2024-10-30T17:00:00Z",
    "deliverables": ["pdf-report", "presentation", "data-analysis"],
}


def test_create_task_as_in_the_seed(client: TestClient) -> None:
    response = client.post("/agents/tasks", json=SEED_CREATE)

    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert data["taskId"].startswith("task_")
    assert data["status"] == "assigned"  # an agent was named, so it is assigned at once
    assert data["task"] == SEED_CREATE["task"]
    assert (data["agentId"], data["agentName"]) == ("amy", "Amy")
    assert data["priority"] == "high"
    assert data["deadline"] == "2024-10-30T17:00:00Z"
    assert data["deliverables"] == ["pdf-report", "presentation", "data-analysis"]
    assert data["trackingUrl"] == f"http://testserver/agents/tasks/{data['taskId']}"
    assert data["createdAt"].endswith("Z")
    assert {"estimatedCompletion", "estimatedDuration"} <= data.keys()
    assert body["metadata"]["requestId"].startswith("req_")
    assert body["metadata"]["timestamp"].endswith("Z")
    assert response.headers["location"] == data["trackingUrl"]


def test_task_without_agent_is_pending(client: TestClient) -> None:
    data = create(client, task="Do revenue analysis")
    assert data["status"] == "pending"
    assert data["agentId"] is None
    assert data["priority"] == "medium"


def test_get_task_status_has_the_seed_shape(client: TestClient) -> None:
    task_id = create(client, **SEED_CREATE)["taskId"]

    response = client.get(f"/agents/tasks/{task_id}")

    assert response.status_code == 200
    data = response.json()["data"]
    for field in ("taskId", "status", "task", "agentId", "agentName", "priority", "progress",
                  "currentPhase", "timeline", "result", "deliverables", "quality", "error",
                  "attempt", "notes", "feedback"):
        assert field in data, field
    assert set(data["timeline"]) >= {"createdAt", "assignedAt", "startedAt", "completedAt", "duration"}
    assert data["context"] == SEED_CREATE["context"]


def test_list_tasks_with_the_seed_query(client: TestClient) -> None:
    done = create(client, **SEED_CREATE)["taskId"]
    for action in ("start", "review", "complete"):
        act(client, done, action)
    create(client, **SEED_CREATE)  # amy's, but not completed
    create(client, task="Someone else's", agentId="bob")

    response = client.get("/agents/tasks?status=completed&agentId=amy&limit=10")

    assert response.status_code == 200
    page = response.json()["data"]
    assert [t["taskId"] for t in page["tasks"]] == [done]
    assert (page["total"], page["limit"], page["offset"], page["hasMore"]) == (1, 10, 0, False)


def test_update_task_as_in_the_seed(client: TestClient) -> None:
    task_id = create(client, **SEED_CREATE)["taskId"]

    response = client.patch(f"/agents/tasks/{task_id}", json={
        "priority": "urgent",
        "deadline": "2024-10-29T12:00:00Z",
        "notes": "CEO needs this for board meeting",
    })

    assert response.status_code == 200
    data = response.json()["data"]
    assert data["priority"] == "urgent"
    assert data["deadline"] == "2024-10-29T12:00:00Z"
    assert [n["text"] for n in data["notes"]] == ["CEO needs this for board meeting"]


def test_cancel_task_as_in_the_seed(client: TestClient) -> None:
    task_id = create(client, **SEED_CREATE)["taskId"]

    body = act(client, task_id, "cancel", {"reason": "Requirements changed, will create new task"})

    assert body["data"]["status"] == "cancelled"
    assert body["data"]["cancelReason"] == "Requirements changed, will create new task"


def test_retry_task_as_in_the_seed(client: TestClient) -> None:
    task_id = create(client, **SEED_CREATE)["taskId"]
    act(client, task_id, "start")
    act(client, task_id, "fail", {"error": {"code": "data_missing", "message": "CSV not found"}})

    body = act(client, task_id, "retry", {"reassign": True, "context": {"additionalData": "updated_dataset.csv"}})

    data = body["data"]
    assert data["status"] == "pending"  # reassign: the task waits for another agent
    assert data["agentId"] is None
    assert data["attempt"] == 2
    assert data["context"]["additionalData"] == "updated_dataset.csv"
    assert data["context"]["dataSource"] == "revenue_q4_2024.csv"


def test_deliverables_and_feedback_as_in_the_seed(client: TestClient) -> None:
    task_id = create(client, **SEED_CREATE)["taskId"]
    act(client, task_id, "start")
    act(client, task_id, "review")
    act(client, task_id, "complete", {
        "result": {"summary": "Q4 revenue grew 23% YoY to $12.5M.",
                   "insights": ["Expansion revenue up 45% due to successful upselling"],
                   "recommendations": ["Double down on expansion playbook"]},
        "deliverables": [
            {"type": "pdf-report", "name": "Q4_Revenue_Analysis.pdf",
             "url": "https://storage.do/deliverables/task_abc123/report.pdf", "size": 2457600},
            {"type": "presentation", "name": "Q4_Executive_Presentation.pptx",
             "url": "https://storage.do/deliverables/task_abc123/slides.pptx", "size": 5242880},
        ],
        "quality": {"score": 0.94, "accuracy": 0.96, "completeness": 0.98, "clarity": 0.92},
    })

    response = client.get(f"/agents/tasks/{task_id}/deliverables")

    assert response.status_code == 200
    items = response.json()["data"]["deliverables"]
    assert [d["name"] for d in items] == ["Q4_Revenue_Analysis.pdf", "Q4_Executive_Presentation.pptx"]
    assert items[0]["format"] == "application/pdf"
    assert items[1]["format"] == "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    assert items[0]["downloadUrl"] and items[0]["size"] == 2457600 and items[0]["createdAt"]

    feedback = act(client, task_id, "feedback", {
        "rating": 5,
        "feedback": "Excellent analysis with actionable insights. Report was clear and well-structured.",
        "issues": [],
    })["data"]["feedback"]
    assert [(f["rating"], f["issues"]) for f in feedback] == [(5, [])]

    status = client.get(f"/agents/tasks/{task_id}").json()["data"]
    assert status["status"] == "completed"
    assert status["progress"] == 100
    assert status["quality"]["score"] == 0.94
    assert status["result"]["summary"].startswith("Q4 revenue grew")
    assert status["timeline"]["completedAt"] and status["timeline"]["duration"]
