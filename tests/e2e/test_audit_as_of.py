"""For random histories, a task at version N is the fold of its first N events, and asOf agrees."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from adapters.http import presenters
from tests.conftest import create

ACTIONS: list[tuple[str, dict[str, Any]]] = [
    ("assign", {"agentId": "amy"}),
    ("assign", {"agentId": "bob-smith", "teamId": "ops"}),
    ("start", {}),
    ("progress", {"progress": 20, "phase": "draft"}),
    ("progress", {"progress": 70}),
    ("block", {"reason": "waiting for data"}),
    ("unblock", {}),
    ("review", {"note": "ready"}),
    ("request-changes", {"reason": "add charts"}),
    ("complete", {"result": {"summary": "done"}, "deliverables": [{"type": "pdf", "name": "r.pdf"}]}),
    ("fail", {"error": {"code": "boom", "message": "it broke"}}),
    ("retry", {"reassign": False}),
    ("retry", {"reassign": True, "context": {"more": 1}}),
    ("escalate", {"reason": "urgent now"}),
    ("cancel", {"reason": "not needed"}),
    ("feedback", {"rating": 4, "feedback": "good"}),
    ("", {"notes": "a note", "priority": "high"}),  # PATCH
]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=12), assigned=st.booleans())
def test_every_version_is_the_fold_of_its_first_events(client: TestClient, steps: list[tuple[str, dict[str, Any]]],
                                                        assigned: bool) -> None:
    task_id = create(client, **({"agentId": "amy"} if assigned else {}))["taskId"]
    for action, body in steps:  # commands the status refuses (409) simply leave no event
        if action:
            client.post(f"/agents/tasks/{task_id}/{action}", json=body)
        else:
            client.patch(f"/agents/tasks/{task_id}", json=body)
    events = client.app_state["services"].app.history(task_id, "default")  # type: ignore[attr-defined]
    listed = client.get(f"/agents/tasks/{task_id}/events", params={"limit": 1000}).json()["data"]["events"]
    assert [e["version"] for e in listed] == list(range(1, len(events) + 1))

    folded: Any = None
    states = []
    for n, event in enumerate(events, start=1):
        folded = event.mutate(folded)
        states.append(msgspec.to_builtins(presenters.task_view(folded, "http://testserver/")))
        at_version = client.get(f"/agents/tasks/{task_id}", params={"version": n})
        assert at_version.status_code == 200
        assert at_version.headers["etag"] == f'"{n}"'
        assert at_version.json()["data"] == states[-1]

    times = [datetime.fromisoformat(e["timestamp"]) for e in listed]
    for n, moment in enumerate(times, start=1):
        # Events are stamped in microseconds, so the last one at or before an event's time is that event.
        last = max(v for v, t in enumerate(times, start=1) if t <= moment)
        at_time = client.get(f"/agents/tasks/{task_id}", params={"asOf": listed[n - 1]["timestamp"]})
        assert at_time.status_code == 200
        assert at_time.json()["data"] == states[last - 1]
        assert last == n
