"""Rebuild speed: events per second to rebuild a view from position 0.

    .venv/bin/python -m bench.rebuild                       # SQLite, 1,000,000 events
    .venv/bin/python -m bench.rebuild --database postgresql://user:pass@127.0.0.1:5432/bench

The events are written once (through the application, 1000 tasks per save, each
task driven through a random part of its lifecycle) and kept in the database,
so a second run only rebuilds. The rebuild is the real one (`tasks projections
rebuild`): a new copy beside the live one, batches of --batch-size events and
their tracking in one transaction, indexes built at the end, then the swap.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from adapters.config import Settings
from adapters.list_view import TaskListView
from adapters.log_reader import LogReader
from adapters.metrics_view import TaskMetricsView
from adapters.sql import open_store
from bench.workload import populate
from domain.application import TaskApplication
from projections.rebuild import rebuild


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="sqlite:///var/bench/rebuild.db")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--per-save", type=int, default=1000, help="tasks written per commit")
    parser.add_argument("--views", default="task_list", help="comma-separated: task_list,task_metrics")
    args = parser.parse_args()

    settings = Settings(database=args.database)
    app = TaskApplication(env=settings.eventsourcing_env())
    have = app.recorder.max_notification_id() or 0
    if have < args.events:
        started = time.perf_counter()
        written = populate(app, args.events - have, pick=random.Random(have).randrange, per_save=args.per_save,
                           report=lambda n: print(f"\rwriting events: {have + n:,}", end="", file=sys.stderr))
        seconds = time.perf_counter() - started
        print(f"\nwrote {written:,} events in {seconds:.1f} s ({written / seconds:,.0f} events/s)", file=sys.stderr)
    head = app.recorder.max_notification_id() or 0
    store = open_store(settings)
    backend = "PostgreSQL" if settings.is_postgres else "SQLite"
    for name in args.views.split(","):
        view = {"task_list": TaskListView, "task_metrics": TaskMetricsView}[name](store.for_views())
        view.create_table()
        started = time.perf_counter()
        position = rebuild(app, view, batch_size=args.batch_size, reader=LogReader(app))
        seconds = time.perf_counter() - started
        print(f"{backend}: rebuilt {name} from {position:,} events (log head {head:,}) in {seconds:.1f} s: "
              f"{position / seconds:,.0f} events/s (batches of {args.batch_size:,}, indexes and swap included)")
    store.close()
    app.close()


if __name__ == "__main__":
    main()
