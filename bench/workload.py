"""A random but valid workload: tasks driven through their lifecycle by the domain itself.

Used by the benchmarks (to write many events fast, several tasks per save) and
by the property tests (to drive random command sequences). ``pick(n)`` chooses
one of n options, so a test can drive it from hypothesis and a benchmark from
``random.Random``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from domain import commands as c
from domain.task import Actor, Task

Pick = Callable[[int], int]
AGENTS = ("amy", "bob-smith", "carla", "dev-7")
TEAMS = ("finance-ops", "research", None)
PRIORITIES = ("low", "medium", "high", "urgent")
WORDS = ("revenue", "churn", "invoice", "report", "summary", "board", "migration", "audit")


def new_task(pick: Pick, by: Actor) -> Task:
    deadline = None
    if pick(3) == 0:
        deadline = datetime.now(timezone.utc) + timedelta(seconds=(pick(5) - 2) * 3600)
    command = c.CreateTask(
        task=f"{WORDS[pick(len(WORDS))]} {WORDS[pick(len(WORDS))]} task",
        agent_id=AGENTS[pick(len(AGENTS))] if pick(2) else None,
        team_id=TEAMS[pick(len(TEAMS))],
        priority=PRIORITIES[pick(len(PRIORITIES))],
        deadline=deadline,
    )
    return Task.create(command, by)


def _moves(task: Task, pick: Pick, by: Actor) -> list[Callable[[], None]]:
    status = task.status.value
    moves: list[Callable[[], None]] = []
    add = moves.append
    if status in ("pending", "assigned"):
        add(lambda: task.assign(c.AssignTask(agent_id=AGENTS[pick(len(AGENTS))]), by))
    if status == "assigned":
        add(lambda: task.start(c.StartTask(), by))
    if status == "in_progress":
        add(lambda: task.report_progress(c.ReportProgress(progress=pick(101), phase="work"), by))
        add(lambda: task.block(c.BlockTask(reason="waiting"), by))
        add(lambda: task.submit_for_review(c.SubmitForReview(), by))
    if status == "blocked":
        add(lambda: task.unblock(c.UnblockTask(), by))
    if status == "review":
        add(lambda: task.complete(c.CompleteTask(), by))
        add(lambda: task.request_changes(c.RequestChanges(reason="more"), by))
    if status in ("assigned", "in_progress", "blocked", "review"):
        add(lambda: task.fail(c.FailTask(error=c.TaskError(code="x", message="broke")), by))
    if status == "failed":
        add(lambda: task.retry(c.RetryTask(reassign=bool(pick(2))), by))
    if status == "completed":
        add(lambda: task.give_feedback(c.GiveFeedback(rating=1 + pick(5)), by))
    if status not in ("completed", "cancelled"):
        add(lambda: task.update(c.UpdateTask(notes=f"note {WORDS[pick(len(WORDS))]}"), by))
        add(lambda: task.cancel(c.CancelTask(reason="changed"), by))
        if task.priority != "urgent":
            add(lambda: task.escalate(c.EscalateTask(reason="late"), by))
    return moves


def advance(task: Task, pick: Pick, by: Actor) -> bool:
    """Apply one random allowed command; False when the task has nothing left to do."""
    moves = _moves(task, pick, by)
    if not moves:
        return False
    moves[pick(len(moves))]()
    return True


def lifecycle(task: Task, pick: Pick, by: Actor, steps: int) -> Task:
    """Drive one task, preferring progress forward (as real work mostly does)."""
    for _ in range(steps):
        if not advance(task, pick, by):
            break
    return task


def populate(app: Any, events: int, *, tenant: str = "default", per_save: int = 200,
             steps: int = 6, pick: Pick, report: Callable[[int], None] | None = None) -> int:
    """Write about ``events`` events, ``per_save`` tasks per commit; returns events written."""
    by = Actor("key_bench", "req_bench", tenant)
    written = 0
    while written < events:
        tasks = [lifecycle(new_task(pick, by), pick, by, pick(steps + 1)) for _ in range(per_save)]
        recordings = app.save(*tasks)
        written += len(recordings)
        if report is not None:
            report(written)
    return written
