"""Fixtures shared by every ring of tests: a real app on a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from adapters.config import Settings
from app import create_app

KEY = "test-admin-key"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database=f"sqlite:///{tmp_path}/tasks.db", bootstrap_key=KEY)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {KEY}"}) as test_client:
        yield test_client


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    """Create a task and return its data."""
    body.setdefault("task", "Analyze Q4 revenue trends")
    response = client.post("/agents/tasks", json=body)
    assert response.status_code == 201, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def act(client: TestClient, task_id: str, action: str, body: dict[str, Any] | None = None,
        expect: int = 200) -> dict[str, Any]:
    """Send one lifecycle command and check its status."""
    response = client.post(f"/agents/tasks/{task_id}/{action}", json=body or {})
    assert response.status_code == expect, response.text
    return response.json()  # type: ignore[no-any-return]
