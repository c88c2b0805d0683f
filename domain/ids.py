"""Public task ids (``task_<32 hex>``) and the UUIDs the event store keys by."""

from __future__ import annotations

from uuid import UUID

from domain.errors import TaskNotFoundError

PREFIX = "task_"


def public_id(task_uuid: UUID) -> str:
    return f"{PREFIX}{task_uuid.hex}"


def parse_id(task_id: str) -> UUID:
    """The UUID behind a public id; an id of the wrong shape is simply not found."""
    if not task_id.startswith(PREFIX) or len(task_id) != len(PREFIX) + 32:
        raise TaskNotFoundError(task_id)
    try:
        return UUID(hex=task_id[len(PREFIX):])
    except ValueError:
        raise TaskNotFoundError(task_id) from None
