"""The Task aggregate and its events.

Every command method checks its guards first and only then triggers one
event, so a refused command records nothing. Event classes are stored by
topic (``domain.task:TaskCreated``): their names and fields are a public
schema — add fields with defaults, never rename.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate, OriginatorIDError, OriginatorVersionError
from eventsourcing.utils import get_topic

from domain import commands as c
from domain.errors import InvalidTransitionError, RuleViolationError
from domain.hashing import GENESIS_HASH, event_hash
from domain.ids import new_id
from domain.statuses import ALLOWED_FROM, Status, next_priority, priority_rank


@dataclass(frozen=True)
class Actor:
    """Who is acting, through which request, on behalf of which tenant."""

    principal: str
    request_id: str
    tenant: str = "default"


E = TypeVar("E", bound="TaskEvent")


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(timezone.utc)


class TaskEvent(Aggregate.Event):
    """Base of every task event: who did it, through which request, for which
    tenant, and the link in the task's hash chain."""

    actor: str
    request_id: str
    tenant: str
    prev_hash: str
    hash: str

    def apply(self, task: Task) -> None:
        self.evolve(task)
        task.last_hash = self.hash
        task.updated_at = self.timestamp

    def evolve(self, task: Task) -> None:
        """Change the task's state as this event says (each event type defines it)."""


class TaskCreated(TaskEvent, Aggregate.Created):
    task: str
    agent_id: str | None
    team_id: str | None
    context: dict[str, Any]
    priority: str
    deadline: datetime | None
    deliverables: list[str]
    budget: dict[str, Any] | None
    # True when the task was created already assigned to ``agent_id``: one event for the one
    # command. Created events stored before this field existed lack it and read False (this
    # default); a TaskAssigned event after them assigned their agent.
    assigned: bool = False

    @property
    def status_after(self) -> Status:
        """The status a task starts in (the views start their rows in it too)."""
        return Status.ASSIGNED if self.assigned else Status.PENDING

    def evolve(self, task: Task) -> None:
        task.tenant = self.tenant
        task.description = self.task
        task.agent_id = self.agent_id
        task.team_id = self.team_id
        task.context = dict(self.context)
        task.priority = self.priority
        task.deadline = self.deadline
        task.expected_deliverables = list(self.deliverables)
        task.budget = self.budget
        task.status = self.status_after
        task.progress = 0
        task.phase = None
        task.created_at = self.timestamp
        task.assigned_at = self.timestamp if self.assigned else None
        task.started_at = None
        task.completed_at = None
        task.failed_at = None
        task.cancelled_at = None
        task.result = None
        task.deliverables = []
        task.quality = None
        task.error = None
        task.attempt = 1
        task.notes = []
        task.feedback = []
        task.blocked_reason = None
        task.cancel_reason = None
        task.review_note = None
        task.changes_requested = None
        task.escalations = 0
        task.previous_agent_ids = []


class TaskAssigned(TaskEvent):
    agent_id: str
    team_id: str | None

    def evolve(self, task: Task) -> None:
        if task.agent_id and task.agent_id != self.agent_id:
            task.previous_agent_ids.append(task.agent_id)
        task.agent_id = self.agent_id
        if self.team_id is not None:
            task.team_id = self.team_id
        task.status = Status.ASSIGNED
        task.assigned_at = self.timestamp


class TaskStarted(TaskEvent):
    note: str | None

    def evolve(self, task: Task) -> None:
        task.status = Status.IN_PROGRESS
        if task.started_at is None:
            task.started_at = self.timestamp
        task.phase = task.phase or "started"


class ProgressReported(TaskEvent):
    progress: int
    phase: str | None
    note: str | None

    def evolve(self, task: Task) -> None:
        task.progress = self.progress
        if self.phase is not None:
            task.phase = self.phase


class TaskBlocked(TaskEvent):
    reason: str

    def evolve(self, task: Task) -> None:
        task.status = Status.BLOCKED
        task.blocked_reason = self.reason


class TaskUnblocked(TaskEvent):
    note: str | None

    def evolve(self, task: Task) -> None:
        task.status = Status.IN_PROGRESS
        task.blocked_reason = None


class SubmittedForReview(TaskEvent):
    note: str | None

    def evolve(self, task: Task) -> None:
        task.status = Status.REVIEW
        task.phase = "review"
        task.review_note = self.note


class ChangesRequested(TaskEvent):
    reason: str

    def evolve(self, task: Task) -> None:
        task.status = Status.IN_PROGRESS
        task.phase = "changes requested"
        task.changes_requested = self.reason


class TaskCompleted(TaskEvent):
    result: dict[str, Any] | None
    deliverables: list[dict[str, Any]]
    quality: dict[str, Any] | None

    def evolve(self, task: Task) -> None:
        task.status = Status.COMPLETED
        task.progress = 100
        task.phase = "completed"
        task.completed_at = self.timestamp
        task.result = self.result
        task.deliverables = [dict(d) for d in self.deliverables]
        task.quality = self.quality


class TaskFailed(TaskEvent):
    error: dict[str, Any]

    def evolve(self, task: Task) -> None:
        task.status = Status.FAILED
        task.phase = "failed"
        task.failed_at = self.timestamp
        task.error = dict(self.error)


class TaskCancelled(TaskEvent):
    reason: str | None

    def evolve(self, task: Task) -> None:
        task.status = Status.CANCELLED
        task.phase = "cancelled"
        task.cancelled_at = self.timestamp
        task.cancel_reason = self.reason


class TaskRetried(TaskEvent):
    attempt: int
    reassign: bool
    agent_id: str | None
    context: dict[str, Any] | None

    def evolve(self, task: Task) -> None:
        if self.reassign and task.agent_id:
            task.previous_agent_ids.append(task.agent_id)
        task.agent_id = self.agent_id
        task.attempt = self.attempt
        if self.context:
            task.context = {**task.context, **self.context}
        task.status = Status.ASSIGNED if self.agent_id else Status.PENDING
        task.progress = 0
        task.phase = None
        task.error = None
        task.failed_at = None
        task.started_at = None
        task.blocked_reason = None
        task.assigned_at = self.timestamp if self.agent_id else None


class TaskEscalated(TaskEvent):
    reason: str
    priority: str
    previous_priority: str
    team_id: str | None
    agent_id: str | None

    def evolve(self, task: Task) -> None:
        task.priority = self.priority
        if self.team_id is not None:
            task.team_id = self.team_id
        if self.agent_id is not None and self.agent_id != task.agent_id:
            if task.agent_id:
                task.previous_agent_ids.append(task.agent_id)
            task.agent_id = self.agent_id
        task.escalations += 1


class TaskUpdated(TaskEvent):
    priority: str | None
    deadline: datetime | None
    clear_deadline: bool
    context: dict[str, Any] | None
    notes: str | None

    def evolve(self, task: Task) -> None:
        if self.priority is not None:
            task.priority = self.priority
        if self.clear_deadline:
            task.deadline = None
        elif self.deadline is not None:
            task.deadline = self.deadline
        if self.context:
            task.context = {**task.context, **self.context}
        if self.notes is not None:
            task.notes.append(
                {"text": self.notes, "createdAt": self.timestamp, "actor": self.actor}
            )


class FeedbackGiven(TaskEvent):
    rating: int
    feedback: str | None
    issues: list[str]

    def evolve(self, task: Task) -> None:
        task.feedback.append(
            {
                "rating": self.rating,
                "feedback": self.feedback,
                "issues": list(self.issues),
                "createdAt": self.timestamp,
                "actor": self.actor,
            }
        )


EVENT_TYPES: tuple[type[TaskEvent], ...] = (
    TaskCreated,
    TaskAssigned,
    TaskStarted,
    ProgressReported,
    TaskBlocked,
    TaskUnblocked,
    SubmittedForReview,
    ChangesRequested,
    TaskCompleted,
    TaskFailed,
    TaskCancelled,
    TaskRetried,
    TaskEscalated,
    TaskUpdated,
    FeedbackGiven,
)


class Task(Aggregate):
    """A unit of work done by an agent or a team, from creation to its end."""

    # State set by the events' apply() methods (declared for readers and mypy).
    tenant: str
    description: str
    agent_id: str | None
    team_id: str | None
    context: dict[str, Any]
    priority: str
    deadline: datetime | None
    expected_deliverables: list[str]
    budget: dict[str, Any] | None
    status: Status
    progress: int
    phase: str | None
    created_at: datetime
    assigned_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    cancelled_at: datetime | None
    result: dict[str, Any] | None
    deliverables: list[dict[str, Any]]
    quality: dict[str, Any] | None
    error: dict[str, Any] | None
    attempt: int
    notes: list[dict[str, Any]]
    feedback: list[dict[str, Any]]
    blocked_reason: str | None
    cancel_reason: str | None
    review_note: str | None
    changes_requested: str | None
    escalations: int
    previous_agent_ids: list[str]
    last_hash: str
    updated_at: datetime

    def __init__(self) -> None:
        """State is set by TaskCreated.evolve(), so that replay and creation agree."""

    # --- creation -------------------------------------------------------

    @classmethod
    def create(cls, command: c.CreateTask, by: Actor, task_id: UUID | None = None) -> Task:
        """Create a task; with an agent named, it is created assigned to that agent, in the one
        TaskCreated event. (It used to be TaskCreated then TaskAssigned: the second event, built,
        hashed, mapped and stored, was 16% of a create's instructions; README: "One event a create".)

        What the library's ``Aggregate._create`` does, without its generic machinery
        (a third of a create's CPU on the writer thread): the same TaskCreated event,
        the same task state, the same pending event."""
        task_id = task_id or new_id()
        timestamp = TaskCreated.create_timestamp()
        state: dict[str, Any] = {
            "originator_id": task_id,
            "originator_version": cls.INITIAL_VERSION,
            "timestamp": timestamp,
            "originator_topic": get_topic(cls),
            "actor": by.principal,
            "request_id": by.request_id,
            "tenant": by.tenant,
            "prev_hash": GENESIS_HASH,
            "task": command.task,
            "agent_id": command.agent_id,
            "team_id": command.team_id,
            "context": dict(command.context),
            "priority": command.priority,
            "deadline": _utc(command.deadline),
            "deliverables": list(command.deliverables),
            "budget": command.budget,
            "assigned": command.agent_id is not None,
        }
        state["hash"] = event_hash("TaskCreated", state)
        created = new_event(TaskCreated, state)
        task = cls._started(created)
        task._pending_events.append(created)
        return task

    @classmethod
    def replay(cls, events: Iterable[TaskEvent]) -> Task | None:
        """The task its events make, oldest first; None for no events.

        What the library's ``Aggregate.Created.mutate`` and ``Event.mutate`` chain does
        (the repository's replay), without its generic machinery (its topic resolution and
        keyword filtering per event, two thirds of a GET's replay): the first event must
        create the task, each next one must belong to it and be its next version."""
        task: Task | None = None
        for event in events:
            if task is None:
                if not isinstance(event, TaskCreated) or event.originator_topic != get_topic(cls):
                    raise TypeError(f"a task's first event must create it, not {type(event).__name__}")
                task = cls._started(event)
                continue
            if isinstance(event, TaskCreated):
                raise TypeError(f"task {task._id} was created twice (version {event.originator_version})")
            if event.originator_id != task._id:
                raise OriginatorIDError(event.originator_id, task._id)
            if event.originator_version != task._version + 1:
                raise OriginatorVersionError(event.originator_version, task._version + 1)
            task._advance(event)
        return task

    @classmethod
    def _started(cls, created: TaskCreated) -> Task:
        """The task as its creation event makes it (what ``Aggregate.Created.mutate`` does),
        with no pending events."""
        task = cls.__new__(cls)
        task._id = created.originator_id
        task._version = created.originator_version
        task._created_on = created.timestamp
        task._modified_on = created.timestamp
        task._pending_events = []
        created.apply(task)
        return task

    def _advance(self, event: TaskEvent) -> None:
        """Apply the task's next event (what ``Event.mutate`` does): first the change, so that a
        failing apply changes nothing, then the version and the time of the last change."""
        event.apply(self)
        self._version = event.originator_version
        self._modified_on = event.timestamp

    def clone(self) -> Task:
        """A copy that later commands can change without changing this one (which an
        earlier request may still be presenting). The lists events append to are copied;
        everything else is rebound, never changed in place, when an event applies."""
        copy = object.__new__(Task)
        copy.__dict__.update(self.__dict__)
        copy.previous_agent_ids = list(self.previous_agent_ids)
        copy.notes = list(self.notes)
        copy.feedback = list(self.feedback)
        copy._pending_events = list(self._pending_events)
        return copy

    # --- guards -----------------------------------------------------------

    def check_allowed(self, command: str) -> None:
        """Refuse a command that the current status does not allow."""
        allowed = ALLOWED_FROM[command]
        if self.status not in allowed:
            raise InvalidTransitionError(command, self.status.value, frozenset(s.value for s in allowed))

    # --- commands ---------------------------------------------------------

    def assign(self, command: c.AssignTask, by: Actor) -> None:
        self.check_allowed("assign")
        self._trigger(TaskAssigned, by, agent_id=command.agent_id, team_id=command.team_id)

    def start(self, command: c.StartTask, by: Actor) -> None:
        self.check_allowed("start")
        self._trigger(TaskStarted, by, note=command.note)

    def report_progress(self, command: c.ReportProgress, by: Actor) -> None:
        self.check_allowed("report_progress")
        self._trigger(
            ProgressReported, by, progress=command.progress, phase=command.phase, note=command.note
        )

    def block(self, command: c.BlockTask, by: Actor) -> None:
        self.check_allowed("block")
        self._trigger(TaskBlocked, by, reason=command.reason)

    def unblock(self, command: c.UnblockTask, by: Actor) -> None:
        self.check_allowed("unblock")
        self._trigger(TaskUnblocked, by, note=command.note)

    def submit_for_review(self, command: c.SubmitForReview, by: Actor) -> None:
        self.check_allowed("submit_for_review")
        self._trigger(SubmittedForReview, by, note=command.note)

    def request_changes(self, command: c.RequestChanges, by: Actor) -> None:
        self.check_allowed("request_changes")
        self._trigger(ChangesRequested, by, reason=command.reason)

    def complete(self, command: c.CompleteTask, by: Actor) -> None:
        self.check_allowed("complete")
        now = TaskCompleted.create_timestamp()
        deliverables = []
        for item in command.deliverables:
            data = c.to_data(item)
            data.setdefault("createdAt", c.to_data(now))
            deliverables.append(data)
        self._trigger(
            TaskCompleted,
            by,
            timestamp=now,
            result=None if command.result is None else c.to_data(command.result),
            deliverables=deliverables,
            quality=None if command.quality is None else c.to_data(command.quality),
        )

    def fail(self, command: c.FailTask, by: Actor) -> None:
        self.check_allowed("fail")
        self._trigger(TaskFailed, by, error=c.to_data(command.error))

    def cancel(self, command: c.CancelTask, by: Actor) -> None:
        self.check_allowed("cancel")
        self._trigger(TaskCancelled, by, reason=command.reason)

    def retry(self, command: c.RetryTask, by: Actor) -> None:
        self.check_allowed("retry")
        self._trigger(
            TaskRetried,
            by,
            attempt=self.attempt + 1,
            reassign=command.reassign,
            agent_id=None if command.reassign else self.agent_id,
            context=command.context,
        )

    def escalate(self, command: c.EscalateTask, by: Actor) -> None:
        self.check_allowed("escalate")
        if command.priority is None:
            priority = next_priority(self.priority)
        elif priority_rank(command.priority) < priority_rank(self.priority):
            raise RuleViolationError(
                "priority",
                f"escalation cannot lower the priority from {self.priority} to {command.priority}",
            )
        else:
            priority = command.priority
        self._trigger(
            TaskEscalated,
            by,
            reason=command.reason,
            priority=priority,
            previous_priority=self.priority,
            team_id=command.team_id,
            agent_id=command.agent_id,
        )

    def update(self, command: c.UpdateTask, by: Actor) -> None:
        if command.is_empty():
            raise RuleViolationError("$", "nothing to update: give priority, deadline, context or notes")
        self.check_allowed("update")
        deadline = command.deadline
        self._trigger(
            TaskUpdated,
            by,
            priority=None if command.priority is c.UNSET else command.priority,
            deadline=None if deadline is c.UNSET or deadline is None else _utc(deadline),
            clear_deadline=deadline is None,
            context=None if command.context is c.UNSET else dict(command.context),
            notes=None if command.notes is c.UNSET else command.notes,
        )

    def give_feedback(self, command: c.GiveFeedback, by: Actor) -> None:
        self.check_allowed("give_feedback")
        self._trigger(
            FeedbackGiven,
            by,
            rating=command.rating,
            feedback=command.feedback,
            issues=list(command.issues),
        )

    def handle(self, command: c.Command, by: Actor) -> None:
        """Run the command that this command struct names (HANDLERS): how a command that came
        as data — over HTTP, or from another process — reaches its method."""
        try:
            method = HANDLERS[type(command)]
        except KeyError:
            raise TypeError(f"no task command takes a {type(command).__name__}") from None
        method(self, command, by)

    # --- event plumbing --------------------------------------------------

    def _trigger(self, event_class: type[TaskEvent], by: Actor, **fields: Any) -> None:
        """Trigger the next event, stamped with its actor and chained by hash: what the
        library's ``trigger_event`` and ``Event.mutate`` do, without their generic machinery."""
        timestamp = fields.pop("timestamp", None) or event_class.create_timestamp()
        version = self._version + 1
        state: dict[str, Any] = {
            "originator_id": self._id,
            "originator_version": version,
            "timestamp": timestamp,
            "actor": by.principal,
            "request_id": by.request_id,
            "tenant": self.tenant,
            "prev_hash": self.last_hash,
            **fields,
        }
        state["hash"] = event_hash(event_class.__name__, state)
        event = new_event(event_class, state)
        self._advance(event)
        self._pending_events.append(event)


HANDLERS: dict[type[c.Command], Callable[[Task, Any, Actor], None]] = {
    c.AssignTask: Task.assign,
    c.StartTask: Task.start,
    c.ReportProgress: Task.report_progress,
    c.BlockTask: Task.block,
    c.UnblockTask: Task.unblock,
    c.SubmitForReview: Task.submit_for_review,
    c.RequestChanges: Task.request_changes,
    c.CompleteTask: Task.complete,
    c.FailTask: Task.fail,
    c.CancelTask: Task.cancel,
    c.RetryTask: Task.retry,
    c.EscalateTask: Task.escalate,
    c.UpdateTask: Task.update,
    c.GiveFeedback: Task.give_feedback,
}


@cache
def _field_names(event_class: type[TaskEvent]) -> tuple[tuple[str, ...], frozenset[str]]:
    names = tuple(f.name for f in dataclasses.fields(event_class))  # type: ignore[arg-type]
    return names, frozenset(names)


def new_event(event_class: type[E], state: dict[str, Any]) -> E:
    """The event with exactly these fields, as the event's frozen-dataclass __init__ would
    build it (its fields in declaration order) but without its one object.__setattr__ per
    field — the way the library's mappers restore a stored event."""
    names, known = _field_names(event_class)
    if state.keys() != known:
        missing, unknown = sorted(known - state.keys()), sorted(state.keys() - known)
        raise TypeError(f"cannot construct {event_class.__name__}: missing {missing}, unknown {unknown}")
    if not isinstance(state["originator_id"], UUID):
        raise TypeError(f"{event_class.__name__} was given a non-UUID originator_id: {state['originator_id']!r}")
    event = object.__new__(event_class)
    object.__setattr__(event, "__dict__", {name: state[name] for name in names})
    return event
