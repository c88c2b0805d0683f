"""A batch of events saved in one transaction: every event gets the log position it is
stored at, whatever the batch's size (SQLite inserts it in a few multi-row statements)."""

from __future__ import annotations

import pytest

from adapters.config import Settings
from domain import commands as c
from domain.application import TaskApplication
from domain.task import Actor, Task

BY = Actor("key_test", "req_test")


def saved_task(n: int) -> Task:
    """Every other task is created and then assigned: two events of one task in the batch."""
    task = Task.create(c.CreateTask(task=f"t{n}"), BY)
    if n % 2:
        task.assign(c.AssignTask(agent_id="amy"), BY)
    return task


@pytest.mark.parametrize("tasks", [1, 2, 3, 50, 130])
def test_each_saved_event_is_told_the_position_it_is_stored_at(app: TaskApplication, tasks: int) -> None:
    first = [Task.create(c.CreateTask(task="warm-up"), BY)]  # the log does not start empty
    app.save(*first)
    batch = [saved_task(n) for n in range(tasks)]
    recordings = app.save(*batch)

    expected_events = sum(2 if n % 2 else 1 for n in range(tasks))
    assert len(recordings) == expected_events
    stored = {n.id: n for n in app.recorder.select_notifications(start=2, limit=10_000)}
    assert sorted(stored) == sorted(r.notification.id for r in recordings)
    for recording in recordings:
        found = stored[recording.notification.id]
        assert (found.originator_id, found.originator_version) == (
            recording.domain_event.originator_id, recording.domain_event.originator_version)
        assert found.topic == recording.notification.topic
    for task in batch:  # and every task reads back as it was saved
        again = app.repository.get(task.id)
        assert (again.description, again.version, again.last_hash) == (task.description, task.version, task.last_hash)
