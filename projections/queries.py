"""The list view's query: the seed's filters, validated once, as a struct."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta, timezone
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from domain.commands import Identifier, Priority
from domain.errors import RuleViolationError
from projections.task_list import sortable_time

StatusName = Literal[
    "pending", "assigned", "in_progress", "blocked", "review", "completed", "failed", "cancelled"
]
DateOrTime = Annotated[
    str,
    Meta(
        pattern=r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$",
        description="A date (2024-10-27) or an ISO 8601 time; times without a zone are UTC.",
    ),
]
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ListTasksQuery(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Filters of GET /agents/tasks; a misspelt parameter is an error, not ignored."""

    status: StatusName | None = None
    agent_id: Identifier | None = None
    team_id: Identifier | None = None
    priority: Priority | None = None
    start_date: DateOrTime | None = None
    end_date: DateOrTime | None = None
    limit: Annotated[int, Meta(ge=1, le=500)] = 50
    offset: Annotated[int, Meta(ge=0, le=1_000_000)] = 0

    def created_from(self) -> str | None:
        """Inclusive lower bound on createdAt, in the view's sortable form."""
        if self.start_date is None:
            return None
        return sortable_time(_parse(self.start_date, "startDate", end_of_day=False))

    def created_until(self) -> str | None:
        """Inclusive upper bound; a bare date means the whole of that day."""
        if self.end_date is None:
            return None
        return sortable_time(_parse(self.end_date, "endDate", end_of_day=True))


def _parse(text: str, field: str, *, end_of_day: bool) -> datetime:
    try:
        if _DATE_ONLY.match(text):
            day = datetime.fromisoformat(text).date()
            moment = datetime.combine(day, time.min, tzinfo=timezone.utc)
            return moment + timedelta(days=1, microseconds=-1) if end_of_day else moment
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        moment.astimezone(timezone.utc)  # some times near year 1 or 9999 have no UTC form
    except (ValueError, OverflowError):
        raise RuleViolationError(f"$.{field}", f"{field} is not a valid date or time: {text}") from None
    return moment
