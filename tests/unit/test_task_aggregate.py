"""Behaviour of the Task aggregate, one command at a time.

Each test reads given -> when -> then: a task is built from commands (and its
events collected, so only the new ones are looked at), one command is given,
and the new event(s) — or the refusal — are checked. The last section goes
through ``TaskApplication`` and a throw-away SQLite store: replay, the hash
chain, who-did-what stamps, expected versions and tenant isolation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from uuid import uuid4

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import commands as c
from domain.application import TaskApplication
from domain.errors import (
    InvalidTransitionError,
    RuleViolationError,
    TaskNotFoundError,
    VersionConflictError,
)
from domain.hashing import GENESIS_HASH, event_hash
from domain.ids import public_id
from domain.statuses import Status
from domain.task import (
    Actor,
    ChangesRequested,
    FeedbackGiven,
    ProgressReported,
    SubmittedForReview,
    Task,
    TaskAssigned,
    TaskBlocked,
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskEscalated,
    TaskFailed,
    TaskRetried,
    TaskStarted,
    TaskUnblocked,
    TaskUpdated,
)

ALICE = Actor(principal="alice", request_id="req-alice", tenant="acme")
BOB = Actor(principal="bob", request_id="req-bob", tenant="acme")
MALLORY = Actor(principal="mallory", request_id="req-mallory", tenant="evil-corp")

NON_TERMINAL = ["pending", "assigned", "in_progress", "blocked", "review", "failed"]
TERMINAL = ["completed", "cancelled"]


# --- given: tasks built from commands -------------------------------------


def create(agent_id: str | None = "agent-1", **fields) -> Task:
    return Task.create(c.CreateTask(task="Write the quarterly report", agent_id=agent_id, **fields), ALICE)


def start(task: Task) -> None:
    task.start(c.StartTask(), ALICE)


def submit(task: Task) -> None:
    task.submit_for_review(c.SubmitForReview(note="done, please look"), ALICE)


def complete(task: Task) -> None:
    task.complete(c.CompleteTask(), ALICE)


def fail(task: Task) -> None:
    task.fail(c.FailTask(error=c.TaskError(code="E_TIMEOUT", message="took too long")), ALICE)


def block(task: Task) -> None:
    task.block(c.BlockTask(reason="waiting for data"), ALICE)


def cancel(task: Task) -> None:
    task.cancel(c.CancelTask(reason="no longer needed"), ALICE)


# How to reach each status from a fresh task (created with or without an agent).
PATHS = {
    "pending": (None, []),
    "assigned": ("agent-1", []),
    "in_progress": ("agent-1", [start]),
    "blocked": ("agent-1", [start, block]),
    "review": ("agent-1", [start, submit]),
    "completed": ("agent-1", [start, submit, complete]),
    "failed": ("agent-1", [start, fail]),
    "cancelled": (None, [cancel]),
}


def given_task(status: str, **create_fields) -> Task:
    """A task in ``status`` whose events have all been collected already."""
    agent_id, steps = PATHS[status]
    task = create(agent_id=create_fields.pop("agent_id", agent_id), **create_fields)
    for step in steps:
        step(task)
    task.collect_events()
    assert task.status == Status(status)
    return task


def when(task: Task, command) -> list:
    """Run ``command(task)`` and return the events it produced."""
    version_before = task.version
    command(task)
    events = list(task.collect_events())
    assert task.version == version_before + len(events)
    return events


def then_refused(task: Task, command, allowed: list[str]) -> InvalidTransitionError:
    version_before, status_before = task.version, task.status
    with pytest.raises(InvalidTransitionError) as caught:
        command(task)
    assert caught.value.allowed == sorted(allowed)
    assert caught.value.status == status_before.value
    assert "allowed from: " + ", ".join(sorted(allowed)) in str(caught.value)
    assert task.version == version_before
    assert task.status == status_before
    assert task.collect_events() == []
    return caught.value


def only_event(events: list, event_type: type):
    assert [type(e) for e in events] == [event_type]
    return events[0]


# --- create ---------------------------------------------------------------


def test_creating_a_task_without_an_agent_leaves_it_pending_with_one_event():
    task = create(agent_id=None, priority="high", context={"k": 1}, deliverables=["report"])

    events = task.collect_events()

    created = only_event(list(events), TaskCreated)
    assert created.originator_version == 1
    assert created.task == "Write the quarterly report"
    assert created.agent_id is None
    assert created.priority == "high"
    assert created.context == {"k": 1}
    assert created.deliverables == ["report"]
    assert created.prev_hash == GENESIS_HASH
    assert task.status == Status.PENDING
    assert task.version == 1
    assert task.attempt == 1
    assert task.progress == 0
    assert task.expected_deliverables == ["report"]


def test_creating_a_task_with_an_agent_creates_it_assigned_in_one_event():
    task = create(agent_id="agent-7", team_id="team-a")

    events = list(task.collect_events())

    created = only_event(events, TaskCreated)
    assert created.originator_version == 1
    assert created.assigned is True
    assert created.agent_id == "agent-7"
    assert created.team_id == "team-a"
    assert task.status == Status.ASSIGNED
    assert task.agent_id == "agent-7"
    assert task.team_id == "team-a"
    assert task.version == 1
    assert task.assigned_at == task.created_at == created.timestamp


def test_creating_a_task_stores_the_deadline_in_utc():
    deadline = datetime(2031, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))

    task = create(agent_id=None, deadline=deadline)

    assert task.deadline == deadline
    assert task.deadline.utcoffset() == timedelta(0)


# --- assign ---------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "assigned"])
def test_assigning_a_pending_or_assigned_task_makes_it_assigned(status):
    task = given_task(status)

    events = when(task, lambda t: t.assign(c.AssignTask(agent_id="agent-2", team_id="team-b"), BOB))

    event = only_event(events, TaskAssigned)
    assert event.agent_id == "agent-2"
    assert task.status == Status.ASSIGNED
    assert task.agent_id == "agent-2"
    assert task.team_id == "team-b"
    assert task.previous_agent_ids == ([] if status == "pending" else ["agent-1"])


@pytest.mark.parametrize("status", ["in_progress", "blocked", "review", "completed", "failed", "cancelled"])
def test_assigning_a_task_that_is_past_assignment_is_refused(status):
    then_refused(
        given_task(status), lambda t: t.assign(c.AssignTask(agent_id="x"), BOB), ["assigned", "pending"]
    )


# --- start ------------------------------------------------------------------


def test_starting_an_assigned_task_puts_it_in_progress():
    task = given_task("assigned")

    event = only_event(when(task, lambda t: t.start(c.StartTask(note="go"), ALICE)), TaskStarted)

    assert event.note == "go"
    assert event.originator_version == 2
    assert task.status == Status.IN_PROGRESS
    assert task.started_at == event.timestamp
    assert task.phase == "started"


@pytest.mark.parametrize(
    "status", ["pending", "in_progress", "blocked", "review", "completed", "failed", "cancelled"]
)
def test_starting_a_task_that_is_not_assigned_is_refused(status):
    error = then_refused(given_task(status), lambda t: t.start(c.StartTask(), ALICE), ["assigned"])
    assert error.command == "start"


# --- report_progress --------------------------------------------------------


def test_reporting_progress_keeps_the_task_in_progress_and_records_the_phase():
    task = given_task("in_progress")

    events = when(task, lambda t: t.report_progress(c.ReportProgress(progress=40, phase="drafting"), ALICE))

    event = only_event(events, ProgressReported)
    assert (event.progress, event.phase) == (40, "drafting")
    assert task.status == Status.IN_PROGRESS
    assert (task.progress, task.phase) == (40, "drafting")


@pytest.mark.parametrize(
    "status", ["pending", "assigned", "blocked", "review", "completed", "failed", "cancelled"]
)
def test_reporting_progress_outside_in_progress_is_refused(status):
    then_refused(
        given_task(status), lambda t: t.report_progress(c.ReportProgress(progress=10), ALICE), ["in_progress"]
    )


# --- block / unblock --------------------------------------------------------


def test_blocking_a_task_in_progress_records_the_reason():
    task = given_task("in_progress")

    event = only_event(when(task, lambda t: t.block(c.BlockTask(reason="needs access"), ALICE)), TaskBlocked)

    assert event.reason == "needs access"
    assert task.status == Status.BLOCKED
    assert task.blocked_reason == "needs access"


@pytest.mark.parametrize(
    "status", ["pending", "assigned", "blocked", "review", "completed", "failed", "cancelled"]
)
def test_blocking_a_task_not_in_progress_is_refused(status):
    then_refused(given_task(status), lambda t: t.block(c.BlockTask(reason="r"), ALICE), ["in_progress"])


def test_unblocking_a_blocked_task_resumes_it_and_clears_the_reason():
    task = given_task("blocked")

    only_event(when(task, lambda t: t.unblock(c.UnblockTask(note="got it"), ALICE)), TaskUnblocked)

    assert task.status == Status.IN_PROGRESS
    assert task.blocked_reason is None


@pytest.mark.parametrize(
    "status", ["pending", "assigned", "in_progress", "review", "completed", "failed", "cancelled"]
)
def test_unblocking_a_task_that_is_not_blocked_is_refused(status):
    then_refused(given_task(status), lambda t: t.unblock(c.UnblockTask(), ALICE), ["blocked"])


# --- review -----------------------------------------------------------------


def test_submitting_a_task_in_progress_puts_it_in_review():
    task = given_task("in_progress")

    event = only_event(
        when(task, lambda t: t.submit_for_review(c.SubmitForReview(note="v1"), ALICE)), SubmittedForReview
    )

    assert event.note == "v1"
    assert task.status == Status.REVIEW
    assert task.review_note == "v1"


@pytest.mark.parametrize(
    "status", ["pending", "assigned", "blocked", "review", "completed", "failed", "cancelled"]
)
def test_submitting_a_task_not_in_progress_is_refused(status):
    then_refused(
        given_task(status), lambda t: t.submit_for_review(c.SubmitForReview(), ALICE), ["in_progress"]
    )


def test_requesting_changes_sends_a_reviewed_task_back_to_in_progress():
    task = given_task("review")

    event = only_event(
        when(task, lambda t: t.request_changes(c.RequestChanges(reason="add charts"), BOB)), ChangesRequested
    )

    assert event.reason == "add charts"
    assert task.status == Status.IN_PROGRESS
    assert task.changes_requested == "add charts"


@pytest.mark.parametrize(
    "status", ["pending", "assigned", "in_progress", "blocked", "completed", "failed", "cancelled"]
)
def test_requesting_changes_outside_review_is_refused(status):
    then_refused(
        given_task(status), lambda t: t.request_changes(c.RequestChanges(reason="r"), BOB), ["review"]
    )


# --- complete ---------------------------------------------------------------


def test_completing_a_reviewed_task_stamps_deliverables_without_a_creation_time():
    task = given_task("review")
    given_time = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    command = c.CompleteTask(
        result=c.Result(summary="all good", insights=["x"]),
        deliverables=[
            c.Deliverable(type="file", name="report.pdf", size=10),
            c.Deliverable(type="link", name="dash", url="https://e.x", created_at=given_time),
        ],
        quality=c.Quality(score=0.9),
    )

    event = only_event(when(task, lambda t: t.complete(command, BOB)), TaskCompleted)

    assert task.status == Status.COMPLETED
    assert task.progress == 100
    assert task.completed_at == event.timestamp
    first, second = event.deliverables
    assert first == {
        "type": "file",
        "name": "report.pdf",
        "size": 10,
        "createdAt": c.to_data(event.timestamp),
    }
    assert second["createdAt"] == c.to_data(given_time)
    assert event.result == {"summary": "all good", "insights": ["x"]}
    assert event.quality == {"score": 0.9}
    assert task.deliverables == event.deliverables


@pytest.mark.parametrize(
    "status", ["pending", "assigned", "in_progress", "blocked", "completed", "failed", "cancelled"]
)
def test_completing_a_task_outside_review_is_refused(status):
    then_refused(given_task(status), lambda t: t.complete(c.CompleteTask(), BOB), ["review"])


# --- fail -------------------------------------------------------------------


@pytest.mark.parametrize("status", ["assigned", "in_progress", "blocked", "review"])
def test_failing_a_working_task_records_the_error(status):
    task = given_task(status)
    error = c.TaskError(code="E1", message="boom", details={"line": 3})

    event = only_event(when(task, lambda t: t.fail(c.FailTask(error=error), ALICE)), TaskFailed)

    assert event.error == {"code": "E1", "message": "boom", "details": {"line": 3}}
    assert task.status == Status.FAILED
    assert task.failed_at == event.timestamp
    assert task.error == event.error


@pytest.mark.parametrize("status", ["pending", "completed", "failed", "cancelled"])
def test_failing_a_task_that_is_not_being_worked_on_is_refused(status):
    then_refused(given_task(status), fail, ["assigned", "blocked", "in_progress", "review"])


# --- cancel -----------------------------------------------------------------


@pytest.mark.parametrize("status", NON_TERMINAL)
def test_cancelling_any_unfinished_task_including_a_failed_one_cancels_it(status):
    task = given_task(status)

    event = only_event(when(task, lambda t: t.cancel(c.CancelTask(reason="dropped"), BOB)), TaskCancelled)

    assert event.reason == "dropped"
    assert task.status == Status.CANCELLED
    assert task.cancel_reason == "dropped"
    assert task.cancelled_at == event.timestamp


@pytest.mark.parametrize("status", TERMINAL)
def test_cancelling_a_completed_or_cancelled_task_is_refused(status):
    then_refused(given_task(status), cancel, NON_TERMINAL)


# --- retry ------------------------------------------------------------------


def test_retrying_a_failed_task_gives_it_back_to_the_same_agent():
    task = given_task("failed", context={"a": 1, "b": 1})

    event = only_event(when(task, lambda t: t.retry(c.RetryTask(context={"b": 2, "c": 3}), BOB)), TaskRetried)

    assert (event.attempt, event.reassign, event.agent_id) == (2, False, "agent-1")
    assert task.status == Status.ASSIGNED
    assert task.agent_id == "agent-1"
    assert task.attempt == 2
    assert task.context == {"a": 1, "b": 2, "c": 3}
    assert (task.progress, task.error, task.failed_at, task.started_at) == (0, None, None, None)


def test_retrying_with_reassign_clears_the_agent_and_makes_the_task_pending():
    task = given_task("failed")

    event = only_event(when(task, lambda t: t.retry(c.RetryTask(reassign=True), BOB)), TaskRetried)

    assert (event.attempt, event.reassign, event.agent_id) == (2, True, None)
    assert task.status == Status.PENDING
    assert task.agent_id is None
    assert task.previous_agent_ids == ["agent-1"]
    assert task.assigned_at is None


def test_each_retry_increments_the_attempt():
    task = given_task("failed")
    for expected_attempt in (2, 3, 4):
        when(task, lambda t: t.retry(c.RetryTask(), BOB))
        start(task)
        fail(task)
        task.collect_events()
        assert task.attempt == expected_attempt


@pytest.mark.parametrize(
    "status", ["pending", "assigned", "in_progress", "blocked", "review", "completed", "cancelled"]
)
def test_retrying_a_task_that_has_not_failed_is_refused(status):
    then_refused(given_task(status), lambda t: t.retry(c.RetryTask(), BOB), ["failed"])


# --- escalate ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"), [("low", "medium"), ("medium", "high"), ("high", "urgent"), ("urgent", "urgent")]
)
def test_escalating_raises_the_priority_one_level_and_urgent_stays_urgent(before, after):
    task = given_task("in_progress", priority=before)

    event = only_event(when(task, lambda t: t.escalate(c.EscalateTask(reason="late"), BOB)), TaskEscalated)

    assert (event.previous_priority, event.priority) == (before, after)
    assert task.priority == after
    assert task.status == Status.IN_PROGRESS
    assert task.escalations == 1


def test_escalating_to_an_explicit_priority_jumps_to_it():
    task = given_task("assigned", priority="low")

    when(task, lambda t: t.escalate(c.EscalateTask(reason="ceo asked", priority="urgent"), BOB))

    assert task.priority == "urgent"


def test_escalating_to_the_same_priority_is_allowed():
    task = given_task("assigned", priority="high")

    event = only_event(
        when(task, lambda t: t.escalate(c.EscalateTask(reason="r", priority="high"), BOB)), TaskEscalated
    )

    assert event.priority == "high"


def test_escalating_to_a_lower_priority_is_a_rule_violation_and_records_nothing():
    task = given_task("in_progress", priority="high")

    with pytest.raises(RuleViolationError) as caught:
        task.escalate(c.EscalateTask(reason="r", priority="low"), BOB)

    assert caught.value.field == "priority"
    assert task.priority == "high"
    assert task.version == 2
    assert task.collect_events() == []


@pytest.mark.parametrize("status", ["pending", "in_progress", "blocked"])
def test_escalating_hands_the_task_to_another_agent_and_team_without_changing_status(status):
    task = given_task(status)

    event = only_event(
        when(
            task,
            lambda t: t.escalate(c.EscalateTask(reason="stuck", agent_id="senior", team_id="team-x"), BOB),
        ),
        TaskEscalated,
    )

    assert (event.agent_id, event.team_id) == ("senior", "team-x")
    assert task.status == Status(status)
    assert task.agent_id == "senior"
    assert task.team_id == "team-x"
    assert task.previous_agent_ids == ([] if status == "pending" else ["agent-1"])


def test_escalating_a_failed_task_is_allowed():
    task = given_task("failed")

    when(task, lambda t: t.escalate(c.EscalateTask(reason="again"), BOB))

    assert task.status == Status.FAILED
    assert task.priority == "high"


@pytest.mark.parametrize("status", TERMINAL)
def test_escalating_a_completed_or_cancelled_task_is_refused(status):
    then_refused(given_task(status), lambda t: t.escalate(c.EscalateTask(reason="r"), BOB), NON_TERMINAL)


# --- update -----------------------------------------------------------------


def test_updating_the_priority_changes_it_and_nothing_else():
    task = given_task("in_progress", priority="low")

    event = only_event(when(task, lambda t: t.update(c.UpdateTask(priority="high"), BOB)), TaskUpdated)

    assert event.priority == "high"
    assert (event.deadline, event.clear_deadline, event.context, event.notes) == (None, False, None, None)
    assert task.priority == "high"
    assert task.status == Status.IN_PROGRESS


def test_updating_the_priority_may_lower_it():
    task = given_task("pending", priority="urgent")

    when(task, lambda t: t.update(c.UpdateTask(priority="low"), BOB))

    assert task.priority == "low"


def test_updating_the_deadline_sets_it_in_utc_and_none_clears_it():
    task = given_task("assigned")
    deadline = datetime(2032, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=-5)))

    set_event = only_event(when(task, lambda t: t.update(c.UpdateTask(deadline=deadline), BOB)), TaskUpdated)
    assert set_event.deadline == deadline
    assert set_event.deadline.utcoffset() == timedelta(0)
    assert set_event.clear_deadline is False
    assert task.deadline == deadline

    clear_event = only_event(when(task, lambda t: t.update(c.UpdateTask(deadline=None), BOB)), TaskUpdated)
    assert clear_event.clear_deadline is True
    assert clear_event.deadline is None
    assert task.deadline is None


def test_updating_without_a_deadline_keeps_the_existing_one():
    deadline = datetime(2033, 1, 1, tzinfo=UTC)
    task = given_task("assigned", deadline=deadline)

    when(task, lambda t: t.update(c.UpdateTask(notes="fyi"), BOB))

    assert task.deadline == deadline


def test_a_deadline_null_on_the_wire_clears_it_and_an_absent_one_does_not():
    clearing = msgspec.json.decode(b'{"deadline": null}', type=c.UpdateTask)
    absent = msgspec.json.decode(b'{"notes": "n"}', type=c.UpdateTask)
    task = given_task("assigned", deadline=datetime(2033, 1, 1, tzinfo=UTC))

    when(task, lambda t: t.update(absent, BOB))
    assert task.deadline is not None
    when(task, lambda t: t.update(clearing, BOB))
    assert task.deadline is None


def test_updating_the_context_merges_it_into_the_existing_one():
    task = given_task("in_progress", context={"a": 1, "b": {"x": 1}})

    when(task, lambda t: t.update(c.UpdateTask(context={"b": 2, "c": 3}), BOB))

    assert task.context == {"a": 1, "b": 2, "c": 3}


def test_updating_with_notes_appends_them_with_the_actor():
    task = given_task("pending")

    first = only_event(when(task, lambda t: t.update(c.UpdateTask(notes="one"), ALICE)), TaskUpdated)
    second = only_event(when(task, lambda t: t.update(c.UpdateTask(notes="two"), BOB)), TaskUpdated)

    assert task.notes == [
        {"text": "one", "createdAt": first.timestamp, "actor": "alice"},
        {"text": "two", "createdAt": second.timestamp, "actor": "bob"},
    ]


def test_updating_a_failed_task_is_allowed():
    task = given_task("failed")

    when(task, lambda t: t.update(c.UpdateTask(notes="investigating"), BOB))

    assert task.status == Status.FAILED
    assert len(task.notes) == 1


@pytest.mark.parametrize("status", ["pending", "in_progress", "completed"])
def test_an_empty_update_is_a_rule_violation_and_records_nothing(status):
    task = given_task(status)
    version = task.version

    with pytest.raises(RuleViolationError):
        task.update(c.UpdateTask(), BOB)

    assert task.version == version
    assert task.collect_events() == []


@pytest.mark.parametrize("status", TERMINAL)
def test_updating_a_completed_or_cancelled_task_is_refused(status):
    then_refused(given_task(status), lambda t: t.update(c.UpdateTask(priority="high"), BOB), NON_TERMINAL)


# --- give_feedback -----------------------------------------------------------


def test_giving_feedback_on_a_completed_task_appends_it():
    task = given_task("completed")

    event = only_event(
        when(
            task, lambda t: t.give_feedback(c.GiveFeedback(rating=4, feedback="nice", issues=["typo"]), BOB)
        ),
        FeedbackGiven,
    )

    assert task.status == Status.COMPLETED
    assert task.feedback == [
        {"rating": 4, "feedback": "nice", "issues": ["typo"], "createdAt": event.timestamp, "actor": "bob"}
    ]
    when(task, lambda t: t.give_feedback(c.GiveFeedback(rating=5), ALICE))
    assert [f["rating"] for f in task.feedback] == [4, 5]


@pytest.mark.parametrize(
    "status", ["pending", "assigned", "in_progress", "blocked", "review", "failed", "cancelled"]
)
def test_giving_feedback_on_an_unfinished_or_cancelled_task_is_refused(status):
    then_refused(given_task(status), lambda t: t.give_feedback(c.GiveFeedback(rating=3), BOB), ["completed"])


# --- events carry who, which request, which tenant and the hash chain --------


def test_every_event_records_its_actor_request_and_the_tasks_tenant():
    task = create(agent_id="agent-1")
    task.start(c.StartTask(), BOB)
    task.report_progress(c.ReportProgress(progress=5), ALICE)

    events = list(task.collect_events())

    assert [(e.actor, e.request_id, e.tenant) for e in events] == [
        ("alice", "req-alice", "acme"),
        ("bob", "req-bob", "acme"),
        ("alice", "req-alice", "acme"),
    ]


def test_in_memory_events_form_a_hash_chain_ending_at_last_hash():
    task = Task.create(c.CreateTask(task="t", agent_id="a"), ALICE)
    start(task)
    submit(task)
    task.request_changes(c.RequestChanges(reason="r"), BOB)
    submit(task)
    complete(task)

    events = list(task.collect_events())

    assert events[0].prev_hash == GENESIS_HASH
    for previous, event in pairwise(events):
        assert event.prev_hash == previous.hash
    for event in events:
        assert event.hash == event_hash(type(event).__name__, dict(vars(event)))
    assert len({e.hash for e in events}) == len(events)
    assert task.last_hash == events[-1].hash


# --- through the application and its event store ----------------------------


def full_lifecycle(app: TaskApplication) -> tuple[str, Task]:
    """A task driven through most commands; returns its id and in-memory state."""
    written = app.create_task(
        c.CreateTask(
            task="Analyse churn",
            agent_id="agent-1",
            team_id="team-a",
            context={"dataset": "q3", "nested": {"k": [1, 2.5, None, True]}},
            priority="low",
            deadline=datetime(2031, 1, 1, 9, 30, tzinfo=timezone(timedelta(hours=1))),
            deliverables=["report"],
            budget={"usd": 100},
        ),
        ALICE,
    )
    task_id = public_id(written.task.id)
    steps = [
        (ALICE, lambda t: t.start(c.StartTask(note="go"), ALICE)),
        (ALICE, lambda t: t.report_progress(c.ReportProgress(progress=30, phase="load"), ALICE)),
        (BOB, lambda t: t.block(c.BlockTask(reason="creds"), BOB)),
        (BOB, lambda t: t.escalate(c.EscalateTask(reason="stuck", agent_id="agent-2"), BOB)),
        (BOB, lambda t: t.unblock(c.UnblockTask(), BOB)),
        (
            ALICE,
            lambda t: t.fail(c.FailTask(error=c.TaskError(code="E", message="m", details={"x": 1})), ALICE),
        ),
        (BOB, lambda t: t.retry(c.RetryTask(context={"dataset": "q4"}), BOB)),
        (
            BOB,
            lambda t: t.update(
                c.UpdateTask(notes="note", deadline=None, priority="high", context={"z": 0}), BOB
            ),
        ),
        (ALICE, lambda t: t.start(c.StartTask(), ALICE)),
        (ALICE, lambda t: t.submit_for_review(c.SubmitForReview(note="v1"), ALICE)),
        (BOB, lambda t: t.request_changes(c.RequestChanges(reason="more"), BOB)),
        (ALICE, lambda t: t.submit_for_review(c.SubmitForReview(note="v2"), ALICE)),
        (
            BOB,
            lambda t: t.complete(
                c.CompleteTask(
                    result=c.Result(summary="s", data={"rows": 3}),
                    deliverables=[c.Deliverable(type="file", name="r.pdf")],
                    quality=c.Quality(score=1.0, accuracy=0.75),
                ),
                BOB,
            ),
        ),
        (BOB, lambda t: t.give_feedback(c.GiveFeedback(rating=5, issues=["none"]), BOB)),
    ]
    for by, action in steps:
        written = app.execute(task_id, by, action)
    return task_id, written.task


def test_replaying_the_stored_events_gives_the_same_state_as_the_aggregate(app):
    task_id, in_memory = full_lifecycle(app)

    replayed = app.get_task(task_id, "acme")

    assert replayed.version == in_memory.version == 15
    assert vars(replayed) == vars(in_memory)
    assert replayed.status == Status.COMPLETED
    assert replayed.agent_id == "agent-2"
    assert replayed.previous_agent_ids == ["agent-1"]
    assert replayed.attempt == 2
    assert replayed.context == {"dataset": "q4", "nested": {"k": [1, 2.5, None, True]}, "z": 0}
    assert replayed.deadline is None


def test_the_task_can_be_read_as_it_stood_at_an_earlier_version(app):
    task_id, _ = full_lifecycle(app)

    at_three = app.get_task(task_id, "acme", version=3)

    assert at_three.version == 3
    assert at_three.status == Status.IN_PROGRESS


def test_stored_events_form_a_hash_chain_that_recomputes_after_loading(app):
    task_id, in_memory = full_lifecycle(app)

    events = app.history(task_id, "acme")

    assert len(events) == 15
    assert events[0].prev_hash == "0" * 64
    for previous, event in pairwise(events):
        assert event.prev_hash == previous.hash
    for event in events:
        recomputed = event_hash(type(event).__name__, {k: v for k, v in vars(event).items()})
        assert recomputed == event.hash, type(event).__name__
    assert in_memory.last_hash == events[-1].hash


def test_tampering_with_a_stored_field_breaks_the_recomputed_hash(app):
    task_id, _ = full_lifecycle(app)
    event = app.history(task_id, "acme")[3]

    fields = dict(vars(event))
    fields["reason"] = "something else"

    assert event_hash(type(event).__name__, fields) != event.hash


def test_stored_events_record_actor_request_and_tenant(app):
    task_id, _ = full_lifecycle(app)

    events = app.history(task_id, "acme")

    assert {(e.actor, e.request_id) for e in events} == {("alice", "req-alice"), ("bob", "req-bob")}
    assert {e.tenant for e in events} == {"acme"}
    by_type = {type(e).__name__: e for e in events}
    assert by_type["TaskBlocked"].actor == "bob"
    assert by_type["TaskStarted"].actor == "alice"
    assert by_type["FeedbackGiven"].request_id == "req-bob"


def test_execute_with_the_current_expected_version_applies_the_command(app):
    written = app.create_task(c.CreateTask(task="t", agent_id="a"), ALICE)
    task_id = public_id(written.task.id)

    after = app.execute(task_id, ALICE, lambda t: t.start(c.StartTask(), ALICE), expected_version=1)

    assert after.task.version == 2
    assert len(app.history(task_id, "acme")) == 2


def test_execute_with_a_wrong_expected_version_is_a_conflict_and_records_nothing(app):
    written = app.create_task(c.CreateTask(task="t", agent_id="a"), ALICE)
    task_id = public_id(written.task.id)
    calls = []

    def action(task):
        calls.append(task)
        task.start(c.StartTask(), ALICE)

    with pytest.raises(VersionConflictError) as caught:
        app.execute(task_id, ALICE, action, expected_version=2)

    assert (caught.value.expected, caught.value.current) == (2, 1)
    assert calls == []
    assert len(app.history(task_id, "acme")) == 1
    assert app.get_task(task_id, "acme").status == Status.ASSIGNED


def test_a_race_lost_with_a_pinned_version_is_a_conflict(app):
    written = app.create_task(c.CreateTask(task="t", agent_id="a"), ALICE)
    task_id = public_id(written.task.id)

    def action(task):
        # Another writer gets in between this command's read and its save.
        app.execute(task_id, BOB, lambda t: t.escalate(c.EscalateTask(reason="r"), BOB))
        task.start(c.StartTask(), ALICE)

    with pytest.raises(VersionConflictError) as caught:
        app.execute(task_id, ALICE, action, expected_version=1)

    assert (caught.value.expected, caught.value.current) == (1, 2)
    assert [type(e).__name__ for e in app.history(task_id, "acme")] == [
        "TaskCreated",
        "TaskEscalated",
    ]


def test_a_race_lost_without_a_pinned_version_is_retried_on_fresh_state(app):
    written = app.create_task(c.CreateTask(task="t", agent_id="a"), ALICE)
    task_id = public_id(written.task.id)
    seen_versions = []

    def action(task):
        seen_versions.append(task.version)
        if len(seen_versions) == 1:
            app.execute(task_id, BOB, lambda t: t.escalate(c.EscalateTask(reason="r"), BOB))
        task.start(c.StartTask(), ALICE)

    after = app.execute(task_id, ALICE, action)

    assert seen_versions == [1, 2]
    assert after.task.version == 3
    events = app.history(task_id, "acme")
    assert [type(e).__name__ for e in events] == [
        "TaskCreated",
        "TaskEscalated",
        "TaskStarted",
    ]
    assert events[2].prev_hash == events[1].hash


def test_a_refused_command_through_execute_records_nothing(app):
    written = app.create_task(c.CreateTask(task="t"), ALICE)
    task_id = public_id(written.task.id)

    with pytest.raises(InvalidTransitionError):
        app.execute(task_id, ALICE, lambda t: t.complete(c.CompleteTask(), ALICE))

    assert len(app.history(task_id, "acme")) == 1


def test_a_task_of_another_tenant_is_not_found(app):
    written = app.create_task(c.CreateTask(task="t", agent_id="a"), ALICE)
    task_id = public_id(written.task.id)

    with pytest.raises(TaskNotFoundError):
        app.get_task(task_id, "evil-corp")
    with pytest.raises(TaskNotFoundError):
        app.history(task_id, "evil-corp")
    with pytest.raises(TaskNotFoundError):
        app.execute(task_id, MALLORY, lambda t: t.cancel(c.CancelTask(), MALLORY))

    assert len(app.history(task_id, "acme")) == 1
    assert app.get_task(task_id, "acme").status == Status.ASSIGNED


@pytest.mark.parametrize(
    "task_id",
    [
        "",
        "nope",
        "task_",
        "task_123",
        "task_" + "g" * 32,
        "task_" + "0" * 33,
        "TASK_" + "0" * 32,
        uuid4().hex,
        str(uuid4()),
        "task_" + str(uuid4())[:32],
    ],
)
def test_a_malformed_task_id_is_not_found(app, task_id):
    with pytest.raises(TaskNotFoundError) as caught:
        app.get_task(task_id, "acme")
    assert caught.value.task_id == task_id


def test_a_well_formed_but_unknown_task_id_is_not_found(app):
    with pytest.raises(TaskNotFoundError):
        app.get_task(public_id(uuid4()), "acme")
    with pytest.raises(TaskNotFoundError):
        app.execute(public_id(uuid4()), ALICE, lambda t: None)


# Free-form client JSON (context, budget, result.data, error.details) must come
# back from the store exactly as sent. Regression guard: with eventsourcing's
# default JSONTranscoder any object that is exactly {"_type_": ..., "_data_": ...}
# was decoded as one of the library's own tagged values, so such client data
# came back changed (breaking the hash chain) or made the task unreadable.


def test_client_json_shaped_like_a_stored_uuid_comes_back_unchanged_and_hashes_the_same(app):
    tagged = {"_type_": "uuid_hex", "_data_": "00000000000000000000000000000001"}
    body = msgspec.json.encode({"task": "t", "context": {"ref": tagged}})
    written = app.create_task(msgspec.json.decode(body, type=c.CreateTask), ALICE)
    task_id = public_id(written.task.id)

    replayed = app.get_task(task_id, "acme")

    assert replayed.context == {"ref": tagged}
    created = app.history(task_id, "acme")[0]
    assert created.hash == event_hash("TaskCreated", dict(vars(created)))


def test_client_json_shaped_like_an_unknown_stored_type_does_not_make_the_task_unreadable(app):
    body = b'{"task": "t", "budget": {"_type_": "whatever", "_data_": 1}}'
    written = app.create_task(msgspec.json.decode(body, type=c.CreateTask), ALICE)

    replayed = app.get_task(public_id(written.task.id), "acme")

    assert replayed.budget == {"_type_": "whatever", "_data_": 1}


json_keys = st.sampled_from(["_type_", "_data_", "a", "createdAt", "deadline"]) | st.text(max_size=4)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        ["2030-01-01T00:00:00Z", "00000000000000000000000000000001", "uuid_hex", "datetime_iso"]
    )
    | st.text(max_size=6)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_keys, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(json_keys, json_values, max_size=4)


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(context=json_objects, budget=st.none() | json_objects, details=st.none() | json_objects)
def test_any_client_json_round_trips_through_the_store_with_its_hash(app, context, budget, details):
    body = msgspec.json.encode({"task": "t", "agentId": "a", "context": context, "budget": budget})
    written = app.create_task(msgspec.json.decode(body, type=c.CreateTask), ALICE)
    task_id = public_id(written.task.id)
    error = msgspec.json.decode(
        msgspec.json.encode({"error": {"code": "E", "message": "m", "details": details}}), type=c.FailTask
    )
    in_memory = app.execute(task_id, ALICE, lambda t: t.fail(error, ALICE)).task

    replayed = app.get_task(task_id, "acme")

    assert vars(replayed) == vars(in_memory)
    assert replayed.context == context
    assert replayed.budget == budget
    for event in app.history(task_id, "acme"):
        assert event.hash == event_hash(type(event).__name__, dict(vars(event)))
