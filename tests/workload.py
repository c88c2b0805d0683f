"""A log with every kind of event: tasks in several tenants taken along five lifecycles.

Used by the migration test (a few thousand events) and by bench/migrate.py
(about a hundred thousand). Each task's commands run on the real aggregate and
are saved through the real application, many tasks per commit, so that a large
log is written in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from domain import commands as c
from domain.application import TaskApplication
from domain.task import Actor, Task

TENANTS = ("default", "acme", "globex")
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def _delivered(task: Task, by: Actor, i: int) -> None:
    """Every step of the happy path, with a block and a round of changes on the way."""
    task.update(c.UpdateTask(priority="high", notes=f"note {i}"), by)
    task.start(c.StartTask(note="on it"), by)
    task.report_progress(c.ReportProgress(progress=30, phase="research"), by)
    task.block(c.BlockTask(reason="waiting for data access"), by)
    task.unblock(c.UnblockTask(note="access granted"), by)
    task.report_progress(c.ReportProgress(progress=60, phase="analysis", note="halfway"), by)
    task.submit_for_review(c.SubmitForReview(note="draft ready"), by)
    task.request_changes(c.RequestChanges(reason="add the churn numbers"), by)
    task.report_progress(c.ReportProgress(progress=90, phase="revision"), by)
    task.submit_for_review(c.SubmitForReview(), by)
    task.complete(c.CompleteTask(
        result=c.Result(summary=f"summary {i}", insights=["up 23%"], data={"rows": i}),
        deliverables=[c.Deliverable(type="pdf-report", name=f"report-{i}.pdf", url=f"https://x.example/{i}.pdf",
                                    size=1000 + i)],
        quality=c.Quality(score=0.9, accuracy=0.95),
    ), by)
    task.give_feedback(c.GiveFeedback(rating=1 + i % 5, feedback="thanks", issues=["typo"] if i % 2 else []), by)


def _failed_twice(task: Task, by: Actor, i: int) -> None:
    """Escalated, failed, retried with a new agent and with the same one, then cancelled."""
    task.escalate(c.EscalateTask(reason="customer waiting"), by)
    task.assign(c.AssignTask(agent_id=f"agent-{i % 7}", team_id="ops"), by)
    task.start(c.StartTask(), by)
    task.fail(c.FailTask(error=c.TaskError(code="timeout", message="upstream timed out", details={"s": 30})), by)
    task.retry(c.RetryTask(reassign=True, context={"retry": True}), by)
    task.assign(c.AssignTask(agent_id=f"agent-{(i + 1) % 7}"), by)
    task.fail(c.FailTask(error=c.TaskError(code="crash", message="agent crashed")), by)
    task.retry(c.RetryTask(), by)
    task.cancel(c.CancelTask(reason="no longer needed"), by)


def _edited_and_cancelled(task: Task, by: Actor, i: int) -> None:
    task.update(c.UpdateTask(deadline=NOW + timedelta(days=i % 30), context={"edited": i}), by)
    task.update(c.UpdateTask(deadline=None), by)
    task.cancel(c.CancelTask(), by)


def _in_progress(task: Task, by: Actor, i: int) -> None:
    task.start(c.StartTask(), by)
    task.report_progress(c.ReportProgress(progress=i % 101), by)


def _handed_on(task: Task, by: Actor, i: int) -> None:
    task.escalate(c.EscalateTask(reason="too slow", priority="urgent", team_id="tiger", agent_id="senior"), by)
    task.start(c.StartTask(), by)
    task.submit_for_review(c.SubmitForReview(), by)
    task.complete(c.CompleteTask(), by)


# (lifecycle, does the create name an agent?)
LIFECYCLES: tuple[tuple[Callable[[Task, Actor, int], None], bool], ...] = (
    (_delivered, True),
    (_failed_twice, False),
    (_edited_and_cancelled, False),
    (_in_progress, True),
    (_handed_on, True),
)


def new_task(i: int) -> Task:
    """Task number ``i``: its tenant, lifecycle and fields follow from ``i``."""
    lifecycle, with_agent = LIFECYCLES[i % len(LIFECYCLES)]
    by = Actor(principal=f"key_{i % 3:016d}", request_id=f"req_{i:016x}", tenant=TENANTS[i % len(TENANTS)])
    task = Task.create(c.CreateTask(
        task=f"Task {i}: analyse something",
        agent_id=f"agent-{i % 11}" if with_agent else None,
        team_id=None if with_agent else f"team-{i % 3}",
        context={"i": i, "tags": ["a", "b"]},
        priority=("low", "medium", "high", "urgent")[i % 4],
        deadline=NOW + timedelta(hours=i) if i % 2 else None,
        deliverables=["pdf-report"],
        budget={"usd": i} if i % 5 == 0 else None,
    ), by)
    lifecycle(task, by, i)
    return task


def fill(app: TaskApplication, tasks: int, per_commit: int = 50) -> int:
    """Write ``tasks`` tasks through the application; returns the number of events."""
    events = 0
    for start in range(0, tasks, per_commit):
        batch = [new_task(i) for i in range(start, min(start + per_commit, tasks))]
        events += len(app.save(*batch))
    return events
