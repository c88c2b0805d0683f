"""The list view's fold: one row per task, kept from the task's events.

``evolve`` is the pure fold (row in, event in, row out). A store adapter uses
``apply``, the same fold in place on rows it owns for one batch (a copy per
event would cost more than the rest of a rebuild), then writes each touched
row once, with the batch's last log position, in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from domain import task as ev
from domain.ids import public_id
from domain.statuses import priority_rank

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
TERMINAL = frozenset({"completed", "cancelled"})


def sortable_time(moment: datetime | None) -> str | None:
    """UTC, fixed width, so that text order is time order in any SQL store."""
    if moment is None:
        return None
    text = moment.isoformat(timespec="microseconds")
    if text.endswith("+00:00"):
        return text[:-6] + "Z"
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@dataclass(slots=True)
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
    notes: str = ""  # every note's text, one per line, for full-text search

    def search_text(self) -> str:
        return f"{self.task}\n{self.notes}" if self.notes else self.task

    def is_overdue(self, now: str) -> bool:
        return self.deadline is not None and self.deadline < now and self.status not in TERMINAL


COLUMNS: tuple[str, ...] = tuple(TaskRow.__dataclass_fields__)


def created_row(event: ev.TaskCreated, position: int) -> TaskRow:
    at = sortable_time(event.timestamp) or ""
    return TaskRow(
        task_id=public_id(event.originator_id),
        tenant=event.tenant,
        task=event.task,
        status=event.status_after.value,
        agent_id=event.agent_id,
        team_id=event.team_id,
        priority=event.priority,
        priority_rank=priority_rank(event.priority),
        progress=0,
        phase=None,
        deadline=sortable_time(event.deadline),
        created_at=at,
        updated_at=at,
        version=event.originator_version,
        attempt=1,
        created_position=position,
        position=position,
    )


def evolve(row: TaskRow | None, event: ev.TaskEvent, position: int) -> TaskRow | None:
    """The row after one event (None while the task is unknown to the view)."""
    if isinstance(event, ev.TaskCreated):
        return created_row(event, position)
    if row is None or event.originator_version <= row.version:
        return row
    row = replace(row)
    apply(row, event, position)
    return row


def apply(row: TaskRow, event: ev.TaskEvent, position: int) -> bool:
    """Fold one later event into ``row`` in place; False when the row already reflects it."""
    if event.originator_version <= row.version:
        return False
    row.version = event.originator_version
    row.updated_at = sortable_time(event.timestamp) or row.updated_at
    row.position = position
    change = _CHANGES.get(type(event))
    if change is not None:
        change(row, event)
    return True  # FeedbackGiven and future events only move version and updatedAt


def _assigned(row: TaskRow, e: ev.TaskAssigned) -> None:
    row.status, row.agent_id = "assigned", e.agent_id
    if e.team_id:
        row.team_id = e.team_id


def _started(row: TaskRow, e: ev.TaskStarted) -> None:
    row.status, row.phase = "in_progress", row.phase or "started"


def _progress(row: TaskRow, e: ev.ProgressReported) -> None:
    row.progress = e.progress
    if e.phase is not None:
        row.phase = e.phase


def _status(status: str, phase: str | None = None) -> Callable[[TaskRow, ev.TaskEvent], None]:
    def change(row: TaskRow, e: ev.TaskEvent) -> None:
        row.status = status
        if phase is not None:
            row.phase = phase
    return change


def _completed(row: TaskRow, e: ev.TaskCompleted) -> None:
    row.status, row.progress, row.phase = "completed", 100, "completed"


def _retried(row: TaskRow, e: ev.TaskRetried) -> None:
    row.status = "assigned" if e.agent_id else "pending"
    row.agent_id, row.attempt, row.progress, row.phase = e.agent_id, e.attempt, 0, None


def _escalated(row: TaskRow, e: ev.TaskEscalated) -> None:
    row.priority, row.priority_rank = e.priority, priority_rank(e.priority)
    if e.team_id is not None:
        row.team_id = e.team_id
    if e.agent_id is not None:
        row.agent_id = e.agent_id


def _updated(row: TaskRow, e: ev.TaskUpdated) -> None:
    if e.priority is not None:
        row.priority, row.priority_rank = e.priority, priority_rank(e.priority)
    if e.clear_deadline:
        row.deadline = None
    elif e.deadline is not None:
        row.deadline = sortable_time(e.deadline)
    if e.notes is not None:
        row.notes = f"{row.notes}\n{e.notes}" if row.notes else e.notes


_CHANGES: dict[type, Callable[[TaskRow, ev.TaskEvent], None]] = {  # type: ignore[dict-item]
    ev.TaskAssigned: _assigned,
    ev.TaskStarted: _started,
    ev.ProgressReported: _progress,
    ev.TaskBlocked: _status("blocked"),
    ev.TaskUnblocked: _status("in_progress"),
    ev.SubmittedForReview: _status("review", "review"),
    ev.ChangesRequested: _status("in_progress", "changes requested"),
    ev.TaskCompleted: _completed,
    ev.TaskFailed: _status("failed", "failed"),
    ev.TaskCancelled: _status("cancelled", "cancelled"),
    ev.TaskRetried: _retried,
    ev.TaskEscalated: _escalated,
    ev.TaskUpdated: _updated,
}
