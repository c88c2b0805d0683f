"""The OpenAPI document describes every route, and every reference in it resolves."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


def test_openapi_lists_every_operation_with_resolvable_schemas(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()

    assert spec["openapi"] == "3.1.0"
    operations = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    expected_actions = ["cancel", "retry", "feedback", "escalate", "assign", "start", "progress", "block",
                        "unblock", "review", "request-changes", "complete", "fail"]
    assert operations >= {("POST", "/agents/tasks"), ("GET", "/agents/tasks"), ("GET", "/agents/tasks/{task_id}"),
                          ("PATCH", "/agents/tasks/{task_id}"), ("GET", "/agents/tasks/{task_id}/deliverables")}
    assert operations >= {("POST", f"/agents/tasks/{{task_id}}/{action}") for action in expected_actions}
    for ref in refs(spec):
        assert ref.rsplit("/", 1)[1] in spec["components"]["schemas"], ref
    create_schema = spec["components"]["schemas"]["CreateTask"]
    assert create_schema["required"] == ["task"]
    assert sorted(create_schema["properties"]["priority"]["enum"]) == ["high", "low", "medium", "urgent"]
    list_params = {p["name"] for p in spec["paths"]["/agents/tasks"]["get"]["parameters"]}
    assert list_params == {"status", "agentId", "teamId", "priority", "startDate", "endDate", "limit", "offset",
                           "overdue", "q", "sort", "cursor", "minPosition"}


def test_every_operation_in_the_document_is_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method in item:
            url = path.replace("{task_id}", "task_00000000000000000000000000000000")
            response = client.request(method.upper(), url, json={} if method != "get" else None)
            assert response.status_code not in (405, 500), (method, path, response.status_code)
