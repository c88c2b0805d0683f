"""Analytics endpoints: exact counts (stats), lead and cycle times (metrics), and the
projections' own state. They read views only, never aggregates."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from adapters import read_models
from adapters.http.api import Operation, envelope, principal, services, view_position
from adapters.http.exports import csv_response, parse_query, wants_csv
from adapters.http.schemas import Envelope, Shape
from domain.statuses import Status
from projections.queries import MetricsQuery, StatsQuery
from projections.task_metrics import MetricsSummary, micros

ANALYSTS = frozenset({"admin", "analyst", "client", "auditor"})
OPERATORS = frozenset({"admin", "analyst"})
STATUSES: tuple[str, ...] = tuple(status.value for status in Status)


class StatsGroup(Shape):
    key: dict[str, str | None]
    total: int
    by_status: dict[str, int]


class Stats(Shape):
    total: int
    by_status: dict[str, int]
    group_by: list[str]
    groups: list[StatsGroup]


class Metrics(Shape):
    as_of: datetime
    group_by: str | None
    overall: MetricsSummary
    groups: list[MetricsSummary]


class ProjectionState(Shape):
    name: str
    status: str
    position: int
    head: int
    lag: int
    last_error: str | None


class Projections(Shape):
    projections: list[ProjectionState]


def _zero() -> dict[str, int]:
    return dict.fromkeys(STATUSES, 0)


async def stats(request: Request) -> Response:
    query = parse_query(request, StatsQuery)
    svc = services(request)
    view = svc.list_view
    if query.min_position > 0:
        await run_in_threadpool(read_models.wait_for, svc, view, query.min_position)
    tenant = principal(request).tenant
    csv = wants_csv(request)
    now_at = None if csv or query.overdue is not None else view_position(svc, view)
    asked = ("stats", tenant, query)
    if now_at is not None and (held := svc.summaries.held(asked, now_at)) is not None:
        return envelope(request, held, headers={"X-Projection-Position": str(now_at)})
    if view.answers_quickly(query):  # a sum over a few counts: cheaper than the hop to a thread
        counts, position = view.stats(tenant, query)
    else:
        counts, position = await run_in_threadpool(view.stats, tenant, query)
    names = query.groups()
    others = [name for name in names if name != "status"]
    overall = _zero()
    groups: dict[tuple[Any, ...], StatsGroup] = {}
    for values, status, n in counts:
        overall[status] += n
        key = dict(zip(others, values))
        if "status" in names:
            key["status"] = status
        ordered = {name: key[name] for name in names}
        group = groups.setdefault(tuple(ordered.values()), StatsGroup(key=ordered, total=0, by_status=_zero()))
        group.total += n
        group.by_status[status] += n
    listed = sorted(groups.values(), key=lambda g: (-g.total, [str(v) for v in g.key.values()])) if names else []
    headers = {"X-Projection-Position": str(position)}
    if csv:
        rows = ([*g.key.values(), g.total, *g.by_status.values()] for g in listed) if names else \
            [[sum(overall.values()), *overall.values()]]
        return csv_response([*names, "total", *STATUSES], rows, headers)
    data = Stats(total=sum(overall.values()), by_status=overall, group_by=names, groups=listed)
    if now_at is not None:  # the same query at the same position is the same answer
        svc.summaries.keep(asked, position, data, 200 * (len(listed) + 1))
    return envelope(request, data, headers=headers)


async def metrics(request: Request) -> Response:
    query = parse_query(request, MetricsQuery)
    svc = services(request)
    view = read_models.view_named(svc, "task_metrics")
    await run_in_threadpool(read_models.wait_for, svc, view, query.min_position)
    now = datetime.now(timezone.utc)
    overall, groups, position = await run_in_threadpool(view.metrics, principal(request).tenant, query, micros(now))
    listed = [totals.summary({query.group_by: key}) for key, totals in groups.items()] if query.group_by else []
    listed.sort(key=lambda g: (-g.tasks, str(next(iter(g.key.values())) if g.key else "")))
    data = Metrics(as_of=now, group_by=query.group_by, overall=overall.summary(), groups=listed)
    return envelope(request, data, headers={"X-Projection-Position": str(position)})


async def projections(request: Request) -> Response:
    found = await run_in_threadpool(read_models.describe, services(request))
    data = Projections(projections=[
        ProjectionState(name=p.name, status=p.status, position=p.position, head=p.head, lag=p.lag,
                        last_error=p.last_error)
        for p in found
    ])
    return envelope(request, data)


def operations() -> list[Operation]:
    """Listed before the task routes, so that /agents/tasks/stats is not read as a task id."""
    return [
        Operation("GET", "/agents/tasks/stats", "task_stats", "Exact task counts by status, grouped", stats,
                  Envelope[Stats], query=StatsQuery, tag="analytics", roles=ANALYSTS),
        Operation("GET", "/agents/tasks/metrics", "task_metrics", "Lead and cycle times, failures, ratings",
                  metrics, Envelope[Metrics], query=MetricsQuery, tag="analytics", roles=ANALYSTS),
        Operation("GET", "/projections", "list_projections", "Each projection's position, lag and status",
                  projections, Envelope[Projections], tag="service", roles=OPERATORS),
    ]
