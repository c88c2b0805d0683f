"""`tasks audit verify` on a log edited behind the service's back, on SQLite and PostgreSQL.

Each test writes a small history through the API, saves a checkpoint, then
changes the stored events directly in the database (as someone with write
access to it could) and checks that verify names what was done, and fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from click.testing import CliRunner, Result
from starlette.testclient import TestClient

from adapters.cli import main
from adapters.config import Settings
from adapters.sql import SqlStore, open_store
from domain.ids import parse_id
from tests.conftest import act, create


@pytest.fixture
def store(settings: Settings) -> Any:
    opened = open_store(settings, 1)
    yield opened
    opened.close()


def history(client: TestClient) -> tuple[str, str]:
    """Two tasks: A with five events, then B with three (B's are the newest in the log).

    A is created with its agent (one TaskCreated, already assigned); B is created without one and
    then assigned, so the log holds a TaskAssigned event too.
    """
    a = create(client, agentId="amy")["taskId"]  # v1 created assigned
    act(client, a, "start")  # v2
    act(client, a, "progress", {"progress": 30, "phase": "draft"})  # v3
    act(client, a, "progress", {"progress": 60})  # v4
    act(client, a, "review", {"note": "ready"})  # v5
    b = create(client, task="second")["taskId"]  # v1 created
    act(client, b, "assign", {"agentId": "bob"})  # v2 assigned
    act(client, b, "start")  # v3
    return a, b


def cli(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"TASKS_DATABASE": settings.database, "TASKS_AUDIT_KEY": ""})


def save_checkpoint(settings: Settings, tmp_path: Path) -> Path:
    path = tmp_path / "checkpoint.json"
    result = cli(settings, "audit", "checkpoint", "--out", str(path))
    assert result.exit_code == 0, result.output
    return path


def verify(settings: Settings, checkpoint: Path | None = None) -> Result:
    args = ["audit", "verify"] + (["--checkpoint", str(checkpoint)] if checkpoint else [])
    return cli(settings, *args)


def findings(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.split(":")[0].isupper() and ":" in line
            and not line.startswith(("OK", "FAILED"))]


# --- direct edits of the stored events ------------------------------------------------------


def _table(store: SqlStore) -> tuple[str, str]:
    return ("tasks_events", "notification_id") if store.dialect.is_postgres else ("stored_events", "rowid")


def _key(store: SqlStore, task_id: str) -> Any:
    uuid: UUID = parse_id(task_id)
    return uuid if store.dialect.is_postgres else uuid.hex


def edit_state(store: SqlStore, task_id: str, version: int, old: bytes, new: bytes) -> None:
    table, _ = _table(store)
    sql = store.dialect.sql
    with store.transaction(commit=True) as cursor:
        cursor.execute(sql(f"SELECT state FROM {table} WHERE originator_id = ? AND originator_version = ?"),
                       (_key(store, task_id), version))
        state = bytes(cursor.fetchone()["state"])
        assert old in state
        cursor.execute(sql(f"UPDATE {table} SET state = ? WHERE originator_id = ? AND originator_version = ?"),
                       (state.replace(old, new), _key(store, task_id), version))


def delete(store: SqlStore, task_id: str, *versions: int) -> None:
    table, _ = _table(store)
    with store.transaction(commit=True) as cursor:
        for version in versions:
            cursor.execute(store.dialect.sql(f"DELETE FROM {table} WHERE originator_id = ? AND originator_version = ?"),
                           (_key(store, task_id), version))


def swap_versions(store: SqlStore, task_id: str, first: int, second: int) -> None:
    table, _ = _table(store)
    sql = store.dialect.sql(f"UPDATE {table} SET originator_version = ? WHERE originator_id = ? AND originator_version = ?")
    key = _key(store, task_id)
    with store.transaction(commit=True) as cursor:
        cursor.execute(sql, (-1, key, first))
        cursor.execute(sql, (first, key, second))
        cursor.execute(sql, (second, key, -1))


# --- the cases ---------------------------------------------------------------------------------


def test_an_untouched_log_verifies(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    history(client)
    checkpoint = save_checkpoint(settings, tmp_path)
    result = verify(settings, checkpoint)
    assert result.exit_code == 0, result.output
    assert "checked 8 events of 2 tasks" in result.output
    assert "OK: every chain holds and the log matches the checkpoint" in result.output


def test_a_changed_field_is_named_by_task_and_version(client: TestClient, settings: Settings, store: SqlStore,
                                                       tmp_path: Path) -> None:
    a, _ = history(client)
    checkpoint = save_checkpoint(settings, tmp_path)
    edit_state(store, a, 3, b'"progress":30', b'"progress":90')
    result = verify(settings, checkpoint)
    assert result.exit_code == 1
    assert findings(result) == [
        f"MODIFIED: {a} v3 (ProgressReported) was modified: its hash does not match its fields"]


def test_a_deleted_middle_event_is_named_missing(client: TestClient, settings: Settings, store: SqlStore,
                                                  tmp_path: Path) -> None:
    a, _ = history(client)
    checkpoint = save_checkpoint(settings, tmp_path)
    delete(store, a, 3)
    result = verify(settings, checkpoint)
    assert result.exit_code == 1
    assert findings(result) == [f"MISSING: {a} v3 is missing: the chain skips from v2 to a later version"]


def test_deleted_newest_events_are_named_as_truncation_since_the_checkpoint(
    client: TestClient, settings: Settings, store: SqlStore, tmp_path: Path
) -> None:
    _, b = history(client)
    checkpoint = save_checkpoint(settings, tmp_path)
    delete(store, b, 2, 3)  # the log's two newest events
    assert verify(settings).exit_code == 0  # every chain that is left is whole: only the checkpoint can tell
    result = verify(settings, checkpoint)
    assert result.exit_code == 1
    assert findings(result) == [
        "TRUNCATED: the log ends at position 6, before the checkpoint's position 8: "
        "its newest events were deleted",
        f"TRUNCATED: {b} v2..v3 existed at the checkpoint and are gone: the task's newest events were deleted",
    ]


def test_two_swapped_events_are_named_reordered(client: TestClient, settings: Settings, store: SqlStore,
                                               tmp_path: Path) -> None:
    a, _ = history(client)
    checkpoint = save_checkpoint(settings, tmp_path)
    swap_versions(store, a, 3, 4)
    result = verify(settings, checkpoint)
    assert result.exit_code == 1
    assert findings(result) == [
        f"REORDERED: {a} v4 (ProgressReported) is stored as v3: the events were reordered or renumbered",
        f"REORDERED: {a} v3 (ProgressReported) is stored as v4: the events were reordered or renumbered",
    ]


def test_a_rewritten_chain_passes_its_own_hashes_but_not_the_checkpoint(
    client: TestClient, settings: Settings, store: SqlStore, tmp_path: Path
) -> None:
    """Someone who recomputes every hash after an edit defeats the chain, not a checkpoint kept elsewhere."""
    from adapters.audit_log import database_entries
    from domain.application import TaskApplication
    from domain.hashing import event_hash

    _, b = history(client)
    checkpoint = save_checkpoint(settings, tmp_path)
    edit_state(store, b, 3, b'"note":null', b'"note":"forged"')
    app = TaskApplication(env=settings.eventsourcing_env())
    try:
        (forged,) = [e for e in database_entries(app) if e.task_id == b and e.version == 3]
        assert forged.fields is not None
        good = event_hash(forged.type, forged.fields)
        edit_state(store, b, 3, forged.hash.encode(), good.encode())  # type: ignore[union-attr]
    finally:
        app.close()
    assert verify(settings).exit_code == 0
    result = verify(settings, checkpoint)
    assert result.exit_code == 1
    assert findings(result) == [
        f"MODIFIED: {b} v3 is not the event the checkpoint recorded (its hash differs): the chain was rewritten"
    ]


def test_an_event_added_within_the_checkpoint_is_named(client: TestClient, settings: Settings, store: SqlStore,
                                                       tmp_path: Path) -> None:
    """A renumbered insertion in the middle of a chain: the events after it no longer verify where they sit."""
    a, _ = history(client)
    checkpoint = save_checkpoint(settings, tmp_path)
    table, _ = _table(store)
    key = _key(store, a)
    sql = store.dialect.sql
    with store.transaction(commit=True) as cursor:
        for version in (5, 4, 3):  # make room for a forged v3
            cursor.execute(sql(f"UPDATE {table} SET originator_version = ? WHERE originator_id = ? "
                               "AND originator_version = ?"), (version + 1, key, version))
        cursor.execute(sql(f"SELECT topic, state FROM {table} WHERE originator_id = ? "
                           "AND originator_version = 4"), (key,))
        row = cursor.fetchone()
        state = bytes(row["state"]).replace(b'"progress":30', b'"progress":99')
        cursor.execute(sql(f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
                           "VALUES (?, ?, ?, ?)"), (key, 3, row["topic"], state))
    result = verify(settings, checkpoint)
    assert result.exit_code == 1
    lines = findings(result)
    assert lines[0] == (f"INSERTED: {a} v3 (ProgressReported) is not part of the chain: "
                        "it was inserted between v2 and v3")
    assert (f"REORDERED: {a} v3 (ProgressReported) is stored as v4: "
            "the events were reordered or renumbered") in lines


def test_no_checkpoint_is_taken_of_a_log_that_does_not_verify(client: TestClient, settings: Settings,
                                                              store: SqlStore, tmp_path: Path) -> None:
    a, _ = history(client)
    edit_state(store, a, 3, b'"progress":30', b'"progress":90')
    result = cli(settings, "audit", "checkpoint", "--out", str(tmp_path / "checkpoint.json"))
    assert result.exit_code == 1
    assert "the log does not verify, so no checkpoint was taken" in result.output
    assert not (tmp_path / "checkpoint.json").exists()
    response = client.get("/audit/checkpoint")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "log_does_not_verify"
    assert response.json()["error"]["details"]["findings"][0]["taskId"] == a


def test_an_event_edited_beyond_reading_is_named_modified(client: TestClient, settings: Settings,
                                                          store: SqlStore) -> None:
    a, _ = history(client)
    edit_state(store, a, 4, b'"progress":60', b'"progress":')
    result = verify(settings)
    assert result.exit_code == 1
    assert findings(result) == [f"MODIFIED: {a} v4 cannot be read: its stored data was changed"]
