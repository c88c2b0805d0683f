"""Response shapes (request bodies are the domain's commands)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")


class Shape(msgspec.Struct, rename="camel", kw_only=True):
    """Base of every response shape: camelCase on the wire, nulls written out
    so that clients see every field the API documents."""


class Metadata(Shape, omit_defaults=True):
    request_id: str
    timestamp: datetime
    position: int | None = None


class Envelope(Shape, Generic[T]):
    success: bool
    data: T
    metadata: Metadata


class ErrorDetail(Shape):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorEnvelope(Shape):
    success: bool
    error: ErrorDetail
    metadata: Metadata


class CreatedTask(Shape):
    task_id: str
    status: str
    task: str
    agent_id: str | None
    agent_name: str | None
    team_id: str | None
    priority: str
    deadline: datetime | None
    estimated_completion: datetime | None
    estimated_duration: str | None
    deliverables: list[str]
    tracking_url: str
    created_at: datetime
    version: int


class Timeline(Shape):
    created_at: datetime
    assigned_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    cancelled_at: datetime | None
    updated_at: datetime
    duration: str | None
    duration_seconds: float | None


class Note(Shape):
    text: str
    created_at: datetime
    actor: str


class Feedback(Shape):
    rating: int
    feedback: str | None
    issues: list[str]
    created_at: datetime
    actor: str


class TaskView(Shape):
    task_id: str
    status: str
    task: str
    agent_id: str | None
    agent_name: str | None
    team_id: str | None
    priority: str
    progress: int
    current_phase: str | None
    deadline: datetime | None
    context: dict[str, Any]
    budget: dict[str, Any] | None
    expected_deliverables: list[str]
    timeline: Timeline
    result: dict[str, Any] | None
    deliverables: list[dict[str, Any]]
    quality: dict[str, Any] | None
    error: dict[str, Any] | None
    attempt: int
    notes: list[Note]
    feedback: list[Feedback]
    blocked_reason: str | None
    cancel_reason: str | None
    escalations: int
    estimated_completion: datetime | None
    estimated_duration: str | None
    tracking_url: str
    version: int


class TaskSummary(Shape):
    task_id: str
    status: str
    task: str
    agent_id: str | None
    agent_name: str | None
    team_id: str | None
    priority: str
    progress: int
    current_phase: str | None
    deadline: datetime | None
    created_at: datetime
    updated_at: datetime
    attempt: int
    version: int
    tracking_url: str


class TaskPage(Shape):
    tasks: list[TaskSummary]
    total: int
    limit: int
    offset: int
    has_more: bool
    next_cursor: str | None = None  # pass as ?cursor= for the next page


class DeliverableView(Shape):
    type: str
    name: str
    url: str | None
    download_url: str | None
    size: int | None
    format: str | None
    created_at: datetime | None


class Deliverables(Shape):
    task_id: str
    deliverables: list[DeliverableView]


class Health(Shape):
    status: str
