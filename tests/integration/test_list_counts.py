"""The list view's counts table: kept in the same transaction as the rows, it always equals a
fresh COUNT over them, live and after a blue/green rebuild, on SQLite and PostgreSQL; and the
list totals and stats it answers equal the COUNT the query would otherwise run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings as hypothesis_settings, strategies as st

from adapters.config import Settings
from adapters.list_view import COUNTED, TaskListView, counter_for
from adapters.services import Services
from app import build_services
from projections.queries import ListTasksQuery, StatsQuery
from projections.rebuild import rebuild
from tests.integration.test_projection_folds import write_random_history

EXAMPLES = hypothesis_settings(max_examples=10, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
                               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
STATUSES = ["pending", "assigned", "in_progress", "blocked", "review", "completed", "failed", "cancelled"]


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    running = build_services(settings)
    yield running
    running.close()


def fresh_counts(view: TaskListView, tenant: str) -> list[tuple[str, str, str | None, str, int]]:
    """What the counts table must hold for ``tenant``: GROUP BY over the rows, per counted column."""
    expressions = {"priority": "priority", "agent_id": "agent_id", "team_id": "team_id",
                   "day": "substr(created_at, 1, 10)"}
    found = []
    with view.store.transaction(commit=False) as cursor:
        table = view.table(cursor)
        for dim in COUNTED:
            cursor.execute(view.store.dialect.sql(
                f"SELECT {expressions[dim]} AS value, status, COUNT(*) AS n FROM {table} "
                f"WHERE tenant = ? GROUP BY {expressions[dim]}, status"), (tenant,))
            found += [(tenant, dim, f["value"], f["status"], int(f["n"])) for f in cursor.fetchall()]
    return sorted(found, key=lambda item: (item[1], item[2] or "", item[3]))


def check_counts(view: TaskListView, tenant: str, data: st.DataObject) -> None:
    kept = [item for item in view.counts() if item[0] == tenant]
    assert kept == fresh_counts(view, tenant)
    rows = [r for r in view.all_rows() if r.tenant == tenant]

    # a list total the counts answer equals the number of matching rows
    filters: dict[str, Any] = data.draw(st.fixed_dictionaries({}, optional={
        "status": st.sampled_from(STATUSES),
        **data.draw(st.sampled_from([{}, {"priority": st.sampled_from(["low", "medium", "high", "urgent"])},
                                     {"agentId": st.sampled_from(["amy", "bob-smith", "carla"])},
                                     {"teamId": st.sampled_from(["finance-ops", "research"])}])),
    }))
    query = msgspec.convert(filters, ListTasksQuery)
    assert counter_for(query) is not None
    _, total, _, _ = view.page(tenant, query)
    assert total == sum(1 for r in rows if all(getattr(r, _column(k)) == v for k, v in filters.items()))

    # stats the counts answer (one group beside status) equal a count of the rows
    group = data.draw(st.sampled_from(["priority", "agentId", "teamId", "day"]))
    stats_filters = {k: v for k, v in filters.items() if k == "status" or _column(k) == _column(group)}
    stats_query = msgspec.convert({**stats_filters, "groupBy": f"status,{group}"}, StatsQuery)
    assert counter_for(stats_query, [_column(group)]) is not None
    counts, _ = view.stats(tenant, stats_query)
    matching = [r for r in rows if all(getattr(r, _column(k)) == v for k, v in stats_filters.items())]
    value = (lambda r: r.created_at[:10]) if group == "day" else (lambda r: getattr(r, _column(group)))
    assert Counter({(values, status): n for values, status, n in counts}) == Counter(
        ((value(r),), r.status) for r in matching)


def _column(name: str) -> str:
    return {"agentId": "agent_id", "teamId": "team_id"}.get(name, name)


@given(data=st.data())
@EXAMPLES
def test_counts_equal_a_fresh_count_after_random_commands_live_and_after_rebuild(
        services: Services, data: st.DataObject) -> None:
    tenant = f"tenant-{uuid4().hex[:8]}"
    position = write_random_history(services, data, tenant)
    for runner in services.projections:
        runner.poke()
        assert runner.wait_for(position, 30)
    check_counts(services.list_view, tenant, data)

    rebuild(services.app, services.list_view, batch_size=data.draw(st.sampled_from([2, 40, 5000])))
    check_counts(services.list_view, tenant, data)
    assert services.list_view.position() >= position


def test_a_query_the_counts_do_not_cover_falls_back_to_counting_rows() -> None:
    """Two counted columns at once, a date range, overdue or q: the total is a COUNT, still exact."""
    assert counter_for(ListTasksQuery(priority="high", agent_id="amy")) is None
    assert counter_for(ListTasksQuery(start_date="2024-01-01")) is None
    assert counter_for(ListTasksQuery(q="revenue")) is None
    assert counter_for(ListTasksQuery(overdue=True)) is None
    assert counter_for(StatsQuery(group_by="agentId,priority"), ["agent_id", "priority"]) is None
    assert counter_for(ListTasksQuery(status="pending", priority="high")) == ("priority", "high")
    assert counter_for(ListTasksQuery(agent_id="amy")) == ("agent_id", "amy")
    assert counter_for(ListTasksQuery()) == ("priority", None)
