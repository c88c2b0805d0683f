"""The Task aggregate and its events.

Every command method checks its guards first and only then triggers one
event, so a refused command records nothing. Event classes are stored by
topic (``domain.task:TaskCreated``): their names and fields are a public
schema — add fields with defaults, never rename.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from domain import commands as c
from domain.errors import InvalidTransitionError, RuleViolationError
from domain.hashing import GENESIS_HASH, event_hash
from domain.statuses import ALLOWED_FROM, Status, next_priority, priority_rank


@dataclass(frozen=True)
class Actor:
    """Who is acting, through which request, on behalf of which tenant."""

    principal: str
    request_id: str
    tenant: str = "default"


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
        task.status = Status.PENDING
        task.progress = 0
        task.phase = None
        task.created_at = self.timestamp
        task.assigned_at = None
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
        """Create a task; with an agent named, assign it in the same commit."""
        task_id = task_id or uuid4()
        fields: dict[str, Any] = {
            "task": command.task,
            "agent_id": command.agent_id,
            "team_id": command.team_id,
            "context": dict(command.context),
            "priority": command.priority,
            "deadline": _utc(command.deadline),
            "deliverables": list(command.deliverables),
            "budget": command.budget,
        }
        timestamp = TaskCreated.create_timestamp()
        header = {
            "originator_topic": get_topic(cls),
            "originator_id": task_id,
            "originator_version": cls.INITIAL_VERSION,
            "timestamp": timestamp,
            "actor": by.principal,
            "request_id": by.request_id,
            "tenant": by.tenant,
            "prev_hash": GENESIS_HASH,
        }
        digest = event_hash("TaskCreated", {**header, **fields})
        task = cls._create(
            TaskCreated,
            id=task_id,
            timestamp=timestamp,
            actor=by.principal,
            request_id=by.request_id,
            tenant=by.tenant,
            prev_hash=GENESIS_HASH,
            hash=digest,
            **fields,
        )
        if command.agent_id is not None:
            task.assign(c.AssignTask(agent_id=command.agent_id, team_id=command.team_id), by)
        return task

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

    # --- event plumbing --------------------------------------------------

    def _trigger(self, event_class: type[TaskEvent], by: Actor, **fields: Any) -> None:
        """Trigger the next event, stamped with its actor and chained by hash."""
        timestamp = fields.pop("timestamp", None) or event_class.create_timestamp()
        header = {
            "originator_id": self.id,
            "originator_version": self.version + 1,
            "timestamp": timestamp,
            "actor": by.principal,
            "request_id": by.request_id,
            "tenant": self.tenant,
            "prev_hash": self.last_hash,
        }
        digest = event_hash(event_class.__name__, {**header, **fields})
        self.trigger_event(
            event_class,
            timestamp=timestamp,
            actor=by.principal,
            request_id=by.request_id,
            tenant=self.tenant,
            prev_hash=self.last_hash,
            hash=digest,
            **fields,
        )

