"""Every endpoint × every role × own and another tenant, checked against the README's role matrix.

The endpoints come from app.operations(), so an area that adds one must add its
row to MATRIX below; an operation without a row fails the test loudly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.testclient import TestClient

from app import operations
from tests.conftest import key_for

TENANT, OTHER_TENANT, AGENT = "acme", "globex", "amy"
ROLES = ("admin", "client", "agent", "auditor", "analyst")
PUBLIC = frozenset({"public"})
EVERY_ROLE = frozenset(ROLES)
REQUESTERS = frozenset({"admin", "client"})
WORKERS = frozenset({"admin", "agent"})
TASK_READERS = frozenset({"admin", "client", "agent", "auditor"})
ADMIN = frozenset({"admin"})
AUDITORS = frozenset({"admin", "auditor"})
ANALYSTS = frozenset({"admin", "analyst", "client", "auditor"})
OPERATORS = frozenset({"admin", "analyst"})

# How a task of tenant acme, assigned to agent amy, is brought to each status.
FAIL = ("fail", {"error": {"code": "broken", "message": "it broke"}})
STEPS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "assigned": [],
    "in_progress": [("start", {})],
    "blocked": [("start", {}), ("block", {"reason": "waiting"})],
    "review": [("start", {}), ("review", {})],
    "completed": [("start", {}), ("review", {}), ("complete", {})],
    "failed": [FAIL],
}


@dataclass(frozen=True)
class Cell:
    """Who may call an operation, and what a successful call needs."""

    roles: frozenset[str]
    status: str | None = None  # the status of the task in the path (None: the path names no task)
    body: dict[str, Any] = field(default_factory=dict)
    ok: int = 200
    resource: Callable[[TestClient], dict[str, str]] | None = None  # path parameters other than a task


def a_key(client: TestClient) -> dict[str, str]:
    """Path parameters naming a fresh key of tenant acme."""
    key_id, _ = client.app_state["services"].keys.issue(TENANT, "analyst")  # type: ignore[attr-defined]
    return {"key_id": key_id}


# The README's role matrix, one row per operation name.
MATRIX: dict[str, Cell] = {
    "healthz": Cell(PUBLIC),
    "readyz": Cell(PUBLIC),
    "metrics": Cell(PUBLIC),
    "task_events": Cell(TASK_READERS, "assigned"),
    "event_feed": Cell(AUDITORS),
    "audit_checkpoint": Cell(AUDITORS),
    "task_stats": Cell(ANALYSTS),
    "task_metrics": Cell(ANALYSTS),
    "list_projections": Cell(OPERATORS),
    "create_task": Cell(REQUESTERS, body={"task": "Write the summary"}, ok=201),
    "list_tasks": Cell(EVERY_ROLE),
    "get_task": Cell(TASK_READERS, "assigned"),
    "get_deliverables": Cell(TASK_READERS, "completed"),
    "update_task": Cell(REQUESTERS, "assigned", {"notes": "more detail"}),
    "cancel_task": Cell(REQUESTERS, "assigned", {"reason": "not needed"}),
    "retry_task": Cell(REQUESTERS, "failed"),
    "feedback_task": Cell(REQUESTERS, "completed", {"rating": 4}),
    "escalate_task": Cell(REQUESTERS, "assigned", {"reason": "late"}),
    "assign_task": Cell(REQUESTERS, "assigned", {"agentId": AGENT}),
    "request_changes_task": Cell(REQUESTERS, "review", {"reason": "needs charts"}),
    "start_task": Cell(WORKERS, "assigned"),
    "progress_task": Cell(WORKERS, "in_progress", {"progress": 40}),
    "block_task": Cell(WORKERS, "in_progress", {"reason": "waiting for data"}),
    "unblock_task": Cell(WORKERS, "blocked"),
    "review_task": Cell(WORKERS, "in_progress"),
    "complete_task": Cell(WORKERS, "review"),
    "fail_task": Cell(WORKERS, "assigned", FAIL[1]),
    "create_key": Cell(ADMIN, body={"role": "client"}, ok=201),
    "list_keys": Cell(ADMIN),
    "revoke_key": Cell(ADMIN, resource=a_key),
}


def prepare(client: TestClient, admin: dict[str, str], status: str) -> str:
    """A task of tenant acme, assigned to amy, in the given status."""
    response = client.post("/agents/tasks", json={"task": "Matrix probe", "agentId": AGENT}, headers=admin)
    assert response.status_code == 201, response.text
    task_id: str = response.json()["data"]["taskId"]
    for action, body in STEPS[status]:
        step = client.post(f"/agents/tasks/{task_id}/{action}", json=body, headers=admin)
        assert step.status_code == 200, step.text
    return task_id


def call(client: TestClient, method: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> int:
    json_body = body if method in ("POST", "PATCH", "PUT") else None
    return client.request(method, path, json=json_body, headers=headers).status_code


def test_every_operation_has_a_row_in_the_matrix() -> None:
    missing = sorted({op.name for op in operations()} - set(MATRIX))
    assert not missing, f"add these operations to MATRIX in {__file__}: {missing}"
    stale = sorted(set(MATRIX) - {op.name for op in operations()})
    assert not stale, f"MATRIX names operations that do not exist: {stale}"


def test_every_role_and_tenant_gets_what_the_matrix_says(client: TestClient) -> None:
    admin = key_for(client, "admin", TENANT)
    keys = {(role, tenant): key_for(client, role, tenant, AGENT if role == "agent" else None)
            for role in ROLES for tenant in (TENANT, OTHER_TENANT)}
    shared: dict[str, str] = {}  # one task per status for the calls that must not change it

    def shared_task(status: str) -> str:
        if status not in shared:
            shared[status] = prepare(client, admin, status)
        return shared[status]

    wrong: list[str] = []
    for op in operations():
        cell = MATRIX[op.name]
        for role in ROLES:
            for tenant in (TENANT, OTHER_TENANT):
                allowed = "public" in cell.roles or role in cell.roles
                own = tenant == TENANT
                if cell.resource is not None:  # a fresh one each time: a call may change it
                    path = op.path.format(**cell.resource(client))
                    expected = (cell.ok if own else 404) if allowed else 403
                elif cell.status is None:
                    path, expected = op.path, cell.ok if allowed else 403
                elif allowed and own:
                    path, expected = op.path.format(task_id=prepare(client, admin, cell.status)), cell.ok
                else:
                    path = op.path.format(task_id=shared_task(cell.status))
                    expected = 404 if allowed else 403
                got = call(client, op.method, path, cell.body, keys[role, tenant])
                if got != expected:
                    wrong.append(f"{op.method} {op.path} as {role} of {'own' if own else 'other'} tenant: "
                                 f"{got}, expected {expected}")
    assert not wrong, "\n".join(wrong)
    for status, task_id in shared.items():  # refused calls changed nothing
        data = client.get(f"/agents/tasks/{task_id}", headers=admin).json()["data"]
        assert data["status"] == status
        assert data["version"] == 1 + len(STEPS[status])


def test_a_forbidden_call_says_which_roles_may_make_it(client: TestClient) -> None:
    auditor = key_for(client, "auditor", TENANT)
    response = client.post("/agents/tasks", json={"task": "x"}, headers=auditor)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "forbidden"
    assert error["details"] == {"role": "auditor", "allowedRoles": ["admin", "client"]}


def test_another_tenants_task_is_indistinguishable_from_a_missing_one(client: TestClient) -> None:
    admin = key_for(client, "admin", TENANT)
    other = key_for(client, "admin", OTHER_TENANT)
    task_id = prepare(client, admin, "assigned")
    missing = "task_" + "0" * 32
    theirs = client.get(f"/agents/tasks/{task_id}", headers=other)
    nobodys = client.get(f"/agents/tasks/{missing}", headers=other)
    assert theirs.status_code == nobodys.status_code == 404
    assert theirs.json()["error"]["code"] == nobodys.json()["error"]["code"] == "not_found"
    assert theirs.json()["error"]["message"].replace(task_id, "ID") == nobodys.json()["error"]["message"].replace(
        missing, "ID")
    listed = client.get("/agents/tasks", headers=other).json()["data"]
    assert listed["total"] == 0 and listed["tasks"] == []
    assert [t["taskId"] for t in client.get("/agents/tasks", headers=admin).json()["data"]["tasks"]] == [task_id]


def test_an_agent_sees_and_drives_only_its_own_agents_tasks(client: TestClient) -> None:
    admin = key_for(client, "admin", TENANT)
    amy = key_for(client, "agent", TENANT, AGENT)
    bob = key_for(client, "agent", TENANT, "bob")
    task_id = prepare(client, admin, "assigned")
    bobs = client.post("/agents/tasks", json={"task": "Bob's", "agentId": "bob"}, headers=admin).json()["data"]
    assert client.get(f"/agents/tasks/{task_id}", headers=bob).status_code == 404
    assert client.post(f"/agents/tasks/{task_id}/start", headers=bob).status_code == 404
    # Pinning a version tells nothing either: not a 409 naming the task's version, the same 404.
    pinned = client.post(f"/agents/tasks/{task_id}/start", headers={**bob, "If-Match": '"99"'})
    assert pinned.status_code == 404 and pinned.json()["error"]["code"] == "not_found"
    assert client.post(f"/agents/tasks/{task_id}/start", headers=amy).status_code == 200
    assert [t["taskId"] for t in client.get("/agents/tasks", headers=amy).json()["data"]["tasks"]] == [task_id]
    assert [t["taskId"] for t in client.get("/agents/tasks", headers=bob).json()["data"]["tasks"]] == [bobs["taskId"]]
    asked_for_others = client.get("/agents/tasks?agentId=bob", headers=amy).json()["data"]
    assert asked_for_others["tasks"] == [] and asked_for_others["total"] == 0
    assert client.post("/agents/tasks", json={"task": "mine"}, headers=amy).status_code == 403


def test_an_agent_loses_sight_of_a_task_handed_to_another_agent(client: TestClient) -> None:
    admin = key_for(client, "admin", TENANT)
    amy = key_for(client, "agent", TENANT, AGENT)
    task_id = prepare(client, admin, "failed")
    assert client.get(f"/agents/tasks/{task_id}", headers=amy).status_code == 200
    client.post(f"/agents/tasks/{task_id}/retry", json={"reassign": True}, headers=admin)
    assert client.get(f"/agents/tasks/{task_id}", headers=amy).status_code == 404


def test_the_matrix_in_the_readme_matches_the_one_tested() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \|((?: [^|]* \|){5})$", readme, re.M)}
    for name, cell in MATRIX.items():
        if "public" in cell.roles:
            continue
        assert name in rows, f"README's role matrix has no row for {name}"
        marks = [part.strip() for part in rows[name].split("|")[:5]]
        assert {role for role, mark in zip(ROLES, marks) if mark} == set(cell.roles), name


