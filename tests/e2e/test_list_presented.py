"""A list page repeated while the view has not moved is the same answer; once any task changes,
the page shows the change (the list keeps presented pages and summaries in memory)."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.conftest import act, create


def page(client: TestClient, query: str) -> tuple[dict, dict]:
    response = client.get(f"/agents/tasks?{query}")
    assert response.status_code == 200, response.text
    return response.json()["data"], dict(response.headers)


def test_a_repeated_page_is_the_same_and_a_change_shows_at_once(client: TestClient) -> None:
    first = create(client, task="Draft the launch plan", priority="high")
    second = create(client, task="Check the launch budget", priority="high", agentId="amy")
    before, headers = page(client, "priority=high&limit=1")
    again, headers_again = page(client, "priority=high&limit=1")
    assert again == before and headers_again["x-projection-position"] == headers["x-projection-position"]
    assert [t["taskId"] for t in before["tasks"]] == [second["taskId"]] and before["total"] == 2
    assert before["hasMore"] and before["nextCursor"]

    act(client, second["taskId"], "start")  # same page, a new version of its row
    after, headers_after = page(client, "priority=high&limit=1")
    assert int(headers_after["x-projection-position"]) > int(headers["x-projection-position"])
    assert after["tasks"][0]["status"] == "in_progress" and after["tasks"][0]["version"] == 2
    assert after["tasks"][0]["currentPhase"] == "started"

    third = create(client, task="Book the launch venue", priority="high")  # a new first row, a new total
    newest, _ = page(client, "priority=high&limit=1")
    assert [t["taskId"] for t in newest["tasks"]] == [third["taskId"]] and newest["total"] == 3
    following, _ = page(client, f"priority=high&limit=5&cursor={newest['nextCursor']}")
    assert [t["taskId"] for t in following["tasks"]] == [second["taskId"], first["taskId"]]
    assert following["tasks"][0]["status"] == "in_progress"


def test_pages_for_another_host_carry_that_hosts_tracking_url(client: TestClient) -> None:
    task = create(client, task="Draft the launch plan")
    here, _ = page(client, "")
    there = client.get("/agents/tasks", headers={"Host": "tasks.example.com"}).json()["data"]
    assert here["tasks"][0]["trackingUrl"] == f"http://testserver/agents/tasks/{task['taskId']}"
    assert there["tasks"][0]["trackingUrl"] == f"http://tasks.example.com/agents/tasks/{task['taskId']}"


def test_stats_asked_again_after_a_change_count_it(client: TestClient) -> None:
    task = create(client, task="Draft the launch plan", priority="urgent", agentId="amy")
    create(client, task="Check the launch budget", priority="urgent")

    def stats() -> dict:
        response = client.get("/agents/tasks/stats?groupBy=priority")
        assert response.status_code == 200, response.text
        return response.json()["data"]

    before = stats()
    assert stats() == before
    assert before["byStatus"]["assigned"] == 1 and before["byStatus"]["pending"] == 1
    act(client, task["taskId"], "start")
    after = stats()
    assert after["byStatus"]["assigned"] == 0 and after["byStatus"]["in_progress"] == 1
    assert after["groups"] == [{"key": {"priority": "urgent"}, "total": 2,
                                "byStatus": {**dict.fromkeys(after["byStatus"], 0), "pending": 1, "in_progress": 1}}]
