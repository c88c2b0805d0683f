"""From domain state and view rows to the API's response shapes."""

from __future__ import annotations

import mimetypes
from datetime import datetime
from typing import Any

from adapters.http import schemas as s
from domain.ids import public_id
from domain.task import Task
from projections.task_list import TaskRow


def agent_name(agent_id: str | None) -> str | None:
    """A display name for an agent id ("amy" → "Amy") until agents have profiles."""
    if not agent_id:
        return None
    return " ".join(part.capitalize() for part in agent_id.replace("_", "-").split("-") if part)


def human_duration(seconds: float) -> str:
    """'3.5 hours', '12 minutes', '40 seconds', '2 days' — the seed's style."""
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            amount = round(seconds / size, 1)
            text = f"{amount:g}"
            return f"{text} {unit}" + ("" if text == "1" else "s")
    whole = round(seconds)
    return f"{whole} second" + ("" if whole == 1 else "s")


def tracking_url(base_url: str, task_id: str) -> str:
    return f"{base_url.rstrip('/')}/agents/tasks/{task_id}"


def created(task: Task, base_url: str) -> s.CreatedTask:
    task_id = public_id(task.id)
    return s.CreatedTask(
        task_id=task_id,
        status=task.status.value,
        task=task.description,
        agent_id=task.agent_id,
        agent_name=agent_name(task.agent_id),
        team_id=task.team_id,
        priority=task.priority,
        deadline=task.deadline,
        estimated_completion=None,
        estimated_duration=None,
        deliverables=list(task.expected_deliverables),
        tracking_url=tracking_url(base_url, task_id),
        created_at=task.created_at,
        version=task.version,
    )


_NAMES_KEPT = 4096  # agent ids come from clients: the memo below is emptied when full
_names: dict[str | None, str | None] = {}


def _agent_name(agent_id: str | None) -> str | None:
    """agent_name(), remembered: a GET of an uncached task asks for the same few agents' names."""
    try:
        return _names[agent_id]
    except KeyError:
        if len(_names) >= _NAMES_KEPT:
            _names.clear()
        name = _names[agent_id] = agent_name(agent_id)
        return name


def task_view(task: Task, base_url: str) -> s.TaskView:
    task_id = public_id(task.id)
    ended = task.completed_at
    duration = (ended - task.started_at).total_seconds() if ended and task.started_at else None
    notes, feedback = task.notes, task.feedback
    return s.TaskView(
        task_id=task_id,
        status=task.status.value,
        task=task.description,
        agent_id=task.agent_id,
        agent_name=_agent_name(task.agent_id),
        team_id=task.team_id,
        priority=task.priority,
        progress=task.progress,
        current_phase=task.phase,
        deadline=task.deadline,
        context=task.context,
        budget=task.budget,
        expected_deliverables=list(task.expected_deliverables),
        timeline=s.Timeline(
            created_at=task.created_at,
            assigned_at=task.assigned_at,
            started_at=task.started_at,
            completed_at=task.completed_at,
            failed_at=task.failed_at,
            cancelled_at=task.cancelled_at,
            updated_at=task.updated_at,
            duration=None if duration is None else human_duration(duration),
            duration_seconds=duration,
        ),
        result=task.result,
        deliverables=task.deliverables,
        quality=task.quality,
        error=task.error,
        attempt=task.attempt,
        notes=[s.Note(**note) for note in _snake(notes)] if notes else [],
        feedback=[s.Feedback(**item) for item in _snake(feedback)] if feedback else [],
        blocked_reason=task.blocked_reason,
        cancel_reason=task.cancel_reason,
        escalations=task.escalations,
        estimated_completion=None,
        estimated_duration=None,
        tracking_url=tracking_url(base_url, task_id),
        version=task.version,
    )


def summary(row: TaskRow, base_url: str) -> s.TaskSummary:
    return s.TaskSummary(
        task_id=row.task_id,
        status=row.status,
        task=row.task,
        agent_id=row.agent_id,
        agent_name=agent_name(row.agent_id),
        team_id=row.team_id,
        priority=row.priority,
        progress=row.progress,
        current_phase=row.phase,
        deadline=None if row.deadline is None else datetime.fromisoformat(row.deadline),
        created_at=datetime.fromisoformat(row.created_at),
        updated_at=datetime.fromisoformat(row.updated_at),
        attempt=row.attempt,
        version=row.version,
        tracking_url=tracking_url(base_url, row.task_id),
    )


def deliverables(task: Task) -> s.Deliverables:
    return s.Deliverables(
        task_id=public_id(task.id),
        deliverables=[_deliverable(item) for item in task.deliverables],
    )


def _deliverable(item: dict[str, Any]) -> s.DeliverableView:
    created_at = item.get("createdAt")
    return s.DeliverableView(
        type=item["type"],
        name=item["name"],
        url=item.get("url"),
        download_url=item.get("downloadUrl") or item.get("url"),
        size=item.get("size"),
        format=item.get("format") or mimetypes.guess_type(item["name"])[0],
        created_at=None if created_at is None else datetime.fromisoformat(created_at),
    )


def _snake(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"created_at" if k == "createdAt" else k: v for k, v in item.items()} for item in items]
