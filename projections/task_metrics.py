"""The metrics view's fold: per task, the times and counts the analytics need.

Times are whole microseconds since the epoch (UTC), so sums are exact in SQL
and in Python alike. Time in a status is accumulated when the task leaves
that status; the time in the current status is added at query time (up to
"now"). Terminal statuses (completed, cancelled) accumulate nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import msgspec

from domain import task as ev
from domain.ids import public_id

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MICROSECOND = timedelta(microseconds=1)
TIMED_STATUSES: tuple[str, ...] = ("pending", "assigned", "in_progress", "blocked", "review", "failed")


def micros(moment: datetime | None) -> int | None:
    """Exact microseconds since the epoch."""
    return None if moment is None else (moment - EPOCH) // MICROSECOND


@dataclass(slots=True)
class MetricsRow:
    task_id: str
    tenant: str
    agent_id: str | None
    team_id: str | None
    priority: str
    status: str
    created_at: int
    day: str
    started_at: int | None  # the first start of any attempt
    completed_at: int | None
    deadline: int | None
    status_since: int
    t_pending: int = 0
    t_assigned: int = 0
    t_in_progress: int = 0
    t_blocked: int = 0
    t_review: int = 0
    t_failed: int = 0
    failures: int = 0
    retries: int = 0
    rating_sum: int = 0
    rating_count: int = 0
    version: int = 0
    position: int = 0
    created_position: int = 0

    def deadline_missed(self, now: int) -> bool:
        """Completed after its deadline, or still open with the deadline past."""
        if self.deadline is None or self.status == "cancelled":
            return False
        if self.completed_at is not None:
            return self.completed_at > self.deadline
        return now > self.deadline

    def time_in(self, status: str, now: int) -> int:
        spent: int = getattr(self, f"t_{status}")
        return spent + (now - self.status_since if self.status == status else 0)


COLUMNS: tuple[str, ...] = tuple(MetricsRow.__dataclass_fields__)


def created_row(event: ev.TaskCreated, position: int) -> MetricsRow:
    at = micros(event.timestamp) or 0
    return MetricsRow(
        task_id=public_id(event.originator_id),
        tenant=event.tenant,
        agent_id=event.agent_id,
        team_id=event.team_id,
        priority=event.priority,
        status=event.status_after.value,
        created_at=at,
        day=event.timestamp.astimezone(timezone.utc).date().isoformat(),
        started_at=None,
        completed_at=None,
        deadline=micros(event.deadline),
        status_since=at,
        version=event.originator_version,
        position=position,
        created_position=position,
    )


def _enter(row: MetricsRow, status: str, at: int) -> None:
    if row.status in TIMED_STATUSES:
        name = f"t_{row.status}"
        setattr(row, name, getattr(row, name) + at - row.status_since)
    row.status, row.status_since = status, at


def apply(row: MetricsRow, event: ev.TaskEvent, position: int) -> bool:
    """Fold one later event into ``row`` in place; False when the row already reflects it."""
    if event.originator_version <= row.version:
        return False
    row.version, row.position = event.originator_version, position
    at = micros(event.timestamp) or 0
    match event:
        case ev.TaskAssigned():
            row.agent_id = event.agent_id
            if event.team_id:
                row.team_id = event.team_id
            _enter(row, "assigned", at)
        case ev.TaskStarted():
            if row.started_at is None:
                row.started_at = at
            _enter(row, "in_progress", at)
        case ev.TaskBlocked():
            _enter(row, "blocked", at)
        case ev.TaskUnblocked() | ev.ChangesRequested():
            _enter(row, "in_progress", at)
        case ev.SubmittedForReview():
            _enter(row, "review", at)
        case ev.TaskCompleted():
            row.completed_at = at
            _enter(row, "completed", at)
        case ev.TaskFailed():
            row.failures += 1
            _enter(row, "failed", at)
        case ev.TaskCancelled():
            _enter(row, "cancelled", at)
        case ev.TaskRetried():
            row.retries += 1
            row.agent_id = event.agent_id
            _enter(row, "assigned" if event.agent_id else "pending", at)
        case ev.TaskEscalated():
            row.priority = event.priority
            if event.team_id is not None:
                row.team_id = event.team_id
            if event.agent_id is not None:
                row.agent_id = event.agent_id
        case ev.TaskUpdated():
            if event.priority is not None:
                row.priority = event.priority
            if event.clear_deadline:
                row.deadline = None
            elif event.deadline is not None:
                row.deadline = micros(event.deadline)
        case ev.FeedbackGiven():
            row.rating_sum += event.rating
            row.rating_count += 1
    return True


# --- what the metrics endpoint answers, from exact integer totals ---------------------------


class Shape(msgspec.Struct, rename="camel", kw_only=True):
    """camelCase on the wire, nulls written out."""


class Percentiles(Shape):
    count: int
    p50: float | None
    p90: float | None
    max: float | None


class StatusTime(Shape):
    total_seconds: float
    average_seconds: float | None


class MetricsSummary(Shape, kw_only=True):
    key: dict[str, str | None] | None = None
    tasks: int
    completed: int
    lead_time: Percentiles
    cycle_time: Percentiles
    time_in_status: dict[str, StatusTime]
    failure_rate: float | None
    failures: int
    retries_per_task: float | None
    deadlines_missed: int
    average_rating: float | None
    ratings: int


@dataclass
class Totals:
    """Exact integer totals of one group; both the SQL view and the pure fold produce them."""

    tasks: int = 0
    completed: int = 0
    failed_tasks: int = 0
    failures: int = 0
    retries: int = 0
    missed: int = 0
    rating_sum: int = 0
    rating_count: int = 0
    in_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIMED_STATUSES, 0))
    lead: list[int] = field(default_factory=list)
    cycle: list[int] = field(default_factory=list)

    def add_row(self, row: MetricsRow, now: int) -> None:
        """The reference fold: one task's contribution."""
        self.tasks += 1
        self.failed_tasks += row.failures > 0
        self.failures += row.failures
        self.retries += row.retries
        self.missed += row.deadline_missed(now)
        self.rating_sum += row.rating_sum
        self.rating_count += row.rating_count
        for status in TIMED_STATUSES:
            self.in_status[status] += row.time_in(status, now)
        if row.completed_at is not None:
            self.completed += 1
            self.lead.append(row.completed_at - row.created_at)
            if row.started_at is not None:
                self.cycle.append(row.completed_at - row.started_at)

    def summary(self, key: dict[str, str | None] | None = None) -> MetricsSummary:
        n = self.tasks
        return MetricsSummary(
            key=key,
            tasks=n,
            completed=self.completed,
            lead_time=percentiles(self.lead),
            cycle_time=percentiles(self.cycle),
            time_in_status={
                status: StatusTime(total_seconds=spent / 1e6, average_seconds=spent / n / 1e6 if n else None)
                for status, spent in self.in_status.items()
            },
            failure_rate=self.failed_tasks / n if n else None,
            failures=self.failures,
            retries_per_task=self.retries / n if n else None,
            deadlines_missed=self.missed,
            average_rating=self.rating_sum / self.rating_count if self.rating_count else None,
            ratings=self.rating_count,
        )


def percentiles(values: list[int]) -> Percentiles:
    """Nearest-rank p50 and p90 (a value that occurred), and the max, in seconds."""
    if not values:
        return Percentiles(count=0, p50=None, p90=None, max=None)
    ordered = sorted(values)

    def rank(p: int) -> float:
        return ordered[max(0, -(-p * len(ordered) // 100) - 1)] / 1e6

    return Percentiles(count=len(ordered), p50=rank(50), p90=rank(90), max=ordered[-1] / 1e6)
