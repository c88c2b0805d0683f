"""The read side over HTTP: list filters, search, sort, cursors, stats, metrics,
projections, CSV and read-your-writes — on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from typing import Any

import pytest
from starlette.testclient import TestClient

from adapters.config import ConfigError, Settings
from app import create_app
from projections.runner import ProjectionRunner
from tests.conftest import KEY, act, create, key_for


def listed(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/agents/tasks", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def ids(page: dict[str, Any]) -> list[str]:
    return [task["taskId"] for task in page["tasks"]]


def complete(client: TestClient, task_id: str) -> None:
    for action in ("start", "review", "complete"):
        act(client, task_id, action)


def test_overdue_lists_open_tasks_whose_deadline_has_passed(client: TestClient) -> None:
    late = create(client, task="late one", deadline="2020-01-01T00:00:00Z")["taskId"]
    done_late = create(client, task="done late", agentId="amy", deadline="2020-01-01T00:00:00Z")["taskId"]
    complete(client, done_late)
    future = create(client, task="in time", deadline="2999-01-01T00:00:00Z")["taskId"]
    undated = create(client, task="no deadline")["taskId"]

    assert ids(listed(client, overdue="true")) == [late]
    assert set(ids(listed(client, overdue="false"))) == {done_late, future, undated}


def test_q_searches_description_and_notes(client: TestClient) -> None:
    revenue = create(client, task="Analyze Q4 revenue trends")["taskId"]
    churn = create(client, task="Summarise churn interviews")["taskId"]
    noted = create(client, task="Board deck")["taskId"]
    assert client.patch(f"/agents/tasks/{noted}", json={"notes": "include the REVENUE bridge"}).status_code == 200

    assert set(ids(listed(client, q="revenue"))) == {revenue, noted}
    assert ids(listed(client, q="churn interviews")) == [churn]
    assert ids(listed(client, q="revenue bridge")) == [noted]
    assert listed(client, q="nothing-like-this")["total"] == 0
    response = client.get("/agents/tasks", params={"q": "!!!"})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "$.q"


def test_sort_orders_by_each_field_with_missing_deadlines_last(client: TestClient) -> None:
    a = create(client, task="a", priority="low", deadline="2030-01-03T00:00:00Z")["taskId"]
    b = create(client, task="b", priority="urgent")["taskId"]
    c = create(client, task="c", priority="medium", deadline="2030-01-01T00:00:00Z")["taskId"]
    act(client, a, "escalate", {"reason": "late", "priority": "high"})  # a is now the last updated

    assert ids(listed(client, sort="createdAt")) == [a, b, c]
    assert ids(listed(client)) == [c, b, a]  # newest first by default
    assert ids(listed(client, sort="-priority")) == [b, a, c]
    assert ids(listed(client, sort="priority")) == [c, a, b]
    assert ids(listed(client, sort="deadline")) == [c, a, b]
    assert ids(listed(client, sort="-deadline")) == [a, c, b]
    assert ids(listed(client, sort="-updatedAt"))[0] == a
    assert client.get("/agents/tasks", params={"sort": "owner"}).status_code == 422


def test_cursor_pages_cover_every_task_once_even_as_tasks_are_added(client: TestClient) -> None:
    made = [create(client, task=f"t{i}", priority=("low", "high")[i % 2])["taskId"] for i in range(7)]
    seen: list[str] = []
    page = listed(client, limit=3, sort="-priority")
    assert page["total"] == 7 and page["hasMore"] and page["nextCursor"]
    seen += ids(page)
    create(client, task="added meanwhile", priority="urgent")  # sorts before the cursor: not seen again
    while page["nextCursor"]:
        page = listed(client, limit=3, sort="-priority", cursor=page["nextCursor"])
        seen += ids(page)
    assert sorted(seen) == sorted(made)
    assert len(seen) == len(set(seen))

    wrong = client.get("/agents/tasks", params={"cursor": listed(client, limit=1)["nextCursor"], "sort": "deadline"})
    assert wrong.status_code == 422 and wrong.json()["error"]["details"]["field"] == "$.cursor"
    both = client.get("/agents/tasks", params={"cursor": "abc", "offset": 2})
    assert both.status_code == 422


def test_stats_count_exactly_and_group_by_several_keys(client: TestClient) -> None:
    for agent in ("amy", "amy", "bob"):
        create(client, task="x", agentId=agent, teamId="ops")
    done = create(client, task="y", agentId="bob", priority="high")["taskId"]
    complete(client, done)
    create(client, task="z")

    whole = client.get("/agents/tasks/stats")
    assert whole.status_code == 200, whole.text
    data = whole.json()["data"]
    assert data["total"] == 5
    assert data["byStatus"] == {"pending": 1, "assigned": 3, "in_progress": 0, "blocked": 0, "review": 0,
                                "completed": 1, "failed": 0, "cancelled": 0}
    assert whole.headers["X-Projection-Position"] == str(client.get("/projections").json()["data"]
                                                          ["projections"][0]["head"])

    grouped = client.get("/agents/tasks/stats", params={"groupBy": "agentId,status"}).json()["data"]
    counts = {(g["key"]["agentId"], g["key"]["status"]): g["total"] for g in grouped["groups"]}
    assert counts == {("amy", "assigned"): 2, ("bob", "assigned"): 1, ("bob", "completed"): 1, (None, "pending"): 1}

    by_day = client.get("/agents/tasks/stats", params={"groupBy": "day", "teamId": "ops"}).json()["data"]
    assert [g["total"] for g in by_day["groups"]] == [3]
    assert client.get("/agents/tasks/stats", params={"groupBy": "colour"}).status_code == 422


def test_list_and_stats_answer_csv(client: TestClient) -> None:
    first = create(client, task="Analyze, then report", agentId="amy")["taskId"]
    create(client, task="second")

    listing = client.get("/agents/tasks", headers={"Accept": "text/csv"}, params={"sort": "createdAt"})
    assert listing.status_code == 200
    assert listing.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(listing.text)))
    assert [row["taskId"] for row in rows][0] == first
    assert rows[0]["task"] == "Analyze, then report" and rows[0]["agentId"] == "amy"
    assert listing.headers["X-Total-Count"] == "2"

    stats = client.get("/agents/tasks/stats", params={"groupBy": "agentId"}, headers={"Accept": "text/csv"})
    table = list(csv.DictReader(io.StringIO(stats.text)))
    assert {row["agentId"]: (row["total"], row["assigned"], row["pending"]) for row in table} == {
        "amy": ("1", "1", "0"), "": ("1", "0", "1")}


def test_metrics_report_times_failures_retries_deadlines_and_ratings(client: TestClient) -> None:
    good = create(client, task="good", agentId="amy")["taskId"]
    complete(client, good)
    act(client, good, "feedback", {"rating": 5})
    act(client, good, "feedback", {"rating": 2})
    flaky = create(client, task="flaky", agentId="bob", deadline="2020-01-01T00:00:00Z")["taskId"]
    act(client, flaky, "start")
    act(client, flaky, "fail", {"error": {"code": "x", "message": "y"}})
    act(client, flaky, "retry")
    create(client, task="waiting")

    response = client.get("/agents/tasks/metrics", params={"groupBy": "agentId"})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    overall = data["overall"]
    assert overall["tasks"] == 3 and overall["completed"] == 1
    assert overall["leadTime"]["count"] == 1 and overall["leadTime"]["p50"] == overall["leadTime"]["max"] > 0
    assert overall["cycleTime"]["p50"] <= overall["leadTime"]["p50"]
    assert overall["failureRate"] == 1 / 3 and overall["failures"] == 1
    assert overall["retriesPerTask"] == 1 / 3
    assert overall["deadlinesMissed"] == 1
    assert overall["averageRating"] == 3.5 and overall["ratings"] == 2
    assert set(overall["timeInStatus"]) == {"pending", "assigned", "in_progress", "blocked", "review", "failed"}
    assert overall["timeInStatus"]["review"]["totalSeconds"] > 0
    groups = {g["key"]["agentId"]: g for g in data["groups"]}
    assert set(groups) == {"amy", "bob", None}
    assert groups["amy"]["averageRating"] == 3.5 and groups["bob"]["failureRate"] == 1.0

    empty = client.get("/agents/tasks/metrics", params={"startDate": "2001-01-01", "endDate": "2001-01-02"})
    assert empty.json()["data"]["overall"]["tasks"] == 0
    assert empty.json()["data"]["overall"]["leadTime"] == {"count": 0, "p50": None, "p90": None, "max": None}


def test_projections_report_position_head_lag_and_status(client: TestClient) -> None:
    created = client.post("/agents/tasks", json={"task": "x"})
    position = created.json()["metadata"]["position"]
    response = client.get("/projections")
    assert response.status_code == 200
    found = {p["name"]: p for p in response.json()["data"]["projections"]}
    assert set(found) == {"task_list", "task_metrics", "event_index"}
    for state in found.values():
        assert state == {"name": state["name"], "status": "running", "position": position, "head": position,
                         "lag": 0, "lastError": None}


def test_a_query_waits_for_min_position(client: TestClient) -> None:
    position = client.post("/agents/tasks", json={"task": "x"}).json()["metadata"]["position"]
    response = client.get("/agents/tasks", params={"minPosition": position})
    assert int(response.headers["X-Projection-Position"]) >= position
    assert response.json()["data"]["total"] == 1
    stats = client.get("/agents/tasks/stats", params={"minPosition": position})
    assert int(stats.headers["X-Projection-Position"]) >= position


def test_analytics_roles(client: TestClient) -> None:
    analyst = key_for(client, "analyst")
    agent = key_for(client, "agent", agent_id="amy")
    assert client.get("/agents/tasks/stats", headers=analyst).status_code == 200
    assert client.get("/agents/tasks/metrics", headers=analyst).status_code == 200
    assert client.get("/projections", headers=analyst).status_code == 200
    assert client.get("/agents/tasks/stats", headers=agent).status_code == 403
    assert client.get("/projections", headers=key_for(client, "client")).status_code == 403


def test_with_projections_off_the_api_reads_what_a_worker_keeps(settings: Settings) -> None:
    off = replace(settings, projections="off", read_your_writes_timeout=0.2)
    with TestClient(create_app(off), headers={"Authorization": f"Bearer {KEY}"}) as client:
        position = client.post("/agents/tasks", json={"task": "x"}).json()["metadata"]["position"]
        states = client.get("/projections").json()["data"]["projections"]
        assert {(p["name"], p["status"], p["position"], p["lag"]) for p in states} == {
            ("task_list", "external", 0, position), ("task_metrics", "external", 0, position),
            ("event_index", "external", 0, position)}
        stale = client.get("/agents/tasks", params={"minPosition": position})  # no worker yet: bounded wait
        assert stale.headers["X-Projection-Position"] == "0" and stale.json()["data"]["total"] == 0

        services = client.app_state["services"]  # type: ignore[attr-defined]
        for view in services.views:  # what a `tasks project` worker does
            ProjectionRunner(services.app, view).catch_up()
        fresh = client.get("/agents/tasks", params={"minPosition": position})
        assert fresh.headers["X-Projection-Position"] == str(position) and fresh.json()["data"]["total"] == 1

    with pytest.raises(ConfigError, match="TASKS_PROJECTIONS"):
        Settings.from_env({"TASKS_PROJECTIONS": "sometimes"})
