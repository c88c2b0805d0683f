"""Fixtures shared by every ring of tests: the real app on real SQLite and PostgreSQL.

Every test that takes ``settings`` (or ``client``) runs once per backend. The
PostgreSQL cluster is started once per run and stopped at the end; where it
cannot start, its tests are skipped — except under CI=true, where that fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from adapters.config import Settings
from app import create_app
from domain.application import TaskApplication
from tests.pg_cluster import PgCluster, started_or_skipped

KEY = "test-admin-key"
BACKENDS = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    cluster = started_or_skipped()
    yield cluster
    cluster.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/tasks.db"
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return cluster.new_database()


@pytest.fixture
def app(settings: Settings) -> Iterator[TaskApplication]:
    """The command side on each backend (SQLite file, PostgreSQL database), without HTTP."""
    application = TaskApplication(env=settings.eventsourcing_env())
    yield application
    application.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database=database_url, bootstrap_key=KEY)


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


def key_for(client: TestClient, role: str, tenant: str = "default", agent_id: str | None = None) -> dict[str, str]:
    """Issue a key with a role (and tenant) and return the headers that send it."""
    secret = f"key-{role}-{tenant}-{agent_id or ''}"
    client.app_state["services"].keys.add(secret, tenant=tenant, role=role, agent_id=agent_id)  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {secret}"}
