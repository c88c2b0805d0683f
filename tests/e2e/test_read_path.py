"""The single-task GET served from the task cache: never stale, never another's.

Two app instances on one database stand for two server processes: one writes,
the other reads, and the reader must see every write on its next GET although
it holds the task in its cache. Each test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.testclient import TestClient

from adapters.config import Settings
from app import create_app
from tests.conftest import KEY, act, create, key_for

ADMIN = {"Authorization": f"Bearer {KEY}"}


@contextmanager
def two_processes(settings: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    """A writer and a reader: two app instances on the same database."""
    with TestClient(create_app(settings), headers=ADMIN) as writer, \
            TestClient(create_app(settings), headers=ADMIN) as reader:
        yield writer, reader


def get(client: TestClient, task_id: str, **kwargs: Any) -> Any:
    return client.get(f"/agents/tasks/{task_id}", **kwargs)


def cache_of(client: TestClient) -> Any:
    return client.app_state["services"].task_cache  # type: ignore[attr-defined]


def test_a_write_through_another_process_is_seen_on_the_next_get(settings: Settings) -> None:
    with two_processes(settings) as (writer, reader):
        task_id = create(writer, agentId="amy")["taskId"]
        assert get(reader, task_id).json()["data"]["status"] == "assigned"
        assert get(reader, task_id).json()["data"]["version"] == 1
        assert cache_of(reader).hits >= 1  # the second GET was served from the cache

        act(writer, task_id, "start")
        act(writer, task_id, "progress", {"progress": 40, "phase": "analysis"})

        seen = get(reader, task_id)
        assert seen.status_code == 200
        assert seen.headers["etag"] == '"3"'
        data = seen.json()["data"]
        assert (data["status"], data["progress"], data["currentPhase"], data["version"]) == \
            ("in_progress", 40, "analysis", 3)
        assert seen.json()["metadata"]["requestId"] == seen.headers["x-request-id"]


def test_a_get_from_the_cache_answers_the_view_the_first_get_built(client: TestClient) -> None:
    task_id = create(client, agentId="amy", context={"note": "naïve café ✓", "n": [1, 2.5, None]},
                     deliverables=["summary", "chart"], budget={"amount": 12.5, "currency": "EUR"})["taskId"]
    act(client, task_id, "start")
    act(client, task_id, "progress", {"progress": 40, "phase": "analysis", "note": "über halfway"})
    hits = cache_of(client).hits
    first, second = get(client, task_id), get(client, task_id)
    assert cache_of(client).hits == hits + 1  # the second GET was a hit
    body = first.content
    assert second.content[:body.index(b',"metadata":')] == body[:body.index(b',"metadata":')]
    data = second.json()["data"]
    assert (data["context"]["note"], data["progress"], data["currentPhase"]) == \
        ("naïve café ✓", 40, "analysis")


def test_a_cached_task_is_not_found_for_another_tenant_or_another_agent(settings: Settings) -> None:
    with two_processes(settings) as (writer, reader):
        task_id = create(writer, agentId="amy")["taskId"]
        assert get(reader, task_id).status_code == 200  # now cached in the reader

        other_tenant = get(reader, task_id, headers=key_for(reader, "admin", tenant="globex"))
        assert other_tenant.status_code == 404
        assert other_tenant.json()["error"]["code"] == "not_found"
        assert get(reader, task_id, headers=key_for(reader, "agent", agent_id="bob")).status_code == 404
        assert get(reader, task_id, headers=key_for(reader, "agent", agent_id="amy")).status_code == 200


def test_a_task_first_read_by_another_tenant_is_still_its_owners(settings: Settings) -> None:
    with two_processes(settings) as (writer, reader):
        task_id = create(writer)["taskId"]
        assert get(reader, task_id, headers=key_for(reader, "admin", tenant="globex")).status_code == 404
        assert get(reader, task_id).json()["data"]["taskId"] == task_id


def test_if_none_match_is_304_while_current_and_200_after_another_process_wrote(settings: Settings) -> None:
    with two_processes(settings) as (writer, reader):
        task_id = create(writer)["taskId"]
        etag = get(reader, task_id).headers["etag"]

        unchanged = get(reader, task_id, headers={"If-None-Match": etag})
        assert unchanged.status_code == 304
        assert unchanged.headers["etag"] == etag

        act(writer, task_id, "escalate", {"reason": "customer waiting"})
        changed = get(reader, task_id, headers={"If-None-Match": etag})
        assert changed.status_code == 200
        assert changed.headers["etag"] == '"2"'
        assert changed.json()["data"]["escalations"] == 1


def test_version_query_reads_the_past_while_the_cache_holds_the_present(settings: Settings) -> None:
    with two_processes(settings) as (writer, reader):
        task_id = create(writer, agentId="amy")["taskId"]
        act(writer, task_id, "start")
        assert get(reader, task_id).json()["data"]["version"] == 2

        past = get(reader, task_id, params={"version": 1})
        assert past.headers["etag"] == '"1"'
        assert (past.json()["data"]["status"], past.json()["data"]["version"]) == ("assigned", 1)
        assert get(reader, task_id).json()["data"]["status"] == "in_progress"


def test_a_task_with_many_events_is_replayed_whole(client: TestClient) -> None:
    task_id = create(client, agentId="amy")["taskId"]
    act(client, task_id, "start")
    for progress in range(1, 41):  # more events than are replayed on the event loop
        act(client, task_id, "progress", {"progress": progress})
    data = get(client, task_id).json()["data"]
    assert (data["progress"], data["version"]) == (40, 42)


def test_the_tracking_url_follows_the_host_the_caller_used(client: TestClient) -> None:
    task_id = create(client)["taskId"]
    first = get(client, task_id, headers={"Host": "one.example"}).json()["data"]["trackingUrl"]
    second = get(client, task_id, headers={"Host": "two.example"}).json()["data"]["trackingUrl"]
    assert first == f"http://one.example/agents/tasks/{task_id}"
    assert second == f"http://two.example/agents/tasks/{task_id}"


def test_an_unknown_or_malformed_id_is_not_found(client: TestClient) -> None:
    assert get(client, "task_" + "0" * 32).status_code == 404
    assert get(client, "nonsense").status_code == 404


def test_a_key_revoked_through_another_process_is_refused_on_the_next_request(settings: Settings) -> None:
    with two_processes(settings) as (writer, reader):
        task_id = create(writer)["taskId"]
        issued = writer.post("/keys", json={"role": "client"}).json()["data"]
        headers = {"Authorization": f"Bearer {issued['secret']}"}
        assert get(reader, task_id, headers=headers).status_code == 200
        assert get(reader, task_id, headers=headers).status_code == 200

        assert writer.delete(f"/keys/{issued['keyId']}").status_code == 200

        refused = get(reader, task_id, headers=headers)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="tasks"'
        assert refused.json()["error"]["message"] == "unknown or revoked key"
