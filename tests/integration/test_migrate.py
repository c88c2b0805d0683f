"""`tasks migrate`: a SQLite database with every kind of event, moved into PostgreSQL.

The source is written through the real application (several tenants, every
event type, keys of several roles); the migration runs as the real `tasks`
command in its own process; the target is then opened by the real app and
read over HTTP next to the source.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from click.testing import CliRunner
from eventsourcing.utils import get_topic
from starlette.testclient import TestClient

from adapters.cli import main
from adapters.config import Settings
from adapters.list_view import TaskListView
from adapters.migrate import Migration, MigrationError, read_log
from adapters.sql import open_store
from app import create_app
from domain.application import TaskApplication
from domain.ids import public_id
from domain.task import TaskEvent
from tests.pg_cluster import PgCluster
from tests.serving import run_tasks
from tests.workload import TENANTS, fill

TASKS = 500  # about 3,800 events
ADMIN = "migrate-admin-key"
TENANT_KEYS = {tenant: f"key-admin-{tenant}" for tenant in TENANTS}


@dataclass(frozen=True)
class Migrated:
    source: str
    target: str
    events: int
    output: str
    view_position_before_any_server: int


def build_source(url: str) -> int:
    """A database as a server leaves it: keys, the log, and the views built from the log."""
    settings = Settings(database=url, bootstrap_key=ADMIN)
    with TestClient(create_app(settings)) as client:
        keys = client.app_state["services"].keys
        for tenant, secret in TENANT_KEYS.items():
            keys.add(secret, tenant=tenant, role="admin", label=f"{tenant} admin")
        keys.add("key-agent-acme", tenant="acme", role="agent", agent_id="agent-1")
    app = TaskApplication(env=settings.eventsourcing_env())
    try:
        events = fill(app, TASKS)
    finally:
        app.close()
    with TestClient(create_app(settings)) as client:  # its startup builds the views up to the head
        services = client.app_state["services"]
        assert services.list_view.position() == services.app.recorder.max_notification_id() == events
    return events


@pytest.fixture(scope="module")
def migrated(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Migrated:
    source = f"sqlite:///{tmp_path_factory.mktemp('migrate')}/tasks.db"
    events = build_source(source)
    target = pg_cluster.new_database()
    run = run_tasks("migrate", "--from", source, "--to", target)
    assert run.returncode == 0, run.stderr
    store = open_store(Settings(database=target), pool_size=1)
    try:
        position = TaskListView(store.for_views()).position()
    finally:
        store.close()
    return Migrated(source, target, events, run.stdout, position)


def log_of(url: str) -> list[tuple[str, int, str, bytes]]:
    app = TaskApplication(env=Settings(database=url).eventsourcing_env())
    try:
        return [
            (str(n.originator_id), n.originator_version, n.topic, bytes(n.state))
            for page in read_log(app, 1000) for n in page
        ]
    finally:
        app.close()


@pytest.fixture(scope="module")
def source_log(migrated: Migrated) -> list[tuple[str, int, str, bytes]]:
    return log_of(migrated.source)


@pytest.fixture(scope="module")
def clients(migrated: Migrated) -> Iterator[tuple[TestClient, TestClient]]:
    """The real app on the source and on the target; no bootstrap key, so only copied keys open the target."""
    with TestClient(create_app(Settings(database=migrated.source))) as source, \
            TestClient(create_app(Settings(database=migrated.target))) as target:
        yield source, target


def get(client: TestClient, path: str, tenant: str) -> Any:
    response = client.get(path, headers={"Authorization": f"Bearer {TENANT_KEYS[tenant]}"})
    assert response.status_code == 200, response.text
    return response


def test_source_has_thousands_of_events_of_every_type(source_log: list[tuple[str, int, str, bytes]]) -> None:
    assert len(source_log) > 3000
    every_type = {get_topic(cls) for cls in TaskEvent.__subclasses__()}
    assert {topic for _, _, topic, _ in source_log} == every_type


def test_migrate_copies_the_log_in_order_with_every_stored_byte(
    migrated: Migrated, source_log: list[tuple[str, int, str, bytes]]
) -> None:
    assert log_of(migrated.target) == source_log
    assert f"Migrated {migrated.events} events of {TASKS} tasks and 5 API keys" in migrated.output
    assert "event for event" in migrated.output


def test_migrate_builds_the_views_on_the_target(migrated: Migrated) -> None:
    assert migrated.view_position_before_any_server == migrated.events


def test_every_task_reads_the_same_on_the_target(
    clients: tuple[TestClient, TestClient], source_log: list[tuple[str, int, str, bytes]]
) -> None:
    source, target = clients
    source_app = source.app_state["services"].app
    tenants = {public_id(UUID(i)): source_app.repository.get(UUID(i)).tenant for i, _, _, _ in source_log}
    assert len(tenants) == TASKS
    assert set(tenants.values()) == set(TENANTS)
    for task_id, tenant in sorted(tenants.items()):
        ours, theirs = get(source, f"/agents/tasks/{task_id}", tenant), get(target, f"/agents/tasks/{task_id}", tenant)
        assert theirs.json()["data"] == ours.json()["data"]
        assert theirs.headers["etag"] == ours.headers["etag"]
        assert _history(target, task_id, tenant) == _history(source, task_id, tenant)


def test_the_list_view_lists_the_same_rows(clients: tuple[TestClient, TestClient]) -> None:
    source, target = clients
    for tenant in TENANTS:
        for query in ("", "&status=completed", "&status=in_progress&priority=urgent", "&agentId=senior"):
            ours, theirs = _all_rows(source, tenant, query), _all_rows(target, tenant, query)
            assert theirs == ours
        assert len(_all_rows(target, tenant, "")) > 100


def test_a_second_migration_into_the_same_target_is_refused(migrated: Migrated) -> None:
    result = CliRunner().invoke(main, ["migrate", "--from", migrated.source, "--to", migrated.target])
    assert result.exit_code == 1
    assert "the target already holds events" in result.output
    assert len(log_of(migrated.target)) == migrated.events


def test_a_target_with_keys_but_no_events_is_refused(migrated: Migrated, pg_cluster: PgCluster) -> None:
    target = pg_cluster.new_database()
    with TestClient(create_app(Settings(database=target, bootstrap_key="someone-else"))):
        pass  # a server started on it once: it holds a key now
    result = CliRunner().invoke(main, ["migrate", "--from", migrated.source, "--to", target])
    assert result.exit_code == 1
    assert "the target already holds 1 API key(s)" in result.output


@pytest.mark.parametrize(("target", "message"), [
    ("sqlite:///var/elsewhere.db", "the target must be a PostgreSQL database"),
    ("mysql://db/tasks", "the target must be a PostgreSQL database"),
    ("postgresql://postgres@127.0.0.1:5432/", "the target URL names no database"),
])
def test_a_target_that_is_not_postgresql_is_a_clear_error(migrated: Migrated, target: str, message: str) -> None:
    result = CliRunner().invoke(main, ["migrate", "--from", migrated.source, "--to", target])
    assert result.exit_code == 1
    assert message in result.output


def test_an_unreachable_target_is_a_clear_error(migrated: Migrated, pg_cluster: PgCluster) -> None:
    missing = pg_cluster.url("no_such_database")
    result = CliRunner().invoke(main, ["migrate", "--from", migrated.source, "--to", missing])
    assert result.exit_code == 1
    assert 'database "no_such_database" does not exist' in result.output


def test_a_missing_source_is_a_clear_error(pg_cluster: PgCluster, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["migrate", "--to", pg_cluster.new_database()], env={"TASKS_DATABASE": f"sqlite:///{tmp_path}/none.db"}
    )
    assert result.exit_code == 1
    assert "none.db' does not exist" in result.output
    assert not (tmp_path / "none.db").exists()


def test_verification_names_the_first_event_that_differs(migrated: Migrated, pg_cluster: PgCluster) -> None:
    target = pg_cluster.new_database()
    assert run_tasks("migrate", "--from", migrated.source, "--to", target).returncode == 0
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("UPDATE tasks_events SET state = state || ' '::bytea WHERE notification_id IN (1000, 2000)")
    with Migration(Settings(database=migrated.source), Settings(database=target)) as migration, \
            pytest.raises(MigrationError, match=r"at event 1000 \(source position 1000, target position 1000\): "
                                                r"the state differs"):
        migration.verify()


def _history(client: TestClient, task_id: str, tenant: str) -> list[tuple[str, int, str, str, str, str]]:
    """Each event's type, version, hash chain link, actor and request."""
    events = client.app_state["services"].app.history(task_id, tenant)
    return [(type(e).__name__, e.originator_version, e.prev_hash, e.hash, e.actor, e.request_id) for e in events]


def _all_rows(client: TestClient, tenant: str, query: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = get(client, f"/agents/tasks?limit=500&offset={offset}{query}", tenant).json()["data"]
        rows.extend(page["tasks"])
        if not page["hasMore"]:
            return rows
        offset += 500
