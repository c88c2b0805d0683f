"""The list view's fold: one row per task, kept from the task's events.

The fold is pure (row in, event in, row out); a store adapter loads the rows
a batch touches, folds the batch and writes each row once, with the batch's
last log position, in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone

from domain import task as ev
from domain.ids import public_id
from domain.statuses import Status, priority_rank

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def sortable_time(moment: datetime | None) -> str | None:
    """UTC, fixed width, so that text order is time order in any SQL store."""
    if moment is None:
        return None
    utc = moment.astimezone(timezone.utc)
    return f"{utc.year:04d}" + utc.strftime(TIME_FORMAT[2:])  # %Y does not pad years before 1000


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    tenant: str
    task: str
    status: str
    agent_id: str | None
    team_id: str | None
    priority: str
    priority_rank: int
    progress: int
    phase: str | None
    deadline: str | None
    created_at: str
    updated_at: str
    version: int
    attempt: int
    created_position: int
    position: int


COLUMNS: tuple[str, ...] = tuple(TaskRow.__dataclass_fields__)


def evolve(row: TaskRow | None, event: ev.TaskEvent, position: int) -> TaskRow | None:
    """The row after one event (None while the task is unknown to the view)."""
    if isinstance(event, ev.TaskCreated):
        return TaskRow(
            task_id=public_id(event.originator_id),
            tenant=event.tenant,
            task=event.task,
            status=Status.PENDING.value,
            agent_id=event.agent_id,
            team_id=event.team_id,
            priority=event.priority,
            priority_rank=priority_rank(event.priority),
            progress=0,
            phase=None,
            deadline=sortable_time(event.deadline),
            created_at=sortable_time(event.timestamp) or "",
            updated_at=sortable_time(event.timestamp) or "",
            version=event.originator_version,
            attempt=1,
            created_position=position,
            position=position,
        )
    if row is None or event.originator_version <= row.version:
        return row  # an event the row already reflects changes nothing
    row = replace(
        row,
        version=event.originator_version,
        updated_at=sortable_time(event.timestamp) or row.updated_at,
        position=position,
    )
    return _evolve_fields(row, event)


def _evolve_fields(row: TaskRow, event: ev.TaskEvent) -> TaskRow:
    match event:
        case ev.TaskAssigned(agent_id=agent_id, team_id=team_id):
            return replace(row, status="assigned", agent_id=agent_id, team_id=team_id or row.team_id)
        case ev.TaskStarted():
            return replace(row, status="in_progress", phase=row.phase or "started")
        case ev.ProgressReported(progress=progress, phase=phase):
            return replace(row, progress=progress, phase=phase if phase is not None else row.phase)
        case ev.TaskBlocked():
            return replace(row, status="blocked")
        case ev.TaskUnblocked():
            return replace(row, status="in_progress")
        case ev.SubmittedForReview():
            return replace(row, status="review", phase="review")
        case ev.ChangesRequested():
            return replace(row, status="in_progress", phase="changes requested")
        case ev.TaskCompleted():
            return replace(row, status="completed", progress=100, phase="completed")
        case ev.TaskFailed():
            return replace(row, status="failed", phase="failed")
        case ev.TaskCancelled():
            return replace(row, status="cancelled", phase="cancelled")
        case ev.TaskRetried(agent_id=agent_id, attempt=attempt):
            status = "assigned" if agent_id else "pending"
            return replace(row, status=status, agent_id=agent_id, attempt=attempt, progress=0, phase=None)
        case ev.TaskEscalated(priority=priority, team_id=team_id, agent_id=agent_id):
            return replace(
                row,
                priority=priority,
                priority_rank=priority_rank(priority),
                team_id=team_id if team_id is not None else row.team_id,
                agent_id=agent_id if agent_id is not None else row.agent_id,
            )
        case ev.TaskUpdated(priority=priority, deadline=deadline, clear_deadline=clear):
            if priority is not None:
                row = replace(row, priority=priority, priority_rank=priority_rank(priority))
            if clear:
                row = replace(row, deadline=None)
            elif deadline is not None:
                row = replace(row, deadline=sortable_time(deadline))
            return row
    return row  # FeedbackGiven and future events leave the list row as it was
