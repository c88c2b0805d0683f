"""Commands: what a caller asks the domain to do, as validated msgspec structs.

These are also the HTTP request bodies (one definition per shape), so their
field names are camelCase on the wire and their constraints are the API's.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

Priority = Literal["low", "medium", "high", "urgent"]
PRIORITIES: tuple[str, ...] = ("low", "medium", "high", "urgent")

Identifier = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$",
        description="Letters, digits and . _ : @ - ; starts with a letter or digit.",
    ),
]
ShortText = Annotated[str, Meta(min_length=1, max_length=2_000)]
LongText = Annotated[str, Meta(min_length=1, max_length=20_000)]
Label = Annotated[str, Meta(min_length=1, max_length=200)]
Instant = Annotated[datetime, Meta(tz=True, description="ISO 8601 with a time zone")]
Fraction = Annotated[float, Meta(ge=0, le=1)]
JSONObject = dict[str, Any]


def check_instant(moment: Any, field: str) -> None:
    """Refuse a time that has no UTC form (year 1 east of Greenwich, year 9999 west of it)."""
    if isinstance(moment, datetime):
        try:
            moment.astimezone(timezone.utc)
        except OverflowError:
            raise ValueError(f"{field} is out of range once converted to UTC") from None


class Command(
    msgspec.Struct,
    rename="camel",
    forbid_unknown_fields=True,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
):
    """Base of every command: camelCase on the wire, and unknown fields are
    refused so that a misspelt field is an error instead of being ignored."""


class CreateTask(Command):
    task: LongText
    agent_id: Identifier | None = None
    team_id: Identifier | None = None
    context: JSONObject = {}
    priority: Priority = "medium"
    deadline: Instant | None = None
    deliverables: Annotated[list[Label], Meta(max_length=100)] = []
    budget: JSONObject | None = None

    def __post_init__(self) -> None:
        check_instant(self.deadline, "deadline")


class UpdateTask(Command):
    priority: Priority | UnsetType = UNSET
    deadline: Instant | None | UnsetType = UNSET
    context: JSONObject | UnsetType = UNSET
    notes: LongText | UnsetType = UNSET

    def __post_init__(self) -> None:
        check_instant(self.deadline, "deadline")

    def is_empty(self) -> bool:
        return all(
            value is UNSET
            for value in (self.priority, self.deadline, self.context, self.notes)
        )


class CancelTask(Command):
    reason: ShortText | None = None


class RetryTask(Command):
    reassign: bool = False
    context: JSONObject | None = None


class GiveFeedback(Command):
    rating: Annotated[int, Meta(ge=1, le=5)]
    feedback: LongText | None = None
    issues: Annotated[list[ShortText], Meta(max_length=100)] = []


class AssignTask(Command):
    agent_id: Identifier
    team_id: Identifier | None = None


class StartTask(Command):
    note: ShortText | None = None


class ReportProgress(Command):
    progress: Annotated[int, Meta(ge=0, le=100)]
    phase: Label | None = None
    note: ShortText | None = None


class BlockTask(Command):
    reason: ShortText


class UnblockTask(Command):
    note: ShortText | None = None


class SubmitForReview(Command):
    note: ShortText | None = None


class RequestChanges(Command):
    reason: ShortText


class Deliverable(Command):
    type: Label
    name: Label
    url: Annotated[str, Meta(max_length=2_000)] | None = None
    download_url: Annotated[str, Meta(max_length=2_000)] | None = None
    size: Annotated[int, Meta(ge=0)] | None = None
    format: Label | None = None
    created_at: Instant | None = None

    def __post_init__(self) -> None:
        check_instant(self.created_at, "createdAt")


class Result(Command):
    summary: LongText | None = None
    insights: Annotated[list[ShortText], Meta(max_length=200)] = []
    recommendations: Annotated[list[ShortText], Meta(max_length=200)] = []
    data: JSONObject | None = None


class Quality(Command):
    score: Fraction | None = None
    accuracy: Fraction | None = None
    completeness: Fraction | None = None
    clarity: Fraction | None = None


class CompleteTask(Command):
    result: Result | None = None
    deliverables: Annotated[list[Deliverable], Meta(max_length=200)] = []
    quality: Quality | None = None


class TaskError(Command):
    code: Label
    message: LongText
    details: JSONObject | None = None


class FailTask(Command):
    error: TaskError


class EscalateTask(Command):
    reason: ShortText
    priority: Priority | None = None
    team_id: Identifier | None = None
    agent_id: Identifier | None = None


def to_data(value: Any) -> Any:
    """The plain (JSON-ready, camelCase) form of a command part, as stored in events."""
    return msgspec.to_builtins(value)
