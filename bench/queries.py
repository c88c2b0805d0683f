"""Query latency of the list and stats views: p50 and p99 at 1,000,000 tasks.

    .venv/bin/python -m bench.queries                       # SQLite, 1,000,000 tasks
    .venv/bin/python -m bench.queries --database postgresql://user:pass@127.0.0.1:5432/bench
    .venv/bin/python -m bench.queries --database throwaway-postgres --explain   # a cluster of its own

``--explain`` also prints the plan each backend chose for the list's and stats' statements
(SQLite's EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN).

The list view is filled once with synthetic rows (kept in the database for the
next run): 20 agents, 5 teams, 4 priorities, the 8 statuses, creation times
spread over 90 days, a third with deadlines, four words of description from
a vocabulary of 5,000 (and a fifth of the tasks with a note). Queries go through the same view methods the endpoints call (the HTTP
layer adds its own, constant cost), each with randomly chosen parameters.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
from eventsourcing.persistence import Tracking

from adapters.config import Settings
from adapters.list_view import TaskListView
from adapters.sql import open_store
from projections.queries import ListTasksQuery, StatsQuery
from projections.task_list import TaskRow, sortable_time

STATUSES = ("pending", "assigned", "in_progress", "blocked", "review", "completed", "failed", "cancelled")
AGENTS = tuple(f"agent-{i}" for i in range(20))
TEAMS = ("finance-ops", "research", "support", "platform", None)
PRIORITIES = ("low", "medium", "high", "urgent")
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
WORDS = tuple(f"w{i}" for i in range(5000))  # a vocabulary: a word is in about 0.1% of the tasks


def fill(view: TaskListView, tasks: int) -> None:
    """Add synthetic rows until the view holds ``tasks`` of them."""
    have = len_rows(view)
    rng = random.Random(have)
    started = time.perf_counter()
    for first in range(have + 1, tasks + 1, 20_000):
        rows = []
        for position in range(first, min(first + 20_000, tasks + 1)):
            created = NOW - timedelta(seconds=rng.randrange(90 * 86_400))
            updated = created + timedelta(seconds=rng.randrange(86_400))
            priority = rng.choice(PRIORITIES)
            rows.append(TaskRow(
                task_id=f"task_{position:032x}", tenant="default",
                task=" ".join(rng.choice(WORDS) for _ in range(4)), status=rng.choice(STATUSES),
                agent_id=rng.choice(AGENTS), team_id=rng.choice(TEAMS), priority=priority,
                priority_rank=PRIORITIES.index(priority), progress=rng.randrange(101), phase=None,
                deadline=sortable_time(created + timedelta(days=rng.randrange(1, 30))) if rng.random() < 0.33 else None,
                created_at=sortable_time(created) or "", updated_at=sortable_time(updated) or "",
                version=rng.randrange(1, 9), attempt=1, created_position=position, position=position,
                notes=rng.choice(WORDS) if rng.random() < 0.2 else "",
            ))
        with view.store.transaction(commit=True) as cursor:
            table = view.table(cursor)
            cursor.executemany(view._sql(view._insert_sql(table)), [view._values(r) for r in rows])
            view.after_write(cursor, table, rows, [], {})
            view._advance(cursor, table, Tracking(view.name, rows[-1].position), None)
        print(f"\rfilling the list view: {rows[-1].position:,} tasks", end="", file=sys.stderr)
    if tasks > have:
        print(f"\nfilled in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        with view.store.transaction(commit=True) as cursor:
            cursor.execute("ANALYZE")


def len_rows(view: TaskListView) -> int:
    with view.store.transaction(commit=False) as cursor:
        cursor.execute(f"SELECT COUNT(*) AS n FROM {view.table(cursor)}")
        return int(cursor.fetchone()["n"])


def explain(view: TaskListView) -> None:
    """The plans the database chose for the statements behind the list and stats endpoints."""
    statements = [
        ("page, status+priority", "SELECT task_id FROM {t} WHERE tenant = ? AND status = ? AND priority = ? "
         "ORDER BY created_at DESC, created_position DESC LIMIT 51", ("default", "pending", "high")),
        ("page, agentId", "SELECT task_id FROM {t} WHERE tenant = ? AND agent_id = ? "
         "ORDER BY created_at DESC, created_position DESC LIMIT 51", ("default", "agent-3")),
        ("page, teamId+status", "SELECT task_id FROM {t} WHERE tenant = ? AND team_id = ? AND status = ? "
         "ORDER BY created_at DESC, created_position DESC LIMIT 51", ("default", "research", "review")),
        ("total from the counts", "SELECT SUM(n) AS n FROM {t}_counts WHERE tenant = ? AND dim = ? "
         "AND value = ? AND status = ?", ("default", "priority", "high", "pending")),
        ("stats from the counts, groupBy=agentId", "SELECT value, status, SUM(n) AS n FROM {t}_counts "
         "WHERE tenant = ? AND dim = ? GROUP BY value, status", ("default", "agent_id")),
        ("fallback COUNT, agentId+priority", "SELECT COUNT(*) AS n FROM {t} WHERE tenant = ? AND agent_id = ? "
         "AND priority = ?", ("default", "agent-3", "high")),
    ]
    prefix = "EXPLAIN " if view.store.dialect.is_postgres else "EXPLAIN QUERY PLAN "
    with view.store.transaction(commit=False) as cursor:
        table = view.table(cursor)
        for name, sql, params in statements:
            cursor.execute(view.store.dialect.sql(prefix + sql.format(t=table)), params)
            lines = [str(row.get("QUERY PLAN") if isinstance(row, dict) else row["detail"])
                     for row in cursor.fetchall()]
            print(f"  {name}:\n" + "\n".join(f"      {line}" for line in lines))


def measure(name: str, runs: int, query: Callable[[random.Random], Any]) -> None:
    rng = random.Random(1)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        query(rng)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"  {name:<44} p50 {statistics.median(times):8.1f} ms   p99 {p99:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="sqlite:///var/bench/queries.db")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50, help="runs per query")
    parser.add_argument("--explain", action="store_true", help="also print the plans chosen")
    args = parser.parse_args()

    cluster = None
    if args.database == "throwaway-postgres":  # a cluster of its own, removed at the end
        import importlib.util
        from pathlib import Path

        spec = importlib.util.spec_from_file_location(
            "pg_cluster", Path(__file__).resolve().parent.parent / "tests" / "pg_cluster.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cluster = module.PgCluster().start()
        args.database = cluster.new_database()
    try:
        run(args)
    finally:
        if cluster is not None:
            cluster.stop()


def run(args: argparse.Namespace) -> None:
    settings = Settings(database=args.database)
    store = open_store(settings)
    view = TaskListView(store.for_views(), name="bench_list")
    view.create_table()
    fill(view, args.tasks)
    now = sortable_time(NOW)

    def listing(**params: Any) -> Callable[[random.Random], Any]:
        def run(rng: random.Random) -> Any:
            chosen = {k: (rng.choice(v) if isinstance(v, tuple) else v) for k, v in params.items()}
            return view.page("default", msgspec.convert(chosen, ListTasksQuery, strict=False), now)
        return run

    def stats(**params: Any) -> Callable[[random.Random], Any]:
        def run(rng: random.Random) -> Any:
            chosen = {k: (rng.choice(v) if isinstance(v, tuple) else v) for k, v in params.items()}
            return view.stats("default", msgspec.convert(chosen, StatsQuery, strict=False), now)
        return run

    def next_page(rng: random.Random) -> Any:
        first = view.page("default", msgspec.convert({"sort": "deadline", "status": rng.choice(STATUSES)},
                                                     ListTasksQuery), now)
        return view.page("default", msgspec.convert({"sort": "deadline", "cursor": first[3],
                                                     "status": rng.choice(STATUSES)}, ListTasksQuery), now)

    backend = "PostgreSQL" if settings.is_postgres else "SQLite"
    print(f"{backend}: {len_rows(view):,} tasks, {args.runs} runs per query (page of 50 + exact total)")
    measure("list: newest first", args.runs, listing())
    measure("list: status=…", args.runs, listing(status=STATUSES))
    measure("list: status=…&priority=… (counted total)", args.runs,
            listing(status=STATUSES, priority=PRIORITIES))
    measure("list: teamId=…", args.runs, listing(teamId=TEAMS[:4]))
    measure("list: agentId=…&status=…", args.runs, listing(agentId=AGENTS, status=STATUSES))
    measure("list: priority=…&startDate=… (7 days)", args.runs,
            listing(priority=PRIORITIES, startDate="2025-12-25", endDate="2025-12-31"))
    measure("list: overdue=true", args.runs, listing(overdue="true"))
    measure("list: q=<word>", args.runs, listing(q=WORDS))
    measure("list: sort=-priority, offset 1000", args.runs, listing(sort="-priority", offset=1000))
    measure("list: sort=deadline, next cursor page", args.runs, lambda rng: next_page(rng))
    measure("stats: byStatus", args.runs, stats())
    measure("stats: groupBy=priority, status=…", args.runs, stats(groupBy="priority", status=STATUSES))
    measure("stats: groupBy=agentId,priority (no counts)", args.runs, stats(groupBy="agentId,priority"))
    measure("stats: groupBy=agentId,status", args.runs, stats(groupBy="agentId,status"))
    measure("stats: groupBy=day, teamId=…", args.runs, stats(groupBy="day", teamId=TEAMS[:4]))
    if args.explain:
        explain(view)
    store.close()


if __name__ == "__main__":
    main()
