"""Statuses, the transition table and priority order: the rules in one place."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    PENDING = "pending"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    BLOCKED = "blocked"
    REVIEW = "review"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({Status.COMPLETED, Status.CANCELLED})
NOT_TERMINAL = frozenset(Status) - TERMINAL
WORKING = frozenset({Status.ASSIGNED, Status.IN_PROGRESS, Status.BLOCKED, Status.REVIEW})

# Which statuses each command is allowed from. The status it leads to is the
# event's (see the event catalogue in the README).
ALLOWED_FROM: dict[str, frozenset[Status]] = {
    "assign": frozenset({Status.PENDING, Status.ASSIGNED}),
    "start": frozenset({Status.ASSIGNED}),
    "report_progress": frozenset({Status.IN_PROGRESS}),
    "block": frozenset({Status.IN_PROGRESS}),
    "unblock": frozenset({Status.BLOCKED}),
    "submit_for_review": frozenset({Status.IN_PROGRESS}),
    "request_changes": frozenset({Status.REVIEW}),
    "complete": frozenset({Status.REVIEW}),
    "fail": WORKING,
    "cancel": NOT_TERMINAL,
    "retry": frozenset({Status.FAILED}),
    "escalate": NOT_TERMINAL,
    "update": NOT_TERMINAL,
    "give_feedback": frozenset({Status.COMPLETED}),
}

PRIORITY_ORDER: tuple[str, ...] = ("low", "medium", "high", "urgent")


def priority_rank(priority: str) -> int:
    """0 for low up to 3 for urgent."""
    return PRIORITY_ORDER.index(priority)


def next_priority(priority: str) -> str:
    """One level up; urgent stays urgent."""
    return PRIORITY_ORDER[min(priority_rank(priority) + 1, len(PRIORITY_ORDER) - 1)]
