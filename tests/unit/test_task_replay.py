"""Task.replay refuses event streams the library's mutate chain refuses."""

from __future__ import annotations

import pytest
from eventsourcing.domain import OriginatorIDError, OriginatorVersionError

from domain import commands as c
from domain.task import Actor, Task

BY = Actor(principal="p", request_id="r", tenant="acme")


def events_of_a_started_task() -> list:
    task = Task.create(c.CreateTask(task="do it", agent_id="amy"), BY)
    task.start(c.StartTask(), BY)
    return list(task.pending_events)


def test_no_events_is_no_task():
    assert Task.replay([]) is None


def test_the_replayed_task_is_the_task_the_commands_built():
    events = events_of_a_started_task()
    task = Task.replay(events)
    assert (task.version, task.status.value, task.agent_id, task.last_hash) == (2, "in_progress", "amy",
                                                                                 events[-1].hash)
    assert task.modified_on == events[-1].timestamp and task.created_on == events[0].timestamp
    assert task.pending_events == []


def test_a_stream_not_starting_with_the_creation_is_refused():
    with pytest.raises(TypeError, match="first event must create"):
        Task.replay(events_of_a_started_task()[1:])


def test_a_gap_in_versions_is_refused():
    task = Task.create(c.CreateTask(task="do it", agent_id="amy"), BY)
    task.start(c.StartTask(), BY)
    task.report_progress(c.ReportProgress(progress=10), BY)
    created, _started, progressed = task.pending_events
    with pytest.raises(OriginatorVersionError):
        Task.replay([created, progressed])


def test_another_tasks_event_is_refused():
    created = events_of_a_started_task()[0]
    other = events_of_a_started_task()[1]
    with pytest.raises(OriginatorIDError):
        Task.replay([created, other])


def test_a_second_creation_is_refused():
    first = events_of_a_started_task()[0]
    with pytest.raises(TypeError, match="created twice"):
        Task.replay([first, first])
