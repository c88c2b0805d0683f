"""Upgrading to a build whose list view has a new schema number (as schema 7 did, for its
indexes): `tasks projections status` of the new build only looks, and the first start drops the
old table and builds the new one from the log before it listens, so every task is listed again
and nothing of the old table is left, on either backend."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from adapters.config import Settings
from adapters.list_view import TaskListView
from app import create_app
from tests.conftest import KEY, act, create
from tests.serving import run_tasks

AUTH = {"Authorization": f"Bearer {KEY}"}
GROUPS = {"groupBy": "status,agentId"}


def tables(client: TestClient) -> set[str]:
    view = next(v for v in client.app_state["services"].views if v.name == "task_list")
    sql = ("SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema()" if view._is_pg
           else "SELECT name FROM sqlite_master WHERE type = 'table'")
    with view.store.transaction(commit=False) as cursor:
        cursor.execute(sql)
        return {str(found["name"]) for found in cursor.fetchall()}


def test_a_new_schema_of_the_list_view_is_built_from_the_log_at_the_first_start(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    current = TaskListView.schema
    older = f"task_list_s{current - 1}"
    with monkeypatch.context() as patched:
        patched.setattr(TaskListView, "schema", current - 1)  # the build before the upgrade
        with TestClient(create_app(settings), headers=AUTH) as client:
            made = [create(client, priority="high", agentId=f"agent-{n % 3}") for n in range(12)]
            act(client, made[0]["taskId"], "start")
            act(client, made[1]["taskId"], "cancel", {"reason": "no longer needed"})
            before = client.get("/agents/tasks", params={"limit": 100}).json()["data"]
            before_stats = client.get("/agents/tasks/stats", params=GROUPS).json()["data"]
            assert older in tables(client)

            # an operator looks with the new build while the old one still serves: nothing changes
            status = run_tasks("projections", "status", database=settings.database)
            assert status.returncode == 0, status.stderr
            line = next(line for line in status.stdout.splitlines() if line.startswith("task_list "))
            assert f"table {older} of an older schema" in line, status.stdout
            assert line.split()[6] == "0", status.stdout  # lag 0: the old build's table, caught up
            assert client.get("/agents/tasks", params={"limit": 100}).json()["data"] == before
            assert older in tables(client) and f"task_list_s{current}" not in tables(client)

    with TestClient(create_app(settings), headers=AUTH) as client:  # the new build, first start
        after = client.get("/agents/tasks", params={"limit": 100}).json()["data"]
        assert after["total"] == before["total"] == 12
        assert [(t["taskId"], t["status"], t["version"]) for t in after["tasks"]] == \
            [(t["taskId"], t["status"], t["version"]) for t in before["tasks"]]
        assert client.get("/agents/tasks/stats", params=GROUPS).json()["data"] == before_stats
        found = tables(client)
        assert f"task_list_s{current}" in found and not any(name.startswith(older) for name in found)
        lag = {p["name"]: p["lag"] for p in client.get("/projections").json()["data"]["projections"]}
        assert lag["task_list"] == 0
