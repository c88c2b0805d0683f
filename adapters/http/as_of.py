"""A task as it stood at a version or a moment: ``GET /agents/tasks/{id}?version=N`` or ``?asOf=<time>``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from starlette.requests import Request

from adapters.http.errors import ApiError, validation_details
from domain.application import TaskApplication
from domain.task import Task


class TaskAt(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """Which state of the task to show: the current one unless a version or a time is given."""

    version: Annotated[int, msgspec.Meta(ge=1)] | None = None
    as_of: datetime | None = None


def task_at_query(request: Request) -> TaskAt:
    """The query decoded; a bad value gets 422 naming its field."""
    try:
        at = msgspec.convert(dict(request.query_params), TaskAt, strict=False)
    except msgspec.ValidationError as error:
        message, details = validation_details(error, "query")
        raise ApiError(422, "validation_error", message, details) from None
    if at.version is not None and at.as_of is not None:
        raise ApiError(422, "validation_error", "give version or asOf, not both",
                       {"field": "$.asOf", "in": "query", "reason": "version and asOf exclude each other"})
    if at.as_of is not None and at.as_of.tzinfo is None:
        at = msgspec.structs.replace(at, as_of=at.as_of.replace(tzinfo=UTC))
    return at


def task_at(app: TaskApplication, task_id: str, tenant: str, at: TaskAt) -> Task:
    """The task now, at a version, or as it stood at a moment (the last event at or before it)."""
    current = app.get_task(task_id, tenant)
    version = at.version
    if at.as_of is not None:
        times = [(e.originator_version, e.timestamp) for e in app.history(task_id, tenant)]
        version = max((v for v, moment in times if moment <= at.as_of), default=None)
        if version is None:
            raise ApiError(404, "not_found", f"task {task_id} did not exist yet at {at.as_of.isoformat()}",
                           {"taskId": task_id, "asOf": at.as_of.isoformat(), "createdAt": times[0][1].isoformat()})
    if version is None or version == current.version:
        return current
    if version > current.version:
        raise ApiError(404, "not_found", f"task {task_id} has no version {version}; it is at {current.version}",
                       {"taskId": task_id, "version": version, "currentVersion": current.version})
    return app.get_task(task_id, tenant, version=version)
