"""Keys, limits and failures: what a hostile or careless caller meets."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from adapters.config import Settings
from adapters.keys import InvalidGrantError, check_grant
from app import create_app
from tests.conftest import KEY, create, key_for

TASKS = str(Path(sys.executable).with_name("tasks"))


def tasks_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`tasks …` as an operator runs it: another process on the same database."""
    return subprocess.run([TASKS, *args], env={**os.environ, "TASKS_DATABASE": settings.database},
                          capture_output=True, text=True, timeout=60, check=False)


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"next": value}
    return value


# --- keys ------------------------------------------------------------------------


def test_a_key_made_with_the_cli_works_at_once_and_revoking_it_stops_it_at_once(
        client: TestClient, settings: Settings) -> None:
    made = tasks_cli(settings, "keys", "create", "--tenant", "acme", "--role", "client", "--label", "ops")
    assert made.returncode == 0, made.stderr
    key_id, secret = made.stdout.split()
    assert secret.startswith("tk_") and len(secret) == 46
    assert "shown only now" in made.stderr
    headers = {"Authorization": f"Bearer {secret}"}
    task = client.post("/agents/tasks", json={"task": "From a new key"}, headers=headers)
    assert task.status_code == 201
    assert client.get(f"/agents/tasks/{task.json()['data']['taskId']}").status_code == 404  # default tenant

    listed = tasks_cli(settings, "keys", "list", "--tenant", "acme")
    assert key_id in listed.stdout and "client" in listed.stdout and secret not in listed.stdout

    revoked = tasks_cli(settings, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    after = client.get("/agents/tasks", headers=headers)
    assert after.status_code == 401
    assert after.json()["error"]["message"] == "unknown or revoked key"
    assert "-" != tasks_cli(settings, "keys", "list").stdout.split(key_id)[1].split("\t")[5]


def test_the_cli_refuses_a_key_that_could_not_work(settings: Settings) -> None:
    agent_without_agent = tasks_cli(settings, "keys", "create", "--tenant", "acme", "--role", "agent")
    assert agent_without_agent.returncode != 0 and "agentId" in agent_without_agent.stderr
    unknown_role = tasks_cli(settings, "keys", "create", "--tenant", "acme", "--role", "root")
    assert unknown_role.returncode != 0
    unknown_key = tasks_cli(settings, "keys", "revoke", "key_0000000000000000")
    assert unknown_key.returncode != 0 and "no key" in unknown_key.stderr


def test_keys_are_stored_only_as_hashes(client: TestClient) -> None:
    services = client.app_state["services"]  # type: ignore[attr-defined]
    key_id, secret = services.keys.issue("acme", "auditor")
    with services.store.transaction(commit=False) as cursor:
        cursor.execute("SELECT * FROM api_keys")
        stored = " ".join(str(value) for row in cursor.fetchall() for value in dict(row).values())
    assert secret not in stored and KEY not in stored
    assert key_id in stored


@pytest.mark.parametrize("tenant, role, agent_id", [
    ("acme", "agent", None), ("acme", "client", "amy"), ("acme", "superuser", None), ("bad tenant", "admin", None),
])
def test_a_key_that_could_not_work_is_refused(tenant: str, role: str, agent_id: str | None) -> None:
    with pytest.raises(InvalidGrantError):
        check_grant(tenant, role, agent_id)


# --- limits -------------------------------------------------------------------------


def test_context_nested_too_deeply_is_422_naming_it(client: TestClient) -> None:
    response = client.post("/agents/tasks", json={"task": "x", "context": nested(11)})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["field"] == "$.context"
    assert error["details"]["maxDepth"] == 10
    assert client.post("/agents/tasks", json={"task": "x", "context": nested(9)}).status_code == 201


def test_free_form_objects_deep_in_a_command_are_bounded_too(client: TestClient) -> None:
    task = create(client, agentId="amy")
    client.post(f"/agents/tasks/{task['taskId']}/start")
    response = client.post(f"/agents/tasks/{task['taskId']}/fail",
                           json={"error": {"code": "x", "message": "y", "details": {"blob": "z" * 70_000}}})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "$.error.details"
    assert response.json()["error"]["details"]["maxBytes"] == 65_536


def test_json_nested_past_what_the_decoder_follows_is_422_not_a_crash(client: TestClient) -> None:
    body = b'{"task": "x", "context": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    response = client.post("/agents/tasks", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "$"
    assert client.get("/agents/tasks").json()["data"]["total"] == 0


def test_limits_are_configurable(settings: Settings) -> None:
    strict = dataclasses.replace(settings, max_json_depth=2, max_json_bytes=50)
    with TestClient(create_app(strict), headers={"Authorization": f"Bearer {KEY}"}) as client:
        assert client.post("/agents/tasks", json={"task": "x", "context": nested(3)}).status_code == 422
        too_big = client.post("/agents/tasks", json={"task": "x", "budget": {"note": "n" * 60}})
        assert too_big.status_code == 422 and too_big.json()["error"]["details"]["field"] == "$.budget"
        assert client.post("/agents/tasks", json={"task": "x", "context": nested(2)}).status_code == 201


def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_do_not(settings: Settings) -> None:
    limited = dataclasses.replace(settings, rate_limit=0.01, rate_burst=2)  # two now, the next in 100 s
    with TestClient(create_app(limited), headers={"Authorization": f"Bearer {KEY}"}) as client:
        assert client.get("/agents/tasks").status_code == 200
        assert client.get("/agents/tasks").status_code == 200
        refused = client.get("/agents/tasks")
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 100
        other = key_for(client, "analyst")
        assert client.get("/agents/tasks", headers=other).status_code == 200
        assert client.get("/healthz").status_code == 200  # needs no key, counts against none


# --- failures --------------------------------------------------------------------------


def test_a_5xx_shows_no_trace_sql_or_path_and_the_log_has_them(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(settings)
    with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}, raise_server_exceptions=False) as client:
        services = client.app_state["services"]  # type: ignore[attr-defined]
        for runner in services.projections:
            runner.stop()
        with services.list_view.store.transaction(commit=True) as cursor:
            cursor.execute(f"DROP TABLE {services.list_view.table(cursor)}")  # the list view's storage is gone
        with caplog.at_level(logging.ERROR):
            response = client.get("/agents/tasks", headers={"X-Request-Id": "req-broken-1"})
    assert response.status_code == 500
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "internal_error"
    assert body["error"]["details"] == {}
    assert body["metadata"]["requestId"] == "req-broken-1"
    text = response.text.lower()
    for leak in ("traceback", "task_list", "select", "sqlite", "psycopg", ".py", "/work", "line "):
        assert leak not in text, leak
    logged = "\n".join(record.getMessage() + str(record.exc_info) for record in caplog.records)
    assert "req-broken-1" in logged and "task_list" in logged


# --- found by schemathesis ------------------------------------------------------------------


def test_a_deadline_before_the_year_1000_does_not_break_the_list(client: TestClient) -> None:
    create(client, deadline="0381-10-08T22:47:17Z")
    listed = client.get("/agents/tasks")
    assert listed.status_code == 200
    assert listed.json()["data"]["tasks"][0]["deadline"] == "0381-10-08T22:47:17Z"


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/agents/tasks", {"task": "x", "deadline": "0001-01-01T00:00:00+05:00"}),
    ("GET", "/agents/tasks?startDate=0001-01-01T00:00:00%2B05:00", None),
    ("GET", "/agents/tasks?endDate=9999-12-31T23:00:00-05:00", None),
])
def test_a_time_with_no_utc_form_is_422_not_a_crash(client: TestClient, method: str, path: str,
                                                    body: dict[str, Any] | None) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


def test_the_schema_says_which_commands_need_a_body(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert paths["/agents/tasks/{task_id}/assign"]["post"]["requestBody"]["required"] is True
    assert paths["/agents/tasks/{task_id}/start"]["post"]["requestBody"]["required"] is False


def test_a_query_parameter_given_twice_is_422(client: TestClient) -> None:
    response = client.get("/agents/tasks?priority=high&priority=low")
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "$.priority"


# --- keys over HTTP ----------------------------------------------------------------------------


def test_an_admin_manages_its_own_tenants_keys_over_http(client: TestClient) -> None:
    acme = key_for(client, "admin", "acme")
    globex = key_for(client, "admin", "globex")
    made = client.post("/keys", json={"role": "agent", "agentId": "amy", "label": "amy's runner"}, headers=acme)
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    issued = made.json()["data"]
    assert issued["tenant"] == "acme" and issued["role"] == "agent" and issued["agentId"] == "amy"
    amy = {"Authorization": f"Bearer {issued['secret']}"}
    assert client.get("/agents/tasks", headers=amy).status_code == 200

    listed = client.get("/keys", headers=acme).json()["data"]["keys"]
    assert issued["keyId"] in [k["keyId"] for k in listed]
    assert all(k["tenant"] == "acme" and "secret" not in k for k in listed)
    assert issued["keyId"] not in [k["keyId"] for k in client.get("/keys", headers=globex).json()["data"]["keys"]]

    assert client.delete(f"/keys/{issued['keyId']}", headers=globex).status_code == 404
    assert client.get("/agents/tasks", headers=amy).status_code == 200
    revoked = client.delete(f"/keys/{issued['keyId']}", headers=acme)
    assert revoked.status_code == 200 and revoked.json()["data"]["revokedAt"]
    assert client.get("/agents/tasks", headers=amy).status_code == 401


def test_an_agent_key_without_its_agent_is_422(client: TestClient) -> None:
    response = client.post("/keys", json={"role": "agent"})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "$.agentId"


def test_null_in_a_query_is_text_not_a_missing_filter(client: TestClient) -> None:
    create(client, agentId="amy")
    create(client, agentId="null")
    refused = client.get("/agents/tasks?status=null")
    assert refused.status_code == 422 and refused.json()["error"]["details"]["field"] == "$.status"
    named_null = client.get("/agents/tasks?agentId=null").json()["data"]
    assert [t["agentId"] for t in named_null["tasks"]] == ["null"]
