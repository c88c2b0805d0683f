"""Every view equals a fold computed directly from the events: random command
sequences over many tasks, checked live and after a blue/green rebuild, on
SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from uuid import uuid4

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings as hypothesis_settings, strategies as st

from adapters.config import Settings
from adapters.list_view import GROUPS, matches, search_words
from adapters.services import Services
from app import build_services
from bench.workload import advance, new_task
from domain.task import Actor, Task
from projections.queries import ListTasksQuery, MetricsQuery, StatsQuery
from projections.rebuild import rebuild
from projections.task_list import TaskRow, sortable_time
from projections.task_metrics import TIMED_STATUSES, MetricsRow, Totals, micros

EXAMPLES = hypothesis_settings(max_examples=12, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
                               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    running = build_services(settings)
    yield running
    running.close()


def write_random_history(services: Services, data: st.DataObject, tenant: str) -> int:
    """Create tasks and drive them with random valid commands, several tasks per commit."""
    pick = lambda n: data.draw(st.integers(0, n - 1))  # noqa: E731
    by = Actor("key_prop", "req_prop", tenant)
    tasks: list[Task] = [new_task(pick, by) for _ in range(data.draw(st.integers(1, 12)))]
    position = services.app.save(*tasks)[-1].notification.id
    for _ in range(data.draw(st.integers(0, 40))):
        chosen = data.draw(st.lists(st.integers(0, len(tasks) - 1), min_size=1, max_size=3, unique=True))
        moved = [tasks[i] for i in chosen if advance(tasks[i], pick, by)]
        if moved:
            position = services.app.save(*moved)[-1].notification.id
    return position


def folded(app: Any, tenant: str, now: int) -> tuple[dict[str, TaskRow], dict[str, tuple[Any, ...]]]:
    """What the views must hold, computed independently of their folds: each task replayed by
    the domain itself (event by event, read with the library's codec), and times taken from
    the statuses the replayed task passes through."""
    histories: dict[str, list[tuple[int, Any]]] = {}
    after = 0
    while notifications := app.recorder.select_notifications(start=after, limit=500, inclusive_of_start=False):
        for n in notifications:
            event = app.mapper.to_domain_event(n)
            if event.tenant == tenant:
                histories.setdefault(f"task_{event.originator_id.hex}", []).append((n.id, event))
        after = notifications[-1].id
    lists, metrics = {}, {}
    for key, history in histories.items():
        task: Any = None
        spent = dict.fromkeys(("pending", "assigned", "in_progress", "blocked", "review", "failed"), 0)
        started = completed = None
        failures = retries = 0
        for i, (_, event) in enumerate(history):
            task = event.mutate(task)
            until = micros(history[i + 1][1].timestamp) if i + 1 < len(history) else now
            if task.status.value in spent:
                spent[task.status.value] += until - micros(event.timestamp)
            kind = type(event).__name__
            started = started or (micros(event.timestamp) if kind == "TaskStarted" else None)
            completed = micros(event.timestamp) if kind == "TaskCompleted" else completed
            failures += kind == "TaskFailed"
            retries += kind == "TaskRetried"
        lists[key] = TaskRow(
            task_id=key, tenant=task.tenant, task=task.description, status=task.status.value,
            agent_id=task.agent_id, team_id=task.team_id, priority=task.priority,
            priority_rank=("low", "medium", "high", "urgent").index(task.priority), progress=task.progress,
            phase=task.phase, deadline=sortable_time(task.deadline), created_at=sortable_time(task.created_at) or "",
            updated_at=sortable_time(task.updated_at) or "", version=task.version, attempt=task.attempt,
            created_position=history[0][0], position=history[-1][0],
            notes="\n".join(note["text"] for note in task.notes),
        )
        metrics[key] = (task.agent_id, task.team_id, task.priority, task.status.value, micros(task.created_at),
                        started, completed, micros(task.deadline), failures, retries,
                        sum(f["rating"] for f in task.feedback), len(task.feedback), spent)
    return lists, metrics


def observed(row: MetricsRow, now: int) -> tuple[Any, ...]:
    return (row.agent_id, row.team_id, row.priority, row.status, row.created_at, row.started_at,
            row.completed_at, row.deadline, row.failures, row.retries, row.rating_sum, row.rating_count,
            {status: row.time_in(status, now) for status in TIMED_STATUSES})


def check_views(services: Services, tenant: str, data: st.DataObject) -> None:
    now = datetime.now(timezone.utc)
    lists, metrics = folded(services.app, tenant, micros(now) or 0)
    list_view = services.list_view
    metrics_view = next(v for v in services.views if v.name == "task_metrics")
    assert [r for r in list_view.all_rows() if r.tenant == tenant] == sorted(lists.values(), key=lambda r: r.task_id)
    metrics_rows = {r.task_id: r for r in metrics_view.all_rows() if r.tenant == tenant}
    assert {key: observed(row, micros(now) or 0) for key, row in metrics_rows.items()} == metrics

    rows = list(lists.values())
    # a random filter, its exact total, page and counts
    filters: dict[str, Any] = data.draw(st.fixed_dictionaries({}, optional={
        "status": st.sampled_from(["pending", "assigned", "in_progress", "failed", "completed", "cancelled"]),
        "agentId": st.sampled_from(["amy", "bob-smith", "carla"]),
        "priority": st.sampled_from(["low", "medium", "high", "urgent"]),
        "overdue": st.booleans(),
        "q": st.sampled_from(["revenue", "churn report", "note", "audit"]),
    }))
    expected = [r for r in rows if _keeps(r, filters, sortable_time(now) or "")]
    query = msgspec.convert(filters, ListTasksQuery)
    page, total, _, _ = list_view.page(tenant, query, sortable_time(now))
    assert total == len(expected)
    newest = sorted(expected, key=lambda r: (r.created_at, r.created_position), reverse=True)
    assert [r.task_id for r in page] == [r.task_id for r in newest[:50]]

    groups = data.draw(st.lists(st.sampled_from(sorted(GROUPS)), max_size=2, unique=True))
    stats_query = msgspec.convert({**filters, **({"groupBy": ",".join(groups)} if groups else {})}, StatsQuery)
    counts, _ = list_view.stats(tenant, stats_query, sortable_time(now))
    others = [g for g in groups if g != "status"]
    assert Counter({(values, status): n for values, status, n in counts}) == Counter(
        (tuple(_group_value(r, g) for g in others), r.status) for r in expected)

    # metrics overall and grouped
    group_by = data.draw(st.sampled_from([None, "agentId", "teamId", "priority", "day"]))
    overall, grouped, _ = metrics_view.metrics(tenant, MetricsQuery(group_by=group_by), micros(now))
    reference, per_group = Totals(), {}
    for row in metrics_rows.values():  # checked against the replay above
        reference.add_row(row, micros(now) or 0)
        if group_by:
            key = _group_value(row, group_by)
            per_group.setdefault(key, Totals()).add_row(row, micros(now) or 0)
    assert overall.summary() == reference.summary()
    assert {k: t.summary() for k, t in grouped.items()} == {k: t.summary() for k, t in per_group.items()}


def _keeps(row: TaskRow, filters: dict[str, Any], now: str) -> bool:
    return (
        filters.get("status", row.status) == row.status
        and filters.get("agentId", row.agent_id) == row.agent_id
        and filters.get("priority", row.priority) == row.priority
        and filters.get("overdue", row.is_overdue(now)) == row.is_overdue(now)
        and ("q" not in filters or matches(row, search_words(filters["q"])))
    )


def _group_value(row: Any, name: str) -> Any:
    if name == "day":
        return row.day if isinstance(row, MetricsRow) else row.created_at[:10]
    return getattr(row, {"agentId": "agent_id", "teamId": "team_id"}.get(name, name))


@given(data=st.data())
@EXAMPLES
def test_views_equal_the_fold_of_the_events_live_and_after_rebuild(services: Services, data: st.DataObject) -> None:
    tenant = f"tenant-{uuid4().hex[:8]}"
    position = write_random_history(services, data, tenant)
    for runner in services.projections:
        runner.poke()
        assert runner.wait_for(position, 30)
    check_views(services, tenant, data)

    for view in (v for v in services.views if hasattr(v, "beside")):  # the blue/green-rebuildable ones
        rebuild(services.app, view, batch_size=data.draw(st.sampled_from([3, 50, 5000])))
    check_views(services, tenant, data)
    assert all(view.position() >= position for view in services.views)
