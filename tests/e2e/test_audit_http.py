"""The audit surface over HTTP: a task's events, past states, the tenant's feed and export, checkpoints."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from starlette.testclient import TestClient

from adapters.cli import main
from adapters.config import Settings
from app import create_app
from domain.hashing import GENESIS_HASH
from tests.conftest import KEY, act, create, key_for


def lifecycle(client: TestClient) -> str:
    task_id = create(client, agentId="amy")["taskId"]
    act(client, task_id, "start")
    client.post(f"/agents/tasks/{task_id}/progress", json={"progress": 40}, headers={"X-Request-Id": "audit-req-1"})
    act(client, task_id, "review")
    return task_id


def test_a_tasks_events_are_its_whole_history_oldest_first(client: TestClient) -> None:
    task_id = lifecycle(client)
    response = client.get(f"/agents/tasks/{task_id}/events")
    assert response.status_code == 200
    data = response.json()["data"]
    events = data["events"]
    assert [(e["version"], e["type"]) for e in events] == [
        (1, "TaskCreated"), (2, "TaskStarted"), (3, "ProgressReported"), (4, "SubmittedForReview")]
    assert data["hasMore"] is False
    progress = events[2]
    assert progress["requestId"] == "audit-req-1"
    assert progress["actor"].startswith("key_")
    assert progress["data"] == {"progress": 40, "phase": None, "note": None}
    assert events[0]["prevHash"] == GENESIS_HASH
    assert all(later["prevHash"] == earlier["hash"] for earlier, later in pairwise(events))


def test_task_events_filter_by_type_and_page_by_version(client: TestClient) -> None:
    task_id = lifecycle(client)
    only = client.get(f"/agents/tasks/{task_id}/events", params={"type": "TaskStarted,SubmittedForReview"})
    assert [e["version"] for e in only.json()["data"]["events"]] == [2, 4]
    first = client.get(f"/agents/tasks/{task_id}/events", params={"limit": 2}).json()["data"]
    assert [e["version"] for e in first["events"]] == [1, 2]
    assert first["hasMore"] is True and first["nextSince"] == 2
    rest = client.get(f"/agents/tasks/{task_id}/events", params={"since": 2}).json()["data"]
    assert [e["version"] for e in rest["events"]] == [3, 4]


def test_task_events_refuse_bad_filters_and_hide_other_tenants(client: TestClient) -> None:
    task_id = lifecycle(client)
    bad = client.get(f"/agents/tasks/{task_id}/events", params={"type": "TaskExploded"})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"]["field"] == "$.type"
    assert client.get(f"/agents/tasks/{task_id}/events", params={"since": -1}).json()["error"]["details"]["field"] \
        == "$.since"
    other = key_for(client, "admin", tenant="acme")
    assert client.get(f"/agents/tasks/{task_id}/events", headers=other).status_code == 404


def test_a_task_as_it_stood_at_a_version_or_a_time(client: TestClient) -> None:
    task_id = lifecycle(client)
    at_2 = client.get(f"/agents/tasks/{task_id}", params={"version": 2})
    assert at_2.status_code == 200 and at_2.headers["etag"] == '"2"'
    assert (at_2.json()["data"]["status"], at_2.json()["data"]["progress"]) == ("in_progress", 0)
    moment = client.get(f"/agents/tasks/{task_id}/events").json()["data"]["events"][2]["timestamp"]
    assert client.get(f"/agents/tasks/{task_id}", params={"asOf": moment}).json()["data"]["progress"] == 40
    latest = client.get(f"/agents/tasks/{task_id}", params={"asOf": "2100-01-01T00:00:00Z"})
    assert latest.json()["data"]["version"] == 4


def test_past_states_that_do_not_exist_are_404_and_bad_values_422(client: TestClient) -> None:
    task_id = lifecycle(client)
    beyond = client.get(f"/agents/tasks/{task_id}", params={"version": 5})
    assert beyond.status_code == 404
    assert beyond.json()["error"]["details"] == {"taskId": task_id, "version": 5, "currentVersion": 4}
    assert client.get(f"/agents/tasks/{task_id}", params={"asOf": "2000-01-01T00:00:00Z"}).status_code == 404
    for params, field in (({"version": "0"}, "$.version"), ({"version": "two"}, "$.version"),
                          ({"asOf": "yesterday"}, "$.asOf"), ({"asof": "2000-01-01"}, "$.asof")):
        response = client.get(f"/agents/tasks/{task_id}", params=params)
        assert response.status_code == 422, params
        assert response.json()["error"]["details"]["field"] == field


def test_the_feed_is_the_tenants_log_in_order_paged_by_position(client: TestClient) -> None:
    mine = [lifecycle(client), lifecycle(client)]
    theirs = key_for(client, "admin", tenant="acme")
    assert client.post("/agents/tasks", json={"task": "other tenant's"}, headers=theirs).status_code == 201
    seen: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.get("/events", params={"after": after, "limit": 3}).json()["data"]
        seen.extend(page["events"])
        after = page["nextAfter"]
        if not page["hasMore"]:
            break
    assert len(seen) == 8
    assert {e["taskId"] for e in seen} == set(mine)
    assert [e["position"] for e in seen] == sorted(e["position"] for e in seen)
    acme = client.get("/events", headers=theirs).json()["data"]["events"]
    assert [(e["type"], e["tenant"]) for e in acme] == [("TaskCreated", "acme")]


def test_the_feed_filters_by_type_and_time(client: TestClient) -> None:
    lifecycle(client)
    everything = client.get("/events").json()["data"]["events"]
    started = client.get("/events", params={"type": "TaskStarted"}).json()["data"]["events"]
    assert [e["type"] for e in started] == ["TaskStarted"]
    window = {"from": everything[1]["timestamp"], "to": everything[3]["timestamp"]}
    assert [e["version"] for e in client.get("/events", params=window).json()["data"]["events"]] == [2, 3, 4]


def test_only_auditors_and_admins_read_the_feed_and_checkpoints(client: TestClient) -> None:
    task_id = lifecycle(client)
    for role, allowed in (("auditor", 200), ("client", 403), ("agent", 403), ("analyst", 403)):
        headers = key_for(client, role, agent_id="amy" if role == "agent" else None)
        assert client.get("/events", headers=headers).status_code == allowed, role
        assert client.get("/audit/checkpoint", headers=headers).status_code == allowed, role
    assert client.get(f"/agents/tasks/{task_id}/events", headers=key_for(client, "client")).status_code == 200


def test_an_ndjson_export_verifies_offline_and_a_doctored_one_does_not(client: TestClient, tmp_path: Path) -> None:
    task_id = lifecycle(client)
    export = client.get("/events", headers={"Accept": "application/x-ndjson"})
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = export.text.splitlines()
    assert len(lines) == 4 and export.headers["x-log-position"] == "4"
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(client.get("/audit/checkpoint", params={"heads": "true"}).text)
    good = tmp_path / "export.ndjson"
    good.write_text(export.text)
    runner = CliRunner()
    result = runner.invoke(main, ["audit", "verify", "--export", str(good), "--checkpoint", str(checkpoint)],
                           env={"TASKS_AUDIT_KEY": ""})
    assert result.exit_code == 0, result.output
    doctored = tmp_path / "doctored.ndjson"
    doctored.write_text("\n".join([*lines[:2], lines[2].replace('"progress":40', '"progress":80'), lines[3]]))
    result = runner.invoke(main, ["audit", "verify", "--export", str(doctored)])
    assert result.exit_code == 1
    assert f"MODIFIED: {task_id} v3 (ProgressReported) was modified: its hash does not match its fields" \
        in result.output
    short = tmp_path / "short.ndjson"
    short.write_text("\n".join(lines[:3]))
    result = runner.invoke(main, ["audit", "verify", "--export", str(short), "--checkpoint", str(checkpoint)],
                           env={"TASKS_AUDIT_KEY": ""})
    assert result.exit_code == 1
    assert "TRUNCATED: the log ends at position 3, before the checkpoint's position 4" in result.output


def test_a_checkpoint_covers_the_tenants_log_and_is_signed_with_the_audit_key(
    settings: Settings, tmp_path: Path
) -> None:
    keyed = Settings(database=settings.database, bootstrap_key=KEY, audit_key="audit-secret")
    with TestClient(create_app(keyed), headers={"Authorization": f"Bearer {KEY}"}) as client:
        lifecycle(client)
        data = client.get("/audit/checkpoint").json()["data"]
        assert (data["position"], data["eventCount"], data["tenant"], data["heads"]) == \
            (4, 4, "default", None)
        assert len(data["rootDigest"]) == 64 and data["signature"]["algorithm"] == "hmac-sha256"
        beyond = client.get("/audit/checkpoint", params={"position": 99})
        assert beyond.status_code == 422 and beyond.json()["error"]["details"]["field"] == "$.position"
        earlier = client.get("/audit/checkpoint", params={"position": 2}).json()["data"]
        assert earlier["eventCount"] == 2 and earlier["rootDigest"] != data["rootDigest"]
        saved = tmp_path / "checkpoint.json"
        saved.write_text(client.get("/audit/checkpoint").text)
    runner = CliRunner()
    args = ["audit", "verify", "--checkpoint", str(saved)]
    ok = runner.invoke(main, args, env={"TASKS_DATABASE": settings.database, "TASKS_AUDIT_KEY": "audit-secret"})
    assert ok.exit_code == 0, ok.output
    wrong = runner.invoke(main, args, env={"TASKS_DATABASE": settings.database, "TASKS_AUDIT_KEY": "guess"})
    assert wrong.exit_code == 1
    assert "CHECKPOINT: the checkpoint's signature does not match" in wrong.output
