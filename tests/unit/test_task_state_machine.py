"""Random command sequences against one in-memory Task and an independent model.

The model below is written from the design's transition rules, on purpose NOT
imported from ``domain.statuses``: if the table in the code drifts from the
design, this test notices. Every rule tries its command whatever the status;
the model says whether it must be accepted (one new event, new status and
version as the model predicts) or refused (InvalidTransitionError, nothing
changed).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from adapters.codec import EventMapper, decode_event
from domain import commands as c
from domain.errors import InvalidTransitionError, RuleViolationError
from domain.hashing import GENESIS_HASH, event_hash
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

# --- the design's rules, written out again ---------------------------------

EVERY_STATUS = frozenset(
    {"pending", "assigned", "in_progress", "blocked", "review", "completed", "failed", "cancelled"}
)
NOT_FINISHED = EVERY_STATUS - {"completed", "cancelled"}

ALLOWED = {
    "assign": frozenset({"pending", "assigned"}),
    "start": frozenset({"assigned"}),
    "report_progress": frozenset({"in_progress"}),
    "block": frozenset({"in_progress"}),
    "unblock": frozenset({"blocked"}),
    "submit_for_review": frozenset({"in_progress"}),
    "request_changes": frozenset({"review"}),
    "complete": frozenset({"review"}),
    "fail": frozenset({"assigned", "in_progress", "blocked", "review"}),
    "cancel": NOT_FINISHED,
    "retry": frozenset({"failed"}),
    "escalate": NOT_FINISHED,
    "update": NOT_FINISHED,
    "give_feedback": frozenset({"completed"}),
}

# Where an accepted command leads; None: the status does not change.
# (retry is decided by the model: assigned if an agent is kept, else pending.)
LEADS_TO = {
    "assign": "assigned",
    "start": "in_progress",
    "report_progress": "in_progress",
    "block": "blocked",
    "unblock": "in_progress",
    "submit_for_review": "review",
    "request_changes": "in_progress",
    "complete": "completed",
    "fail": "failed",
    "cancel": "cancelled",
    "escalate": None,
    "update": None,
    "give_feedback": None,
}

PRIORITIES = ["low", "medium", "high", "urgent"]

ACTOR = Actor(principal="prop", request_id="req-prop", tenant="acme")

agents = st.sampled_from(["agent-1", "agent-2", "agent-3"])
teams = st.none() | st.sampled_from(["team-a", "team-b"])
priorities = st.sampled_from(PRIORITIES)
small_context = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 3), max_size=2)
deadlines = st.sampled_from(
    [
        datetime(2030, 1, 1, tzinfo=UTC),
        datetime(2031, 6, 1, 8, 30, tzinfo=timezone(timedelta(hours=3))),
    ]
)
UPDATE_FIELDS = {
    "priority": priorities,
    "deadline": st.none() | deadlines,  # None clears the deadline
    "context": small_context,
    "notes": st.sampled_from(["n1", "n2"]),
}
# A non-empty update: one field for sure, any of the others maybe.
updates = st.one_of(
    *(
        st.fixed_dictionaries(
            {name: strategy}, optional={k: v for k, v in UPDATE_FIELDS.items() if k != name}
        )
        for name, strategy in UPDATE_FIELDS.items()
    )
)


class TaskLifecycle(RuleBasedStateMachine):
    """One Task aggregate, driven by random commands, checked against a model."""

    task: Task
    model: dict

    @initialize(agent=st.none() | agents, team=teams, priority=priorities)
    def create(self, agent, team, priority):
        self.task = Task.create(
            c.CreateTask(task="do it", agent_id=agent, team_id=team, priority=priority), ACTOR
        )
        self.model = {
            "status": "pending" if agent is None else "assigned",
            "version": 1,
            "attempt": 1,
            "priority": priority,
            "agent_id": agent,
            "progress": 0,
        }
        # Events triggered after the creation event itself.
        self.triggered = 0
        # One event whether or not an agent is named: created assigned to it if there is one.
        assert [type(e) for e in self.task.pending_events] == [TaskCreated]
        created = self.task.pending_events[0]
        assert created.assigned is (agent is not None)
        assert self.task.assigned_at == (None if agent is None else self.task.created_at)

    # --- the one way every command is tried -------------------------------

    def attempt(self, command, event_type, action, effect=None, violates_rule=False):
        task, model = self.task, self.model
        status_before, version_before = task.status, task.version
        events_before = list(task.pending_events)

        if model["status"] not in ALLOWED[command]:
            event(f"{command}: refused")
            with pytest.raises(InvalidTransitionError) as caught:
                action(task)
            assert caught.value.command == command
            assert caught.value.status == model["status"]
            assert caught.value.allowed == sorted(ALLOWED[command])
            self.assert_unchanged(status_before, version_before, events_before)
            return

        if violates_rule:
            event(f"{command}: rule violation")
            with pytest.raises(RuleViolationError):
                action(task)
            self.assert_unchanged(status_before, version_before, events_before)
            return

        event(f"{command}: accepted")
        action(task)

        if LEADS_TO.get(command) is not None:
            model["status"] = LEADS_TO[command]
        if effect is not None:
            effect(model)
        model["version"] += 1
        self.triggered += 1

        assert task.pending_events[: len(events_before)] == events_before
        new_events = task.pending_events[len(events_before) :]
        assert [type(e) for e in new_events] == [event_type]
        new_event = new_events[0]
        assert new_event.originator_version == model["version"]
        assert new_event.prev_hash == events_before[-1].hash
        assert task.status.value == model["status"]
        assert task.version == model["version"]

    def assert_unchanged(self, status_before, version_before, events_before):
        assert self.task.status == status_before
        assert self.task.version == version_before
        assert self.task.pending_events == events_before

    # --- rules: one per command, each tried on any status ---------------

    @rule(agent=agents, team=teams)
    def assign(self, agent, team):
        def effect(model):
            model["agent_id"] = agent

        self.attempt(
            "assign",
            TaskAssigned,
            lambda t: t.assign(c.AssignTask(agent_id=agent, team_id=team), ACTOR),
            effect,
        )

    @rule()
    def start(self):
        self.attempt("start", TaskStarted, lambda t: t.start(c.StartTask(), ACTOR))

    @rule(progress=st.integers(0, 100), phase=st.none() | st.sampled_from(["draft", "polish"]))
    def report_progress(self, progress, phase):
        def effect(model):
            model["progress"] = progress

        self.attempt(
            "report_progress",
            ProgressReported,
            lambda t: t.report_progress(c.ReportProgress(progress=progress, phase=phase), ACTOR),
            effect,
        )

    @rule()
    def block(self):
        self.attempt("block", TaskBlocked, lambda t: t.block(c.BlockTask(reason="waiting"), ACTOR))

    @rule()
    def unblock(self):
        self.attempt("unblock", TaskUnblocked, lambda t: t.unblock(c.UnblockTask(), ACTOR))

    @rule()
    def submit_for_review(self):
        self.attempt(
            "submit_for_review", SubmittedForReview, lambda t: t.submit_for_review(c.SubmitForReview(), ACTOR)
        )

    @rule()
    def request_changes(self):
        self.attempt(
            "request_changes",
            ChangesRequested,
            lambda t: t.request_changes(c.RequestChanges(reason="redo"), ACTOR),
        )

    @rule(with_deliverable=st.booleans())
    def complete(self, with_deliverable):
        deliverables = [c.Deliverable(type="file", name="out.txt")] if with_deliverable else []

        def effect(model):
            model["progress"] = 100

        self.attempt(
            "complete",
            TaskCompleted,
            lambda t: t.complete(c.CompleteTask(deliverables=deliverables), ACTOR),
            effect,
        )

    @rule()
    def fail(self):
        self.attempt(
            "fail",
            TaskFailed,
            lambda t: t.fail(c.FailTask(error=c.TaskError(code="E", message="boom")), ACTOR),
        )

    @rule()
    def cancel(self):
        self.attempt("cancel", TaskCancelled, lambda t: t.cancel(c.CancelTask(), ACTOR))

    @rule(reassign=st.booleans(), context=st.none() | small_context)
    def retry(self, reassign, context):
        def effect(model):
            model["attempt"] += 1
            if reassign:
                model["agent_id"] = None
            model["status"] = "assigned" if model["agent_id"] is not None else "pending"
            model["progress"] = 0

        self.attempt(
            "retry",
            TaskRetried,
            lambda t: t.retry(c.RetryTask(reassign=reassign, context=context), ACTOR),
            effect,
        )

    @rule(priority=st.none() | priorities, agent=st.none() | agents, team=teams)
    def escalate(self, priority, agent, team):
        current = self.model["priority"]
        if priority is None:
            new_priority = PRIORITIES[min(PRIORITIES.index(current) + 1, len(PRIORITIES) - 1)]
        else:
            new_priority = priority
        lowers = PRIORITIES.index(new_priority) < PRIORITIES.index(current)

        def effect(model):
            model["priority"] = new_priority
            if agent is not None:
                model["agent_id"] = agent

        self.attempt(
            "escalate",
            TaskEscalated,
            lambda t: t.escalate(
                c.EscalateTask(reason="late", priority=priority, agent_id=agent, team_id=team), ACTOR
            ),
            effect,
            violates_rule=lowers,
        )

    @rule(fields=updates)
    def update(self, fields):
        def effect(model):
            if "priority" in fields:
                model["priority"] = fields["priority"]

        self.attempt("update", TaskUpdated, lambda t: t.update(c.UpdateTask(**fields), ACTOR), effect)

    @rule()
    def empty_update(self):
        # Refused before the status is even looked at: there is nothing to do.
        status_before, version_before = self.task.status, self.task.version
        events_before = list(self.task.pending_events)
        with pytest.raises(RuleViolationError):
            self.task.update(c.UpdateTask(), ACTOR)
        self.assert_unchanged(status_before, version_before, events_before)

    @rule(rating=st.integers(1, 5))
    def give_feedback(self, rating):
        self.attempt(
            "give_feedback", FeedbackGiven, lambda t: t.give_feedback(c.GiveFeedback(rating=rating), ACTOR)
        )

    @rule(steps=st.integers(1, 4))
    def advance(self, steps):
        """Walk the happy path a few steps, so that long random runs also
        reach review, completed and feedback (a random walk mostly gets
        cancelled first). Goes through the same rules as above."""
        happy_next = {
            "pending": lambda: self.assign("agent-1", None),
            "assigned": self.start,
            "in_progress": self.submit_for_review,
            "blocked": self.unblock,
            "review": lambda: self.complete(True),
            "completed": lambda: self.give_feedback(5),
            "failed": lambda: self.retry(False, None),
            "cancelled": self.start,  # nothing leads on from here: refused
        }
        for _ in range(steps):
            happy_next[self.model["status"]]()

    # --- invariants ---------------------------------------------------------

    @invariant()
    def matches_the_model(self):
        task, model = self.task, self.model
        assert task.status.value == model["status"]
        assert task.version == model["version"]
        assert task.attempt == model["attempt"]
        assert task.priority == model["priority"]
        assert task.agent_id == model["agent_id"]
        assert task.progress == model["progress"]

    @invariant()
    def version_counts_the_events(self):
        assert self.task.version == 1 + self.triggered
        assert len(self.task.pending_events) == self.task.version

    @invariant()
    def last_hash_is_the_hash_of_the_last_event(self):
        events = self.task.pending_events
        assert self.task.last_hash == events[-1].hash
        assert events[-1].hash == event_hash(type(events[-1]).__name__, dict(vars(events[-1])))

    @invariant()
    def events_form_a_hash_chain(self):
        events = self.task.pending_events
        assert events[0].prev_hash == GENESIS_HASH
        for previous, current in pairwise(events):
            assert current.prev_hash == previous.hash
        assert [e.originator_version for e in events] == list(range(1, len(events) + 1))

    @invariant()
    def replays_to_the_same_task(self):
        """Task.replay of the stored events (decoded by adapters/codec.py) builds what the
        library's mutate chain builds from them, and that is the task the commands built."""
        mapper = EventMapper(transcoder=None)  # type: ignore[arg-type]  # it encodes with msgspec itself
        stored = [mapper.to_stored_event(e) for e in self.task.pending_events]
        decoded = [decode_event(s.originator_id, s.originator_version, s.topic, s.state) for s in stored]
        assert [vars(e) for e in decoded] == [vars(mapper.to_domain_event(s)) for s in stored]
        assert [vars(e) for e in decoded] == [vars(e) for e in self.task.pending_events]
        library = None
        for e in decoded:
            library = e.mutate(library)
        replayed = Task.replay(decoded)
        assert type(replayed) is Task
        assert vars(replayed) == vars(library)
        assert {k: v for k, v in vars(replayed).items() if k != "_pending_events"} == {
            k: v for k, v in vars(self.task).items() if k != "_pending_events"
        }


TaskLifecycle.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    database=None,  # write nothing outside tests/unit
)
TestTaskLifecycle = TaskLifecycle.TestCase
