"""The metrics view's SQL store: per task times and counts, and the metrics query over them."""

from __future__ import annotations

from typing import Any

from adapters.sql import SqlStore
from adapters.view_tables import TableView
from domain.task import TaskCreated, TaskEvent
from projections import task_metrics as fold
from projections.queries import MetricsQuery
from projections.task_metrics import COLUMNS, TIMED_STATUSES, MetricsRow, Totals, micros

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    task_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    agent_id TEXT,
    team_id TEXT,
    priority TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    day TEXT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    deadline BIGINT,
    status_since BIGINT NOT NULL,
    t_pending BIGINT NOT NULL,
    t_assigned BIGINT NOT NULL,
    t_in_progress BIGINT NOT NULL,
    t_blocked BIGINT NOT NULL,
    t_review BIGINT NOT NULL,
    t_failed BIGINT NOT NULL,
    failures INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    rating_sum INTEGER NOT NULL,
    rating_count INTEGER NOT NULL,
    version INTEGER NOT NULL,
    position BIGINT NOT NULL,
    created_position BIGINT NOT NULL
)"""
INDEXES = ("CREATE INDEX IF NOT EXISTS {table}_created ON {table} (tenant, created_at)",)
GROUPS = {"agentId": "agent_id", "teamId": "team_id", "priority": "priority", "day": "day"}
MISSED = (
    "deadline IS NOT NULL AND status <> 'cancelled' AND "
    "((completed_at IS NOT NULL AND completed_at > deadline) OR (completed_at IS NULL AND deadline < ?))"
)


class TaskMetricsView(TableView[MetricsRow]):
    """Per task: created, first started and completed times, time in each status,
    failures, retries, deadline and ratings."""

    schema = 1
    columns = COLUMNS
    row_type = MetricsRow

    def __init__(self, store: SqlStore, name: str = "task_metrics", *, pinned: str | None = None) -> None:
        super().__init__(store, name, pinned=pinned)

    def table_ddl(self, table: str) -> list[str]:
        return [CREATE_TABLE.format(table=table)]

    def index_ddl(self, table: str) -> list[str]:
        return [index.format(table=table) for index in INDEXES]

    def new_row(self, event: TaskCreated, position: int) -> MetricsRow:
        return fold.created_row(event, position)

    def fold(self, row: MetricsRow, event: TaskEvent, position: int) -> bool:
        return fold.apply(row, event, position)

    def metrics(self, tenant: str, query: MetricsQuery, now: int) -> tuple[Totals, dict[Any, Totals], int]:
        """Exact totals overall and per group (by the query's groupBy), and the position."""
        group = GROUPS[query.group_by] if query.group_by else "NULL"
        group_clause = f" GROUP BY {group}" if query.group_by else ""
        spent = ", ".join(
            f"SUM(t_{s} + CASE WHEN status = '{s}' THEN ? - status_since ELSE 0 END) AS s_{s}" for s in TIMED_STATUSES
        )
        with self.store.transaction(commit=False) as cursor:
            table = self.table(cursor)
            where, params = self._where(tenant, query)
            cursor.execute(self._sql(
                f"SELECT {group} AS g, COUNT(*) AS tasks, "
                "SUM(CASE WHEN completed_at IS NOT NULL THEN 1 ELSE 0 END) AS completed, "
                "SUM(CASE WHEN failures > 0 THEN 1 ELSE 0 END) AS failed_tasks, SUM(failures) AS failures, "
                f"SUM(retries) AS retries, SUM(CASE WHEN {MISSED} THEN 1 ELSE 0 END) AS missed, "
                f"SUM(rating_sum) AS rating_sum, SUM(rating_count) AS rating_count, {spent} "
                f"FROM {table} WHERE {where}{group_clause}"
            ), [now, *[now] * len(TIMED_STATUSES), *params])
            groups: dict[Any, Totals] = {}
            for found in cursor.fetchall():
                if not found["tasks"]:
                    continue  # no group: an empty range still gives one row of NULL sums

                def total(column: str, found: Any = found) -> int:
                    return int(found[column] or 0)

                groups[found["g"]] = Totals(
                    tasks=total("tasks"), completed=total("completed"), failed_tasks=total("failed_tasks"),
                    failures=total("failures"), retries=total("retries"), missed=total("missed"),
                    rating_sum=total("rating_sum"), rating_count=total("rating_count"),
                    in_status={s: total(f"s_{s}") for s in TIMED_STATUSES},
                )
            cursor.execute(self._sql(
                f"SELECT {group} AS g, completed_at - created_at AS lead, completed_at - started_at AS cycle "
                f"FROM {table} WHERE {where} AND completed_at IS NOT NULL"
            ), params)
            for found in cursor.fetchall():
                totals = groups[found["g"]]
                totals.lead.append(int(found["lead"]))
                if found["cycle"] is not None:
                    totals.cycle.append(int(found["cycle"]))
            position = self._position(cursor)
        overall = Totals()
        for totals in groups.values():
            overall.tasks += totals.tasks
            overall.completed += totals.completed
            overall.failed_tasks += totals.failed_tasks
            overall.failures += totals.failures
            overall.retries += totals.retries
            overall.missed += totals.missed
            overall.rating_sum += totals.rating_sum
            overall.rating_count += totals.rating_count
            for status in TIMED_STATUSES:
                overall.in_status[status] += totals.in_status[status]
            overall.lead += totals.lead
            overall.cycle += totals.cycle
        return overall, groups if query.group_by else {}, position

    def _where(self, tenant: str, query: MetricsQuery) -> tuple[str, list[Any]]:
        clauses, params = ["tenant = ?"], [tenant]
        for field in ("agent_id", "team_id", "priority"):
            if (value := getattr(query, field)) is not None:
                clauses.append(f"{field} = ?")
                params.append(value)
        if (lower := micros(query.created_from())) is not None:
            clauses.append("created_at >= ?")
            params.append(lower)
        if (upper := micros(query.created_until())) is not None:
            clauses.append("created_at <= ?")
            params.append(upper)
        return " AND ".join(clauses), params
